"""``python -m fer_lib export [CHECKPOINT]``: TorchScript and ONNX files plus batch-1 latency, as JSON.

The work is :func:`fer_lib.export.export_model`; the model is a checkpoint, a weights file or a bundled name
(positional or ``--checkpoint``); without one the most accurate bundled model is exported.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fer_lib.export import FORMATS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m fer_lib export``."""
    parser.add_argument("checkpoint", nargs="?", default=None, metavar="PATH_OR_NAME",
                        help="a checkpoint (best.pt of `fer_lib train`), a .safetensors file, or a bundled model name: "
                             "fer2013_resnet18, fer2013_sota_resemote_small, ensemble (`python -m fer_lib models` lists "
                             "them with their accuracy; default: the most accurate bundled model)")
    parser.add_argument("--checkpoint", dest="checkpoint_flag", default=None, metavar="PATH_OR_NAME",
                        help="the same as the positional argument, spelled as on predict and evaluate")
    parser.add_argument("--out", default="exports", help="output folder (default: exports/)")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    parser.add_argument("--runs", type=int, default=50, help="timed calls per runtime (median reported)")
    parser.add_argument("--latency-batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch/ORT CPU threads (default: torch's)")


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse, before any work (``ValueError``: one ``error:`` line), an ``--out`` that is a file, has a file in
    its path or cannot be written, and ``--runs``, ``--latency-batch`` or ``--threads`` below 1."""
    from fer_lib.paths import file_in_the_way, unwritable

    for flag, value in (("--runs", args.runs), ("--latency-batch", args.latency_batch), ("--threads", args.threads)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} {value}: must be at least 1" + (" (leave it out for torch's default)"
                                                                      if flag == "--threads" else ""))
    out = Path(args.out)
    blocked = file_in_the_way(out)
    if blocked is not None:
        where = f"--out {out} is a file" if blocked == out else f"--out {out}: {blocked} is a file"
        raise ValueError(f"{where}, not a folder; pass a folder for model.ts and model.onnx (e.g. --out exports)")
    locked = unwritable(out)
    if locked is not None:
        raise ValueError(f"--out {out} cannot be written: {locked} is read-only for this user (permissions or a "
                         "read-only file system); pass --out with a folder you can write to")


def run(args: argparse.Namespace) -> int:
    """Load the checkpoint, export, print the report as JSON. Returns the exit code."""
    import torch

    from fer_lib.export import export_model
    from fer_lib.inference import load_model

    check_arguments(args)
    if args.checkpoint and args.checkpoint_flag and args.checkpoint != args.checkpoint_flag:
        raise ValueError(f"export: two models given ({args.checkpoint} and --checkpoint {args.checkpoint_flag}); "
                         "pass one")
    model = load_model(args.checkpoint or args.checkpoint_flag)  # a CheckpointError: one `error:` line (cli.main)
    if args.threads:
        torch.set_num_threads(args.threads)
    report = export_model(model, args.out, formats=tuple(args.formats), runs=args.runs,
                          latency_batch=args.latency_batch)
    print(json.dumps(report, indent=2))
    return 0
