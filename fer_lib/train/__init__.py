"""Training: the recipe (:class:`TrainConfig`, :data:`PRESETS`), the loop (:func:`train`), checkpoints.

>>> from fer_lib.train import preset_config, train, plot_history, load_model
>>> result = train(preset_config("demo"), progress=True)
>>> plot_history(result.history)
>>> model = load_model(result.best_path)          # rebuilt from the file alone, eval mode

``plot_history`` is :func:`fer_lib.plots.plot_history`, imported on first use (matplotlib is not needed to train):
the one function-local ``fer_lib`` import of this package (``tests/test_imports.py`` lists it).
"""

from __future__ import annotations

from fer_lib.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model,
    load_weights,
    save_checkpoint,
)
from fer_lib.train.config import PRESETS, TrainConfig, preset_config
from fer_lib.train.course import latest_checkpoint, quick_config, resume_or_start
from fer_lib.train.distill import Teacher, distillation_loss
from fer_lib.train.ema import ModelEMA
from fer_lib.train.engine import TrainResult, train
from fer_lib.train.estimate import Estimate, estimate_minutes
from fer_lib.train.schedule import WarmupCosineSchedule, steps_per_epoch, warmup_cosine_factor
from fer_lib.train.signals import TrainingStopped
from fer_lib.train.steps import training_loss

__all__ = [
    "PRESETS",
    "CheckpointError",
    "Estimate",
    "ModelEMA",
    "Teacher",
    "TrainConfig",
    "TrainResult",
    "TrainingStopped",
    "WarmupCosineSchedule",
    "distillation_loss",
    "estimate_minutes",
    "load_checkpoint",
    "load_model",
    "load_weights",
    "plot_history",
    "preset_config",
    "quick_config",
    "latest_checkpoint",
    "resume_or_start",
    "save_checkpoint",
    "steps_per_epoch",
    "train",
    "training_loss",
    "warmup_cosine_factor",
]


def __getattr__(name: str):
    """``plot_history`` lives in :mod:`fer_lib.plots` (imported on first use: matplotlib is not needed to train)."""
    if name == "plot_history":
        from fer_lib.plots import plot_history  # deferred: matplotlib is not needed to train

        return plot_history
    raise AttributeError(f"module 'fer_lib.train' has no attribute {name!r}")
