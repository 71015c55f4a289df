"""``python -m fer_lib ablation``: equal-budget runs of the baseline, the full model and the full model minus one
module (or, ``--paired --seeds 0 1``, variants side by side per seed); see :mod:`fer_lib.ablation`."""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from pathlib import Path

from fer_lib.ablation import ALL, PROBES, VARIANTS, AblationPlan, plan_jobs, run_group, write_report


def _at_least_one(text: str) -> int:
    """``--parallel`` / ``--threads``: a whole number >= 1 (0 or less would start no run and wait forever)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _minutes(text: str) -> float:
    """``--minutes``: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected minutes (a number > 0), got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of minutes > 0, got {text!r}")
    return value


_at_least_one.__name__ = "int"
_minutes.__name__ = "float"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``python -m fer_lib ablation`` (its defaults rebuild the measured table's recipe)."""
    d = AblationPlan()
    p.add_argument("--only", nargs="+", choices=list(ALL),
                   help=f"variants to run (default: all of {list(VARIANTS)}; probes: {list(PROBES)})")
    p.add_argument("--minutes", type=_minutes, default=d.minutes, help="wall-clock budget of each run")
    p.add_argument("--parallel", type=_at_least_one, default=1, help="runs at once, 1 or more (each with --threads "
                   "threads)")
    p.add_argument("--threads", type=_at_least_one, default=d.threads, help="torch CPU threads per run")
    p.add_argument("--preset", default=d.preset,
                   help="recipe every variant starts from (default: the 'ablation' preset, the measured table's)")
    p.add_argument("--stem", default=d.stem, help="stem of every variant (the cpu preset's is 'default')")
    p.add_argument("--input-size", type=int, default=d.input_size,
                   help="input size of every variant (the measured table: 48; the cpu preset trains at 64)")
    p.add_argument("--data", default=d.data, choices=("auto", "fer2013", "synthetic"))
    p.add_argument("--out", type=Path, default=d.out)
    p.add_argument("--base", default=d.base,
                   help="registered model of the full variant and of every no_* variant (default sota_resemote_small_v1; "
                   "e.g. sota_resemote_small, the CPU-budget design)")
    p.add_argument("--paired", action="store_true",
                   help="for each of --seeds, start every selected variant at once (one process each) for the same "
                   "minutes; the table gives paired differences to --reference")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="paired mode: seeds (default: 0 1)")
    p.add_argument("--reference", default="baseline", help="paired mode: the variant differences are taken to")
    p.add_argument("--report-only", action="store_true", help="only rebuild the table from finished runs")
    p.add_argument("train_args", nargs=argparse.REMAINDER, help="after --: more flags for every train command")


def run(args: argparse.Namespace) -> int:
    """Run the ablation that ``args`` describes; returns the exit status."""
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    if args.seeds is not None and not args.paired:
        print("error: --seeds needs --paired (unpaired runs take their seed from the variant)", file=sys.stderr)
        return 2
    seeds = (args.seeds or [0, 1]) if args.paired else None
    names = args.only or [n for n in VARIANTS if not (args.paired and n == "full_seed1")]
    if args.paired and args.reference not in names:
        print(f"error: --reference {args.reference!r} is not among the variants {names}; add it to --only or pass "
              "--reference with one of them", file=sys.stderr)
        return 2
    plan = AblationPlan(args.minutes, args.threads, args.preset, args.stem, args.input_size, args.data, args.out,
                        args.base, list(train_args))
    plan.out.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    if not args.report_only:
        for group in plan_jobs(names, seeds):
            failed += run_group(group, plan, len(group) if args.paired else args.parallel)
    md, rows = write_report(plan, "python -m fer_lib ablation " + shlex.join(getattr(args, "argv", [])), bool(args.paired),
                            args.reference)
    print(md, flush=True)
    if failed:
        print(f"[ablation] failed runs: {', '.join(failed)}; their logs are in {plan.out}", file=sys.stderr)
    return 1 if failed or not rows else 0
