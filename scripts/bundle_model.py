"""Turn a trained run into the weights that ship inside fer_lib, measured exactly as shipped.

    python scripts/bundle_model.py runs/bundle_r18/best.pt --out fer_lib/weights/fer2013_resnet18.safetensors \
        --command "python -m fer_lib train --preset cpu --max-minutes 120 --name bundle_r18" \
        --hardware "2-core x86_64 CPU (AMD EPYC, AVX512-BF16), 24 GB RAM, no GPU" --wall-minutes 119.8

Steps: write the EMA weights as fp16 safetensors (``fer_lib.inference.save_pretrained``); reload them from that
file (``load_pretrained``: fp16 rounded, back to fp32); evaluate on PublicTest with no TTA, flip and ten-crop;
write the file again with those metrics and the provenance in its header; print the metrics as JSON. The numbers
in ``fer_lib/weights/MODEL_CARD.md`` are copied from that JSON, and ``tests/test_pretrained.py`` re-measures the
plain accuracy on the shipped file. PrivateTest is never touched.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def metrics_of(report) -> dict:
    return {"accuracy": report.accuracy, "macro_f1": report.macro_f1, "ece": report.ece, "nll": report.nll,
            "n": report.n, "per_class_f1": {k: v["f1"] for k, v in report.per_class.items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="the best.pt of the run to ship")
    parser.add_argument("--out", required=True, help="the .safetensors file to write")
    parser.add_argument("--data-root", default=None, help="FER2013 (default: FER2013_DIR, ../shared/fer2013)")
    parser.add_argument("--split", default="PublicTest", help="the model-selection split to report")
    parser.add_argument("--command", required=True, help="the exact training command")
    parser.add_argument("--hardware", required=True, help="where it trained")
    parser.add_argument("--wall-minutes", type=float, required=True, help="training wall time")
    parser.add_argument("--commit", default=None, help="commit the run trained at (default: git HEAD)")
    args = parser.parse_args(argv)

    from fer_lib.data import load_fer2013, split_by_name
    from fer_lib.evaluate import evaluate_model
    from fer_lib.inference import load_checkpoint, load_pretrained, save_pretrained
    from fer_lib.paths import find_fer2013

    commit = args.commit or subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                           text=True, check=True).stdout.strip()
    ckpt = load_checkpoint(args.checkpoint)
    last = Path(args.checkpoint).with_name("last.pt")  # the whole run's history (best.pt's ends at its epoch)
    history = (load_checkpoint(last) if last.is_file() else ckpt).get("history") or []
    provenance = {
        "command": args.command, "commit": commit, "hardware": args.hardware, "wall_minutes": args.wall_minutes,
        "epochs_trained": len(history), "best_epoch": int(ckpt.get("epoch", 0)),
        "data": "FER2013 Training (28,709 faces); selected on PublicTest (3,589); PrivateTest never used",
    }
    out = save_pretrained(args.checkpoint, args.out, provenance=provenance)
    model = load_pretrained(out)
    data = load_fer2013(find_fer2013(args.data_root))
    split = split_by_name(data, args.split)
    metrics = {split.name: {}}
    for tta in ("none", "flip", "tencrop"):
        t0 = time.perf_counter()
        report = evaluate_model(model, split, tta, data=data)
        metrics[split.name][tta] = {**metrics_of(report), "seconds": round(time.perf_counter() - t0, 1)}
        print(f"{split.name} tta={tta}: accuracy {report.accuracy:.4f} macro-F1 {report.macro_f1:.4f} "
              f"ECE {report.ece:.4f}", file=sys.stderr, flush=True)
    save_pretrained(args.checkpoint, out, metrics=metrics, provenance=provenance)
    print(json.dumps({"file": str(out), "bytes": Path(out).stat().st_size, "metrics": metrics,
                      "provenance": provenance}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
