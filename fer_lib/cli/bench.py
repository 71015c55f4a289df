"""``python -m fer_lib bench``: model cost against the plain backbone, (``--data``) the data pipeline,
(``--step-overhead``) the training loop's own cost per step, or (``--faces``) the face detectors.

The measurements are :mod:`fer_lib.bench` (models, interleaved rounds, ratios to the baseline timed in the same
process), :mod:`fer_lib.data.bench` (loading, augmentation, batching), :mod:`fer_lib.bench.overhead` (one
optimiser step with a model that costs ~nothing; ``--compare`` times older checkouts too, alternated) and
:mod:`fer_lib.bench.faces` (detection rate and false alarms per condition, time per image); see their docstrings
for the method.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from fer_lib.cli import _Parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m fer_lib bench``."""
    parser.add_argument("--variants", default="small,medium,large",
                        help="comma-separated: small, medium, large or full registry names (default: all three)")
    parser.add_argument("--ablate", action="store_true",
                        help="also time each SOTA variant with each module switched off in turn")
    parser.add_argument("--batch-size", type=int, default=32, help="images per step (default 32)")
    parser.add_argument("--iters", type=int, default=5, help="timed rounds per model (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--input-size", type=int, default=None, help="override config input_size for all models")
    parser.add_argument("--stem", default=None, choices=["default", "no_maxpool"], help="override config stem")
    parser.add_argument("--in-chans", type=int, default=None, choices=[1, 3], help="input channels (default 1)")
    parser.add_argument("--precisions", default="fp32",
                        help="comma-separated, each model is timed in each: fp32, fp32-nhwc, bf16, bf16-nhwc, fp16, "
                        "fp16-nhwc (autocast dtype, -nhwc: channels_last); ratios are to the baseline in the first "
                        "(default fp32)")
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                        help="write the rows as JSON to PATH ('-' or no value: stdout instead of the table)")
    parser.add_argument("--data", action="store_true", help="run the data-pipeline benchmark instead")
    parser.add_argument("--step-overhead", action="store_true",
                        help="time the training loop's step with a one-layer model instead (fer_lib.bench.overhead)")
    parser.add_argument("--overhead-args", default="",
                        help="options of the step-overhead benchmark, one string (--overhead-args=--help "
                        "explains them): " + _options(_overhead_parser()))
    parser.add_argument("--faces", action="store_true",
                        help="run the face-detection benchmark instead (fer_lib.bench.faces)")
    parser.add_argument("--faces-args", default="",
                        help="options of the face-detection benchmark, one string (--faces-args=--help explains "
                        "them): " + _options(_faces_parser()))
    parser.add_argument("--data-args", default="",
                        help="options of the data benchmark, one string (--data-args=--help explains them): "
                        + _options(_data_parser()))


def _options(parser: argparse.ArgumentParser) -> str:
    """A nested parser's usage without its ``usage: prog`` head (for the help of the option that takes it)."""
    usage = " ".join(parser.format_usage().split())
    return usage.removeprefix(f"usage: {parser.prog} ").replace("[-h] ", "")


class _NestedParser(_Parser):
    """The parser of one option's string (``--overhead-args "..."``): its help is reached as ``--overhead-args=--help``
    (a bare ``--help`` after the option would be the bench command's own)."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.prog}=--help`)\n")


def _data_parser() -> argparse.ArgumentParser:
    p = _NestedParser(prog="python -m fer_lib bench --data --data-args", description="Options of the data benchmark, "
                "given as one string: --data-args \"--batch-size 256 --threads 1\".")
    p.add_argument("--root", default=None, help="FER2013 location (default: FER2013_DIR or ../shared/fer2013)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--iters", type=int, default=30, help="augmentation batches timed")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    return p


def _write_json(rows: list, where: str | None) -> None:
    """``--json``: nothing (``None``), stdout (``"-"``) or the file ``where``."""
    if where is None:
        return
    text = json.dumps(rows, indent=2)
    if where == "-":
        print(text)
    else:
        with open(where, "w") as f:
            f.write(text + "\n")


def _overhead_parser() -> argparse.ArgumentParser:
    p = _NestedParser(prog="python -m fer_lib bench --step-overhead --overhead-args", description="Options of the "
                "step-overhead benchmark, given as one string: --overhead-args \"--compare ../before --rounds 3\".")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=20, help="optimiser steps per epoch")
    p.add_argument("--epochs", type=int, default=4, help="epochs; the first is a warm-up and is not timed")
    p.add_argument("--preset", default="gpu", help="the recipe timed (its augmentation, mixing, EMA, ...)")
    p.add_argument("--no-augment", action="store_true", help="augment=False (the step without augmentation)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--compare", nargs="*", default=[], metavar="CHECKOUT",
                   help="also time these fer_lib checkouts (e.g. a `git worktree` of an older commit), alternated")
    p.add_argument("--rounds", type=int, default=2, help="runs per checkout")
    p.add_argument("--count-ops", action="store_true",
                   help="also count the tensor ops and host reads each step dispatches (a second, untimed run)")
    return p


def _faces_parser() -> argparse.ArgumentParser:
    p = _NestedParser(prog="python -m fer_lib bench --faces --faces-args", description="Options of the face-detection "
                "benchmark, given as one string: --faces-args \"--per-condition 40 --backends mtcnn dlib-hog\".")
    p.add_argument("--per-condition", type=int, default=40, help="faces per condition (default 40)")
    p.add_argument("--backends", nargs="+", default=None, help="detectors (default: every available one)")
    p.add_argument("--source", default="auto", choices=["auto", "fer2013", "lfw"],
                   help="the faces: FER2013 PublicTest, scikit-image's LFW subset, or auto (FER2013 when found)")
    p.add_argument("--root", default=None, help="FER2013 location (default: FER2013_DIR or ../shared/fer2013)")
    p.add_argument("--conditions", nargs="+", default=None, metavar="CONDITION",
                   help="only these conditions (default: all; names with a comma or space in quotes)")
    p.add_argument("--crops", type=int, default=2, help="random crops of each face-free photo (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: steadier timing)")
    return p


def _run_faces(args: argparse.Namespace) -> int:
    import torch

    from fer_lib.bench.faces import format_faces_table, run_faces_bench

    try:
        o = _faces_parser().parse_args(shlex.split(args.faces_args))
    except SystemExit as e:
        return int(e.code or 0)
    torch.set_num_threads(o.threads)
    try:
        from fer_lib.bench.faces import CONDITIONS

        unknown = sorted(set(o.conditions or ()) - set(CONDITIONS))
        if unknown:
            raise ValueError(f"unknown condition(s) {unknown}; choose from {list(CONDITIONS)}")
        rows, source = run_faces_bench(o.backends, per_condition=o.per_condition, root=o.root, seed=o.seed,
                                       source=o.source, conditions=tuple(o.conditions or CONDITIONS), crops=o.crops)
    except (RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json != "-":
        print(f"faces: {source}; seed {o.seed}; torch threads {o.threads}; found/faces (IoU >= 0.3), false = boxes "
              "less than half on a face")
        print(format_faces_table(rows))
    _write_json(rows, args.json)
    return 0


def _run_overhead(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fer_lib.bench.overhead import compare_checkouts, format_overhead

    try:
        o = _overhead_parser().parse_args(shlex.split(args.overhead_args))
    except SystemExit as e:  # --help (0) or a bad option (2, one error line)
        return int(e.code or 0)
    here = Path(__file__).resolve().parents[2]
    kwargs = dict(steps=o.steps, batch_size=o.batch_size, epochs=o.epochs, preset=o.preset, device=o.device,
                  threads=o.threads, overrides={"augment": False} if o.no_augment else None,
                  **({"count_ops": True} if o.count_ops else {}))
    try:
        rows = compare_checkouts([here, *o.compare], rounds=o.rounds, **kwargs)
    except (FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    labels = {str(here): "this checkout", **{str(c): str(c) for c in o.compare}}
    for r in rows:
        r["checkout"] = labels[r["checkout"]]
    print(f"step overhead: preset {o.preset}, batch {o.batch_size}, {o.steps} steps x {o.epochs - 1} timed epochs, "
          f"augment {'off' if o.no_augment else 'on'}, device {o.device}, threads {o.threads}, torch "
          f"{rows[0]['torch']}; overhead = step - model alone; x = ratio to this checkout")
    print(format_overhead(rows))
    _write_json(rows, args.json)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the benchmark described by ``args``; returns the exit status (2: bad options)."""
    if args.step_overhead:
        return _run_overhead(args)
    if args.faces:
        return _run_faces(args)
    if args.data:
        from fer_lib.data.bench import format_table, run_data_bench

        try:
            d = _data_parser().parse_args(shlex.split(args.data_args))
        except SystemExit as e:
            return int(e.code or 0)
        rows = run_data_bench(d.root, d.batch_size, d.iters, d.device, d.threads)
        print("\n" + format_table(rows))
        return 0

    import torch

    from fer_lib import bench

    try:
        settings = bench.BenchSettings(args.batch_size, args.iters, args.warmup, args.input_size, args.stem,
                                       args.in_chans)
        device = bench.resolve_device(args.device)
        precisions = tuple(p.strip() for p in args.precisions.split(",") if p.strip())
        groups = bench.plan_groups(args.variants.split(","), args.ablate, precisions)
        if device.type != "cuda" and any(p.startswith("fp16") for p in precisions):
            raise ValueError("--precisions fp16 needs a CUDA device; on a CPU use bf16")
    except (RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    results = [bench.bench_group(specs, settings, device) for specs in groups]
    rows = [r for g in results for r in g]
    if args.json != "-":
        print(f"device={device} threads={torch.get_num_threads()} batch={args.batch_size} iters={args.iters} "
              "(fastest round); x = ratio to the first row of each group (its baseline)")
        for g in results:
            print(bench.format_rows(g) + "\n")
    _write_json(rows, args.json)
    return 0
