"""The GPU acceptance run: everything the CUDA path must show, in one command and one JSON summary.

    scripts/gpu_check.sh                      # on a GPU machine: meant to fit 10 minutes (not yet timed), summary in runs/gpu_check/
    scripts/gpu_check.sh --dry-run            # on a CPU: the same steps on tiny data in about a minute

Steps (each recorded in the summary, a failing step does not stop the others):

1. ``env``: torch, CUDA, GPUs and their compute capability, and the AMP dtype the ``gpu`` preset resolves to
   (``fer_lib.train.setup.precision_for``: bf16 on compute capability >= 8, fp16 with a GradScaler below).
2. ``data``: FER2013 from ``--data-root`` (default ``data/packed``, the git-ignored file written by
   ``scripts/pack_fer2013.py``, small enough to travel with the checkout; any form ``load_fer2013`` reads works).
3. ``compile``: the ``gpu`` preset with ``compile=True`` for one short epoch on a subset (compiles, trains,
   validates).
4. ``ddp``: when 2 or more GPUs are present, ``torchrun --nproc_per_node 2 -m fer_lib train`` for one short epoch.
5. ``main``: the ``gpu`` preset for ``--minutes`` (the schedule fitted to that budget): epochs, best and last
   PublicTest accuracy (EMA weights, one forward pass), training images/s (epochs after the first), peak GPU
   memory, wall time.

The summary goes to ``<out>/summary.json`` and, when the environment names ``OUT`` (the lent machine's result
folder), to ``$OUT/gpu_check.json`` as well; exit status 0 only when every step that ran succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a plain checkout (no install needed on the lent machine)


def _step(summary: dict, name: str, fn) -> None:
    t0 = time.perf_counter()
    try:
        summary[name] = {"ok": True, **fn()}
    except Exception as e:  # a failing step is recorded, the acceptance run goes on with the next
        summary[name] = {"ok": False, "error": f"{type(e).__name__}: {e}",
                         "traceback": traceback.format_exc(limit=6)[-3000:]}
    summary[name]["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"== {name}: {'ok' if summary[name]['ok'] else 'FAILED ' + summary[name]['error']} "
          f"({summary[name]['seconds']} s)", flush=True)


def _env(device: str) -> dict:
    import torch

    from fer_lib.inference import resolve_device
    from fer_lib.train import preset_config
    from fer_lib.train.setup import precision_for

    dev = resolve_device(device)
    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            gpus.append({"name": p.name, "capability": f"{p.major}.{p.minor}", "memory_gib": round(p.total_memory / 2**30, 1)})
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
    except OSError:
        commit = None
    return {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "device": str(dev), "gpus": gpus, "commit": commit, "cpu_threads": torch.get_num_threads(),
            "amp": str(precision_for(preset_config("gpu").amp, dev))}


def _train_once(data, out: Path, name: str, device: str, **overrides) -> dict:
    import torch

    from fer_lib.train import preset_config, train

    cfg = preset_config("gpu", name=name, out_dir=str(out), device=device, overwrite=True, log_every=0, **overrides)
    cuda = torch.cuda.is_available() and cfg.device != "cpu"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result = train(cfg, data, progress=False)
    wall = time.perf_counter() - t0
    h = result.history
    steady = h[1:] or h  # epoch 1 holds the warm-up (cuDNN autotuning, compilation)
    best = max(h, key=lambda r: r["val_acc"])
    return {
        "model": cfg.model, "batch_size": cfg.batch_size, "lr": cfg.lr, "compile": cfg.compile,
        "max_minutes": cfg.max_minutes, "epochs_run": len(h),
        "best_val_acc": best["val_acc"], "best_epoch": best["epoch"], "last_val_acc": h[-1]["val_acc"],
        "val_split": cfg.val_split, "train_images_per_sec": sum(r["images_per_sec"] for r in steady) / len(steady),
        "first_epoch_s": h[0]["seconds"], "wall_s": round(wall, 1),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "stop_reason": result.stop_reason, "run_dir": str(result.run_dir.relative_to(ROOT))
        if result.run_dir.is_relative_to(ROOT) else str(result.run_dir),
    }


def _ddp(args, out: Path, synthetic: bool) -> dict:
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n < 2 and not args.dry_run:
        return {"skipped": f"{n} GPU(s): the DDP smoke test needs 2"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "fer_lib",
           "train", "--preset", "gpu", *(["--data", "synthetic"] if synthetic else ["--data-root", str(args.data_root)]),
           "--name", "ddp_smoke", "--out-dir",
           str(out), "--overwrite", "--epochs", "1", "--no-progress", "--device", "cpu" if args.dry_run else "cuda"]
    if args.dry_run:
        cmd += ["--subset", "128", "--subset-val", "64", "--batch-size", "32", "--model", "baseline_resnet18"]
    else:
        cmd += ["--subset", str(args.smoke_images), "--subset-val", str(args.smoke_val)]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun exited {proc.returncode}: {(proc.stdout + proc.stderr)[-1500:]}")
    history = json.loads((out / "ddp_smoke" / "history.json").read_text())
    return {"world_size": 2, "val_acc": history[-1]["val_acc"], "log_tail": proc.stdout[-500:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=ROOT / "data" / "packed",
                        help="FER2013 in any form load_fer2013 reads (default data/packed)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="budget of the main gpu-preset run (default 5; 0.3 with --dry-run)")
    parser.add_argument("--batch-size", type=int, default=None, help="main run's batch (default: the preset's)")
    parser.add_argument("--lr", type=float, default=None, help="main run's learning rate (default: the preset's)")
    parser.add_argument("--compile-main", action="store_true", help="also compile the main run")
    parser.add_argument("--smoke-images", type=int, default=4096, help="training images of the smoke tests")
    parser.add_argument("--smoke-val", type=int, default=1024, help="validation images of the smoke tests")
    parser.add_argument("--skip", nargs="*", default=[], choices=["compile", "ddp", "main"], help="steps to skip")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu_check", help="run folders and summary")
    parser.add_argument("--dry-run", action="store_true",
                        help="on a CPU: every step on tiny data (synthetic faces when --data-root has no FER2013), "
                             "baseline_resnet18, seconds; checks the script, measures nothing")
    args = parser.parse_args(argv)
    if args.minutes is None:
        args.minutes = 0.3 if args.dry_run else 5.0
    args.out.mkdir(parents=True, exist_ok=True)
    device = "cpu" if args.dry_run else "cuda"
    summary: dict = {"dry_run": args.dry_run, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    t0 = time.perf_counter()

    _step(summary, "env", lambda: _env(device))
    holder = {}

    def load() -> dict:
        from fer_lib.data import FERDataError, load_fer2013, load_synthetic

        try:
            data = load_fer2013(args.data_root)
        except FERDataError:
            if not args.dry_run:
                raise
            data = load_synthetic(n_train=256, n_val=64, seed=0)
        holder["data"] = data
        return {"source": Path(data.source).name if not data.synthetic else data.source, "form": data.form,
                "synthetic": data.synthetic, "splits": {k: len(v) for k, v in data.splits.items()},
                "notes": data.notes, "fingerprint": data.fingerprint}

    _step(summary, "data", load)
    data = holder.get("data")
    tiny = dict(model="baseline_resnet18", batch_size=32, subset_train=128, subset_val=64) if args.dry_run else {}
    smoke = dict(epochs=1, subset_train=args.smoke_images, subset_val=args.smoke_val, fit_budget=False,
                 max_minutes=None)
    if data is not None and "compile" not in args.skip:
        _step(summary, "compile", lambda: _train_once(data, args.out, "compile_smoke", device,
                                                      **{**smoke, "compile": True, **tiny}))
    if "ddp" not in args.skip and data is not None:
        _step(summary, "ddp", lambda: _ddp(args, args.out, data.synthetic))
    if data is not None and "main" not in args.skip:
        main_over = {k: v for k, v in (("batch_size", args.batch_size), ("lr", args.lr)) if v is not None}
        _step(summary, "main", lambda: _train_once(
            data, args.out, "gpu_main", device, epochs=30, max_minutes=args.minutes, fit_budget=True,
            compile=args.compile_main, **{**main_over, **tiny}))
    summary["total_s"] = round(time.perf_counter() - t0, 1)
    summary["ok"] = all(v.get("ok", True) for v in summary.values() if isinstance(v, dict))
    text = json.dumps(summary, indent=2, default=str)
    (args.out / "summary.json").write_text(text)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_check.json").write_text(text)
    print(text)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
