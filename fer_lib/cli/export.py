"""``python -m fer_lib export [CHECKPOINT]``: TorchScript and ONNX files plus batch-1 latency, as JSON.

The work is :func:`fer_lib.export.export_model`; without a checkpoint the bundled model is exported.
"""

from __future__ import annotations

import argparse
import json

from fer_lib.export import FORMATS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m fer_lib export``."""
    parser.add_argument("checkpoint", nargs="?", default=None,
                        help="a best.pt / last.pt written by fer_lib.train, or a .safetensors file "
                             "(default: the bundled FER2013 model)")
    parser.add_argument("--out", default="exports", help="output folder (default: exports/)")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    parser.add_argument("--runs", type=int, default=50, help="timed calls per runtime (median reported)")
    parser.add_argument("--latency-batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch/ORT CPU threads (default: torch's)")


def run(args: argparse.Namespace) -> int:
    """Load the checkpoint, export, print the report as JSON. Returns the exit code."""
    import torch

    from fer_lib.export import export_model
    from fer_lib.inference import load_model

    model = load_model(args.checkpoint)  # a CheckpointError becomes one `error:` line in fer_lib.cli.main
    if args.threads:
        torch.set_num_threads(args.threads)
    report = export_model(model, args.out, formats=tuple(args.formats), runs=args.runs,
                          latency_batch=args.latency_batch)
    print(json.dumps(report, indent=2))
    return 0
