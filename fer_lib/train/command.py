"""``python -m fer_lib train``: a preset plus flag overrides -> :func:`fer_lib.train.train`.

Under ``torchrun --nproc_per_node N`` every process runs this command; :func:`fer_lib.train.train` detects
``RANK`` / ``WORLD_SIZE`` and trains with DistributedDataParallel (rank 0 prints and writes checkpoints).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from fer_lib.train.config import PRESETS

#: flag dest -> TrainConfig field (only flags the user gave override the preset)
FLAG_FIELDS = {
    "epochs": "epochs", "batch_size": "batch_size", "lr": "lr", "model": "model", "data": "data",
    "data_root": "data_root", "max_minutes": "max_minutes", "out": "out_dir", "name": "name", "device": "device",
    "seed": "seed", "subset": "subset_train", "subset_val": "subset_val", "resume": "resume", "amp": "amp",
    "optimizer": "optimizer", "weight_decay": "weight_decay", "warmup_epochs": "warmup_epochs",
    "min_lr_ratio": "min_lr_ratio",
    "label_smoothing": "label_smoothing", "mixup": "mixup_alpha", "cutmix": "cutmix_alpha", "mix_prob": "mix_prob",
    "class_balance": "class_balance", "ema_decay": "ema_decay", "grad_clip": "grad_clip", "threads": "num_threads",
    "log_every": "log_every", "in_chans": "in_chans", "aux_weight": "aux_weight", "val_split": "val_split",
    "synthetic_train": "synthetic_train", "synthetic_val": "synthetic_val",
}


def add_common_arguments(parser: argparse.ArgumentParser, default_preset: str = "demo") -> None:
    """The preset and override flags, shared by ``train`` and ``demo``."""
    parser.add_argument("--preset", default=default_preset,
                        help=f"recipe to start from: {', '.join(sorted(PRESETS))} (default {default_preset}; "
                        "see fer_lib/train/config.py)")
    g = parser.add_argument_group("overrides (default: the preset's value)")
    g.add_argument("--model", help="sota_resemote_small|medium|large, baseline_resnet18|34|50")
    g.add_argument("--model-option", action="append", metavar="KEY=VALUE", default=[],
                   help="model config override on top of the preset's, repeatable (e.g. cbam=false, dropout=0.3)")
    g.add_argument("--data", choices=("auto", "fer2013", "synthetic"), help="auto: FER2013 when found, else synthetic")
    g.add_argument("--data-root", help="FER2013 location (CSV, ICML CSV or Kaggle folders); default: search")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--lr", type=float, help="peak learning rate")
    g.add_argument("--optimizer", choices=("adamw", "sgd"))
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--warmup-epochs", type=float)
    g.add_argument("--min-lr-ratio", type=float, help="the cosine ends at lr * this (0.01: nearly 0; 1: constant)")
    g.add_argument("--label-smoothing", type=float)
    g.add_argument("--mixup", type=float, help="mixup alpha (0: off)")
    g.add_argument("--cutmix", type=float, help="cutmix alpha (0: off)")
    g.add_argument("--mix-prob", type=float, help="probability of mixing a batch")
    g.add_argument("--class-balance", choices=("none", "loss", "sampler"), help="against class imbalance")
    g.add_argument("--ema-decay", type=float)
    g.add_argument("--no-ema", action="store_true", help="no weight EMA")
    g.add_argument("--grad-clip", type=float, help="max gradient norm (0: off)")
    g.add_argument("--aux-weight", type=float, help="weight of the auxiliary-head losses")
    g.add_argument("--in-chans", type=int, choices=(1, 3))
    g.add_argument("--amp", choices=("auto", "bf16", "fp16", "off"), help="mixed precision")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, help="torch.compile the model")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                   help="NHWC memory format (faster on GPUs with tensor cores and with bf16 on CPUs)")
    g.add_argument("--no-augment", action="store_true", help="no data augmentation")
    g.add_argument("--augment-option", action="append", metavar="KEY=VALUE", default=[],
                   help="fer_lib.data.AugmentConfig override on top of the preset's, repeatable (e.g. erase_p=0)")
    g.add_argument("--subset", type=int, help="stratified subset of the training split (images)")
    g.add_argument("--subset-val", type=int, help="stratified subset of the validation split (images)")
    g.add_argument("--val-split", help="validation split name (default PublicTest)")
    g.add_argument("--synthetic-train", type=int, help="synthetic training images (when data is synthetic)")
    g.add_argument("--synthetic-val", type=int, help="synthetic validation images")
    g.add_argument("--max-minutes", type=float, help="time budget; stops cleanly before exceeding it")
    g.add_argument("--fit-budget", action=argparse.BooleanOptionalAction,
                   help="with --max-minutes: re-plan the cosine schedule after each epoch to end when the budget does")
    g.add_argument("--seed", type=int)
    g.add_argument("--device", help="auto, cpu, cuda, cuda:1, mps")
    g.add_argument("--threads", type=int, help="torch CPU threads")
    g.add_argument("--out", help="parent folder of the run folder (default runs)")
    g.add_argument("--name", help="run name: outputs go to OUT/NAME/")
    g.add_argument("--resume", help="continue from this last.pt")
    g.add_argument("--overwrite", action="store_true",
                   help="allow a run folder that holds an earlier run's checkpoints (replaced when epoch 1 is written)")
    g.add_argument("--no-progress", action="store_true", help="plain log lines instead of progress bars (CI)")
    g.add_argument("--log-every", type=int, help="with --no-progress: a line every N steps")


def parse_option(text: str) -> tuple[str, Any]:
    """``"key=value"`` -> ``(key, value)`` with the value read as JSON when it can be (``3``, ``0.5``, ``true``)
    and as a string otherwise; ``True``/``False`` in any case are booleans."""
    if "=" not in text:
        raise ValueError(f"--model-option {text!r}: expected KEY=VALUE, e.g. cbam=false")
    key, raw = (t.strip() for t in text.split("=", 1))
    if raw.lower() in ("true", "false"):
        return key, raw.lower() == "true"
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def config_from_args(args: argparse.Namespace):
    """The preset's :class:`TrainConfig` with every flag the user gave applied."""
    from fer_lib.train.config import PRESETS, preset_config

    overrides: dict[str, Any] = {f: getattr(args, d) for d, f in FLAG_FIELDS.items() if getattr(args, d, None) is not None}
    preset = PRESETS.get(args.preset, {})  # an unknown preset fails in preset_config, with the list of known ones
    # --model-option / --augment-option change single keys *on top of* the preset's dict (the cpu preset's
    # stem="default" survives --model-option input_size=64)
    options = dict(parse_option(o) for o in getattr(args, "model_option", None) or [])
    if options:
        overrides["model_overrides"] = {**preset.get("model_overrides", {}), **options}
    aug_options = dict(parse_option(o) for o in getattr(args, "augment_option", None) or [])
    if aug_options:
        overrides["augment_overrides"] = {**preset.get("augment_overrides", {}), **aug_options}
    if getattr(args, "no_ema", False):
        overrides["ema"] = False
    for flag in ("fit_budget", "compile", "channels_last"):  # --flag / --no-flag; absent: the preset's value
        if getattr(args, flag, None) is not None:
            overrides[flag] = getattr(args, flag)
    if getattr(args, "overwrite", False):
        overrides["overwrite"] = True
    if getattr(args, "no_augment", False):
        overrides["augment"] = False
    if overrides.get("grad_clip") == 0:
        overrides["grad_clip"] = None
    return preset_config(args.preset, **overrides)


def summarize(result) -> str:
    """The closing lines of a training run (printed by ``train`` and ``demo``)."""
    h = result.history
    kind = "SYNTHETIC faces (NOT FER2013)" if result.synthetic else "FER2013"
    if not h:
        return f"no epoch finished ({result.stop_reason or 'nothing to do'})"
    secs = [r["seconds"] for r in h]
    best = max(h, key=lambda r: r["val_acc"])
    lines = [
        f"data: {kind} ({result.data_source})",
        f"best val_acc {best['val_acc']:.4f} at epoch {best['epoch']}; last val_acc {h[-1]['val_acc']:.4f} "
        f"after {len(h)} epochs",
        f"mean epoch {sum(secs) / len(secs):.1f}s, train throughput {sum(r['images_per_sec'] for r in h) / len(h):.0f} "
        "images/s",
        f"checkpoints: {result.best_path} (best), {result.last_path} (last)",
    ]
    if result.stop_reason:
        lines.append(f"stopped early: {result.stop_reason}")
    return "\n".join(lines)


def check_out_dir(out_dir) -> None:
    """Refuse, before any work, an ``--out`` that names an existing file (the run folder goes *inside* it)."""
    from pathlib import Path

    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path} is a file, not a folder; pass a folder (runs go to OUT/NAME/)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from fer_lib.train import distributed as D
    from fer_lib.train.engine import train

    cfg = config_from_args(args)
    check_out_dir(cfg.out_dir)
    result = train(cfg, progress=not args.no_progress)
    info = D.init_distributed(cfg.device)
    if info.is_main:
        print(summarize(result), flush=True)
    D.cleanup(info)
    return 0
