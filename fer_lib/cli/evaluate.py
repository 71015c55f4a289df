"""``python -m fer_lib evaluate``: any checkpoint (default: the bundled model) on any data root and split.

``--checkpoint runs/cpu/best.pt --data-root PATH --split PrivateTest`` measures a held-out figure; the work is
:func:`fer_lib.evaluate.run_evaluation`. ``--on-error skip`` leaves malformed data items out; the summary says how
many and ``report.json`` lists each under ``skipped`` (``{"item", "reason"}``).
"""

from __future__ import annotations

import argparse
import warnings

from fer_lib.inference.proba import TTA_MODES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m fer_lib evaluate``."""
    parser.add_argument("--checkpoint", default=None, metavar="PATH_OR_NAME",
                        help="a checkpoint (best.pt of `fer_lib train`), a .safetensors file, or a bundled model name: "
                             "fer2013_resnet18, fer2013_sota_resemote_small, ensemble (`python -m fer_lib models` lists "
                             "them with their accuracy; default: the most accurate bundled model)")
    parser.add_argument("--data-root", default=None,
                        help="FER2013 in any form fer_lib.data reads (CSV, ICML CSV, Kaggle folders); default: search")
    parser.add_argument("--data", choices=("fer2013", "synthetic"), default="fer2013",
                        help="'synthetic' evaluates on the synthetic faces (for checkpoints trained on them)")
    parser.add_argument("--split", default="PublicTest",
                        help="split name: Training, PublicTest, PrivateTest (aliases: train, val, test, ...)")
    parser.add_argument("--tta", choices=TTA_MODES, default="none", help="test-time augmentation")
    parser.add_argument("--out", default=None,
                        help="folder for report.json and figures (default: beside the checkpoint; "
                             "runs/eval_<weights>/ for the bundled model)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--no-ema", action="store_true", help="use the raw weights even when the checkpoint has EMA")
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                        help="a malformed data item (bad CSV row, unreadable image): 'raise' stops with an error "
                             "naming it, 'skip' leaves it out and lists it under 'skipped' in report.json")


def run(args: argparse.Namespace) -> int:
    from fer_lib.cli.train import SKIPPED_WARNING
    from fer_lib.evaluate import run_evaluation

    with warnings.catch_warnings():  # the summary says how many items were skipped, in one line
        warnings.filterwarnings("ignore", message=SKIPPED_WARNING)
        report, out, figs = run_evaluation(args.checkpoint, split=args.split, tta=args.tta, data_root=args.data_root,
                                           data=args.data, out=args.out, device=args.device,
                                           batch_size=args.batch_size, use_ema=not args.no_ema,
                                           on_error=args.on_error, log=lambda line: print(line, flush=True))
    print(report.summary())
    print(f"report: {out / 'report.json'}; figures: {', '.join(str(p) for p in figs)}")
    return 0
