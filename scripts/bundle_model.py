"""Turn a trained run into the weights that ship inside fer_lib, measured exactly as shipped.

    python scripts/bundle_model.py runs/bundle_r18/best.pt --out fer_lib/weights/fer2013_resnet18.safetensors \
        --command "python -m fer_lib train --preset cpu --max-minutes 120 --name bundle_r18" \
        --hardware "2-core x86_64 CPU (AMD EPYC, AVX512-BF16), 24 GB RAM, no GPU" --wall-minutes 119.8
    python scripts/bundle_model.py --ensemble --hardware "..."    # measure fer_lib.pretrained("ensemble")

With ``--ensemble`` nothing is trained or packed: the bundled files are loaded as shipped, averaged
(:class:`fer_lib.inference.EnsembleModel`) and measured the same way; the figures go to
``fer_lib/weights/ensemble.json``, which ``fer_lib.inference.list_pretrained`` and the tests read.

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


def measure(model, split, data) -> dict:
    """``{tta: metrics}`` of ``model`` on ``split`` with no TTA, flip and ten-crop (printed as they come)."""
    from fer_lib.evaluate import evaluate_model

    out = {}
    for tta in ("none", "flip", "tencrop"):
        t0 = time.perf_counter()
        report = evaluate_model(model, split, tta, data=data)
        out[tta] = {**metrics_of(report), "seconds": round(time.perf_counter() - t0, 1)}
        print(f"{split.name} tta={tta}: accuracy {report.accuracy:.4f} macro-F1 {report.macro_f1:.4f} "
              f"ECE {report.ece:.4f}", file=sys.stderr, flush=True)
    return out


def card_tables(metrics: dict) -> str:
    """The model card's two PublicTest tables (overall, per-class F1), as markdown, from ``{tta: metrics}``."""
    labels = {"none": "one forward pass", "flip": "flip TTA", "tencrop": "ten-crop TTA"}
    lines = ["| PublicTest | accuracy | macro-F1 | ECE (15 bins) | NLL |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {labels[t]} | **{m['accuracy']:.4f}** | {m['macro_f1']:.4f} | {m['ece']:.4f} | {m['nll']:.4f} |"
              for t, m in metrics.items()]
    classes = list(next(iter(metrics.values()))["per_class_f1"])
    lines += ["", "Per-class F1:", "", "| PublicTest | " + " | ".join(classes) + " |",
              "| --- |" + " --- |" * len(classes)]
    lines += [f"| {labels[t]} | " + " | ".join(f"{m['per_class_f1'][c]:.3f}" for c in classes) + " |"
              for t, m in metrics.items()]
    return "\n".join(lines)


def bundle_ensemble(args, commit: str) -> int:
    """Measure the average of the bundled models and write ``fer_lib/weights/ensemble.json``."""
    from fer_lib.data import load_fer2013, split_by_name
    from fer_lib.inference import ENSEMBLE, pretrained
    from fer_lib.inference.pretrained import ENSEMBLE_FILE
    from fer_lib.paths import find_fer2013

    model = pretrained(ENSEMBLE)
    data = load_fer2013(find_fer2013(args.data_root))
    split = split_by_name(data, args.split)
    info = {
        "name": ENSEMBLE, "model_name": ENSEMBLE, "members": sorted(model.member_names),
        "metrics": {split.name: measure(model, split, data)},
        "provenance": {"command": "python scripts/bundle_model.py --ensemble", "commit": commit,
                       "hardware": args.hardware, "combination": "mean of the members' softmax probabilities",
                       "data": "measured on PublicTest (3,589); PrivateTest never used"},
    }
    ENSEMBLE_FILE.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"file": ENSEMBLE_FILE.name, **info}, indent=2))
    print(card_tables(info["metrics"][split.name]), file=sys.stderr)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", help="the best.pt of the run to ship")
    parser.add_argument("--ensemble", action="store_true", help="measure the bundled models' ensemble instead")
    parser.add_argument("--out", help="the .safetensors file to write")
    parser.add_argument("--data-root", default=None, help="FER2013 (default: FER2013_DIR, ../shared/fer2013)")
    parser.add_argument("--split", default="PublicTest", help="the model-selection split to report")
    parser.add_argument("--command", help="the exact training command")
    parser.add_argument("--hardware", required=True, help="where it trained (or, with --ensemble, was measured)")
    parser.add_argument("--wall-minutes", type=float, help="training wall time")
    parser.add_argument("--model-name", default=None,
                        help="store the architecture under this registered name (a run made before a rename)")
    parser.add_argument("--note", default=None, help="anything else the card must say (stored in the provenance)")
    parser.add_argument("--commit", default=None, help="commit the run trained at (default: git HEAD)")
    args = parser.parse_args(argv)
    commit = args.commit or subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                           text=True, check=True).stdout.strip()
    if args.ensemble:
        return bundle_ensemble(args, commit)
    if not (args.checkpoint and args.out and args.command and args.wall_minutes is not None):
        parser.error("a checkpoint, --out, --command and --wall-minutes are needed (or --ensemble)")

    from fer_lib.data import load_fer2013, split_by_name
    from fer_lib.inference import load_checkpoint, load_pretrained, save_pretrained
    from fer_lib.paths import find_fer2013

    ckpt = load_checkpoint(args.checkpoint)
    last = Path(args.checkpoint).with_name("last.pt")  # the whole run's history (best.pt's ends at its epoch)
    history = (load_checkpoint(last) if last.is_file() else ckpt).get("history") or []
    curves = {k: [round(float(r[k]), 4) for r in history] for k in ("train_loss", "val_loss", "val_acc", "seconds")
              if history and all(k in r for r in history)}
    provenance = {
        "command": args.command, "commit": commit, "hardware": args.hardware, "wall_minutes": args.wall_minutes,
        "epochs_trained": len(history), "best_epoch": int(ckpt.get("epoch", 0)), "curves": curves,
        "data": "FER2013 Training (28,709 faces); selected on PublicTest (3,589); PrivateTest never used",
        **({"note": args.note} if args.note else {}),
    }
    out = save_pretrained(args.checkpoint, args.out, provenance=provenance, model_name=args.model_name)
    model = load_pretrained(out)
    data = load_fer2013(find_fer2013(args.data_root))
    split = split_by_name(data, args.split)
    metrics = {split.name: measure(model, split, data)}
    save_pretrained(args.checkpoint, out, metrics=metrics, provenance=provenance, model_name=args.model_name)
    print(json.dumps({"file": str(out), "bytes": Path(out).stat().st_size, "metrics": metrics,
                      "provenance": provenance}, indent=2))
    print(card_tables(metrics[split.name]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
