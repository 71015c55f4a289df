"""The GPU acceptance run: everything the CUDA path must show, in one command and one JSON summary.

    scripts/gpu_check.sh --prepare            # here, first: pack FER2013, export the "before" checkout, size check
    scripts/gpu_check.sh                      # on a GPU machine: ends within --deadline (9) minutes, summary in runs/gpu_check/
    scripts/gpu_check.sh --dry-run            # on a CPU: the same steps on tiny data in about a minute

Steps (each recorded in the summary, a failing step does not stop the others):

1. ``env``: torch, CUDA, GPUs and their compute capability, and the AMP dtype the ``gpu`` preset resolves to
   (:func:`fer_lib.bench.record.environment`: bf16 on compute capability >= 8, fp16 with a GradScaler below), and
   the checkout's commit.
2. ``data``: FER2013 from ``--data-root`` (default ``data/packed``, the git-ignored file written by
   ``scripts/pack_fer2013.py``, small enough to travel with the checkout; any form ``load_fer2013`` reads works).
3. ``cost``: what each SOTAResEmote module costs on the GPU (``fer_lib.bench``: ``sota_resemote_small_v1`` with each
   module off in turn, and ``sota_resemote_small``, against ``baseline_resnet18``, batch 256, the ``gpu``
   preset's precision, channels_last): on a CPU the modules cost 1.2-1.35x the baseline's training time.
4. ``overhead``: the training loop's per-step overhead on the GPU (:func:`fer_lib.bench.overhead.step_overhead`:
   the ``gpu`` preset's step with a one-layer model, batch 256), alternated round by round with the checkout from
   before issue 20 (``--before``, default ``device_data/before``, written by ``--prepare``) when it is there: the
   issue's target is at most a third of the old overhead.
5. ``compile``: the ``gpu`` preset with ``compile=True`` for one short epoch on a subset (compiles, trains,
   validates).
6. ``ddp``: when 2 or more GPUs are present, ``torchrun --nproc_per_node 2 -m fer_lib train`` for one short epoch.
7. ``main``: the ``gpu`` preset for ``--minutes`` (the schedule fitted to that budget), cut to what the
   ``--deadline`` leaves after the earlier steps: epochs, best and last PublicTest accuracy (EMA weights, one
   forward pass), training images/s (epochs after the first), peak GPU memory, wall time
   (:func:`fer_lib.bench.record.measure_training`, which also measures step 5).

What is reusable lives in the library, tested on a CPU (``tests/test_gpu_path.py``): the environment and the
measured training run (``fer_lib/bench/record.py``), the cost benchmark (``fer_lib.bench``), the step overhead and
its round-by-round ratios (``fer_lib/bench/overhead.py``). This script keeps the orchestration: the steps, the
deadline, the summary file, and ``--prepare``.

A lent GPU machine cuts a command at 10 minutes and returns only what is in its result folder by then, so the
whole run ends within ``--deadline`` minutes (default 9) and the summary is rewritten after every step: a run cut
short still leaves every finished step's result. The summary goes to ``<out>/summary.json`` and, when the
environment names ``OUT`` (the lent machine's result folder), to ``$OUT/gpu_check.json`` (with the main run's
per-epoch history in ``$OUT/gpu_main_history.json``); ``"finished"`` is true only in the last write. Exit status 0
only when every step that ran succeeded.

``--prepare`` (on the development machine, before the GPU call) writes what the call needs into ignored folders of
the checkout: ``data/packed/`` (``scripts/pack_fer2013.py``, when missing), ``device_data/before/fer_lib`` (commit
:data:`BEFORE_COMMIT`'s package without its weights, for the overhead comparison) and ``device_data/commit.txt``
(the lent machine gets the files without ``.git``); then it adds up what will travel (at most 64 MiB) and prints
the call.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a plain checkout (no install needed on the lent machine)

#: the last commit before issue 20's changes: the step overhead's "before" (docs/results/training.md)
BEFORE_COMMIT = "fa84d64"
#: what a lent GPU machine takes: the working tree with the carried folders, at most this many MiB
TRAVEL_LIMIT_MIB = 64.0
#: minutes kept free at the end of the deadline for the main run's last validation, checkpoints and the summary
RESERVE_MINUTES = 1.0


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
    """:func:`fer_lib.bench.record.environment` (versions, GPUs, the ``gpu`` preset's precision here) and the
    commit of this checkout."""
    from fer_lib.bench.record import environment

    env = environment(device, preset="gpu")
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
    except OSError:
        commit = None
    if not commit and (ROOT / "device_data" / "commit.txt").is_file():  # the lent machine gets no .git
        commit = (ROOT / "device_data" / "commit.txt").read_text().strip()
    return {**env, "commit": commit}


def _train_once(data, out: Path, name: str, device: str, **overrides) -> dict:
    """The ``gpu`` preset with ``overrides`` in ``out/name``, measured (:func:`fer_lib.bench.record.measure_training`:
    epochs, accuracy, images/s after the first epoch, peak GPU memory, wall time)."""
    from fer_lib.bench.record import measure_training
    from fer_lib.train import preset_config

    cfg = preset_config("gpu", name=name, out_dir=str(out), device=device, overwrite=True, log_every=0, **overrides)
    result = measure_training(cfg, data)
    run_dir = result["run_dir"]
    return {**result, "run_dir": str(run_dir.relative_to(ROOT)) if run_dir.is_relative_to(ROOT) else str(run_dir)}


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


def _overhead(args) -> dict:
    """The loop's per-step overhead (one-layer model, the ``gpu`` preset's step), this checkout alternated with
    ``args.before`` when that holds a ``fer_lib`` package, each run in its own process."""
    from fer_lib.bench.overhead import compare_checkouts, format_overhead, paired_ratios

    here = Path(".")
    before = args.before if (args.before / "fer_lib" / "__init__.py").is_file() else None
    kwargs = (dict(steps=3, batch_size=16, epochs=2, device="cpu", threads=1) if args.dry_run
              else dict(steps=20, batch_size=256, epochs=3, device="cuda", threads=None))
    checkouts = [ROOT, before] if before is not None else [ROOT]
    rows = compare_checkouts(checkouts, rounds=args.overhead_rounds, **kwargs)
    names = {str(ROOT): str(here), **({str(before): _rel(before)} if before is not None else {})}
    rows = [{**{k: r[k] for k in ("round", "step_ms", "model_ms", "overhead_ms", "device", "torch")},
             "checkout": names[r["checkout"]]} for r in rows]
    out = {"settings": kwargs, "rows": rows, "table": format_overhead(rows), "before": names.get(str(before))}
    if before is not None:
        ratios = sorted(paired_ratios(rows, str(here), names[str(before)]))  # this checkout over before, by round
        out["now_over_before"] = {"median": ratios[len(ratios) // 2], "min": ratios[0], "max": ratios[-1]}
    else:
        out["note"] = f"no {_rel(args.before)}/fer_lib: only this checkout was timed (run --prepare first)"
    return out


def _cost(args, device: str) -> dict:
    """What each SOTAResEmote module costs on this device (``fer_lib.bench``, the models timed in alternated rounds
    in one process): ``sota_resemote_small_v1`` with each module off in turn, and the lean CPU design, each against
    ``baseline_resnet18``, at batch 256 in the precision and memory format the ``gpu`` preset trains in."""
    import torch

    from fer_lib import bench
    from fer_lib.train import preset_config
    from fer_lib.train.setup import precision_for

    dev = torch.device(device)
    amp = precision_for(preset_config("gpu").amp, dev)
    precision = bench.precision_name(amp.dtype, channels_last=True)
    if args.dry_run:  # checks the step only
        settings, groups = bench.BenchSettings(batch_size=4, iters=1, warmup=0), bench.plan_groups(["small_v1"])
    else:
        settings = bench.BenchSettings(batch_size=256, iters=10, warmup=3)
        groups = (bench.plan_groups(["small_v1"], ablate=True, precisions=(precision,))
                  + bench.plan_groups(["sota_resemote_small"], precisions=(precision,)))
    results = [bench.bench_group(specs, settings, dev) for specs in groups]
    keep = ("label", "params_m", "gflops_x", "train_img_s", "train_x", "train_x_paired", "infer_ms_img", "infer_x")
    return {"precision": precision, "batch_size": settings.batch_size, "iters": settings.iters,
            "rows": [{k: r[k] for k in keep} for g in results for r in g],
            "table": "\n\n".join(bench.format_rows(g) for g in results)}


def _rel(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _travel_mib(extra: list[Path]) -> float:
    """MiB of what a lent machine takes: tracked and untracked-not-ignored files, plus the ``extra`` folders."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    files = {ROOT / f for f in listed if f} | {f for d in extra for f in Path(d).rglob("*")}
    return sum(f.stat().st_size for f in files if f.is_file()) / 2**20


def prepare(args) -> int:
    """Write what the GPU call needs into ignored folders of the checkout, check its size, print the call:
    FER2013 packed into ``args.data_root`` (when it holds no ``.npz``), :data:`BEFORE_COMMIT`'s ``fer_lib``
    (without its weights) into ``args.before``, and ``commit.txt`` beside it."""
    import io
    import shutil
    import tarfile

    packed = Path(args.data_root)
    if not (packed.is_file() or list(packed.glob("*.npz"))):
        sys.path.insert(0, str(ROOT / "scripts"))
        import pack_fer2013

        if pack_fer2013.main(["--out", str(packed / Path(pack_fer2013.DEFAULT_OUT).name)]) != 0:
            return 1
    before = Path(args.before)
    shutil.rmtree(before, ignore_errors=True)
    tar = subprocess.run(["git", "archive", "--format=tar", BEFORE_COMMIT, "fer_lib", ":(exclude)fer_lib/weights"],
                         cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(before, filter="data")
    commit = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=7"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.strip()
    (before.parent / "commit.txt").write_text(commit + "\n")
    carry = list(dict.fromkeys([_rel(packed if packed.is_dir() else packed.parent), _rel(before.parent)]))
    mib = _travel_mib([ROOT / c for c in carry])
    print(f"prepared: {_rel(packed)} (FER2013, packed), {_rel(before)} ({BEFORE_COMMIT}'s fer_lib), commit {commit}")
    print(f"travels: {mib:.1f} MiB of at most {TRAVEL_LIMIT_MIB:.0f} (the working tree and {', '.join(carry)})")
    if mib > TRAVEL_LIMIT_MIB:
        print("error: too large for a lent machine; pack less Training data "
              "(python scripts/pack_fer2013.py --max-mib N)", file=sys.stderr)
        return 1
    print(f"the call (device tool): run(command=\"bash scripts/gpu_check.sh\", timeout_s=600, carry={json.dumps(carry)})")
    return 0


def _write_summary(summary: dict, out: Path) -> None:
    """Rewrite the summary (after every step, so a run cut short still leaves what it finished)."""
    text = json.dumps(summary, indent=2, default=str)
    (out / "summary.json").write_text(text)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_check.json").write_text(text)


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
    parser.add_argument("--deadline", type=float, default=9.0,
                        help="minutes the whole run may take (default 9: a lent machine cuts a command at 10); the "
                             "main run gets at most what the earlier steps leave, less a minute")
    parser.add_argument("--before", type=Path, default=ROOT / "device_data" / "before",
                        help="a checkout from before issue 20 to compare the step overhead with (--prepare writes it)")
    parser.add_argument("--overhead-rounds", type=int, default=3, help="alternated rounds of the overhead step")
    parser.add_argument("--prepare", action="store_true",
                        help="on the development machine: pack FER2013 (when missing), export the 'before' checkout "
                             "into device_data/, check the size that travels and print the call")
    parser.add_argument("--skip", nargs="*", default=[], choices=["cost", "overhead", "compile", "ddp", "main"],
                        help="steps to skip")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu_check", help="run folders and summary")
    parser.add_argument("--dry-run", action="store_true",
                        help="on a CPU: every step on tiny data (synthetic faces when --data-root has no FER2013), "
                             "baseline_resnet18, seconds; checks the script, measures nothing")
    args = parser.parse_args(argv)
    if args.prepare:
        return prepare(args)
    if args.minutes is None:
        args.minutes = 0.3 if args.dry_run else 5.0
    args.out.mkdir(parents=True, exist_ok=True)
    device = "cpu" if args.dry_run else "cuda"
    summary: dict = {"dry_run": args.dry_run, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                     "deadline_minutes": args.deadline, "finished": False}
    t0 = time.perf_counter()

    def minutes_left() -> float:
        return args.deadline - (time.perf_counter() - t0) / 60

    def step(name: str, fn) -> None:
        _step(summary, name, fn)
        _write_summary(summary, args.out)

    step("env", lambda: _env(device))
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

    step("data", load)
    data = holder.get("data")
    tiny = dict(model="baseline_resnet18", batch_size=32, subset_train=128, subset_val=64) if args.dry_run else {}
    smoke = dict(epochs=1, subset_train=args.smoke_images, subset_val=args.smoke_val, fit_budget=False,
                 max_minutes=None)
    if "cost" not in args.skip:
        step("cost", lambda: _cost(args, device))
    if "overhead" not in args.skip:
        step("overhead", lambda: _overhead(args))
    if data is not None and "compile" not in args.skip:
        # one epoch, stopped inside it if compiling leaves too little of the deadline for the main run
        cap = max(0.5, min(3.0, minutes_left() - RESERVE_MINUTES - 1.0))
        step("compile", lambda: _train_once(data, args.out, "compile_smoke", device,
                                            **{**smoke, "max_minutes": cap, "compile": True, **tiny}))
    if "ddp" not in args.skip and data is not None:
        step("ddp", lambda: _ddp(args, args.out, data.synthetic))
    if data is not None and "main" not in args.skip:
        main_over = {k: v for k, v in (("batch_size", args.batch_size), ("lr", args.lr)) if v is not None}
        minutes = round(min(args.minutes, minutes_left() - RESERVE_MINUTES), 2)

        def main_run() -> dict:
            if minutes < min(args.minutes, 0.25):  # the deadline, not the request, left too little
                raise TimeoutError(f"the deadline ({args.deadline} min) leaves {minutes_left():.2f} minutes: "
                                   "no main run (raise --deadline or skip a step)")
            result = _train_once(data, args.out, "gpu_main", device, epochs=30, max_minutes=minutes,
                                 fit_budget=True, compile=args.compile_main, **{**main_over, **tiny})
            if os.environ.get("OUT"):
                history = ROOT / result["run_dir"] / "history.json"
                Path(os.environ["OUT"], "gpu_main_history.json").write_text(history.read_text())
            return {"minutes_asked": args.minutes, **result}

        step("main", main_run)
    summary["total_s"] = round(time.perf_counter() - t0, 1)
    summary["ok"] = all(v.get("ok", True) for v in summary.values() if isinstance(v, dict))
    summary["finished"] = True
    _write_summary(summary, args.out)
    print(json.dumps(summary, indent=2, default=str))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
