"""The checkpoint the course notebooks share, in one place.

Notebook 08 trains the ``gpu`` preset (or, in quick mode, a toy version of it); notebooks 09-11 evaluate and
explain *that* checkpoint. :func:`quick_config` is the toy recipe and :func:`course_checkpoint` finds the
checkpoint, trains the toy one when none exists, and says which one is used, so no notebook repeats the logic.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fer_lib.train.checkpoint import load_model
from fer_lib.train.config import TrainConfig, preset_config

#: Quick mode (``FER_QUICK=1`` / CI): one short epoch on 128 faces. EMA gets a short memory, because a decay of
#: 0.9998 over 4 steps would keep the initial weights.
QUICK_OVERRIDES: dict[str, Any] = {
    "subset_train": 128,
    "subset_val": 64,
    "epochs": 1,
    "batch_size": 32,
    "warmup_epochs": 0.25,
    "ema_decay": 0.5,
}


def quick_config(preset: str = "gpu", **overrides: Any) -> TrainConfig:
    """``preset`` shrunk to a one-minute pipeline check; its run is named ``<preset>_quick``.

    The separate name keeps a toy run from ever overwriting a real ``runs/<preset>/best.pt``.
    """
    return preset_config(preset, **{"name": f"{preset}_quick", **QUICK_OVERRIDES, **overrides})


@dataclass
class CourseCheckpoint:
    """What :func:`course_checkpoint` found or trained."""

    path: Path  # the best.pt in use
    model: nn.Module  # rebuilt from ``path`` alone, eval mode (EMA weights when present)
    quick: bool  # True for the toy quick-mode checkpoint: maps and metrics show the method, not a trained model
    description: str  # one line: path, model, epochs, data


def course_checkpoint(
    runs_dir: str | os.PathLike,
    data=None,
    preset: str = "gpu",
    verbose: bool = True,
) -> CourseCheckpoint:
    """The checkpoint of notebook 08: ``runs_dir/<preset>/best.pt``, else ``runs_dir/<preset>_quick/best.pt``;
    when neither exists, train :func:`quick_config` now (about a minute on a CPU).

    Args:
        runs_dir: the runs folder (``fer_lib.colab.setup().runs_dir``).
        data: the ``FERData`` to train the quick checkpoint on (default: ``load_dataset()``).
        preset: the preset notebook 08 trained.
        verbose: print which checkpoint is used.
    """
    runs_dir = Path(runs_dir)
    candidates = [runs_dir / preset / "best.pt", runs_dir / f"{preset}_quick" / "best.pt"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        from fer_lib.train.engine import train

        if verbose:
            print(f"no checkpoint of the {preset!r} preset under {runs_dir}: training the quick-mode recipe now")
        path = train(quick_config(preset, out_dir=str(runs_dir)), data=data, progress=False).best_path
        path = Path(path)
    model = load_model(path)
    meta = torch.load(path, map_location="cpu", weights_only=True)
    trained_on = "SYNTHETIC faces" if meta.get("synthetic") else meta.get("data_source", "?")
    quick = path.parent.name == f"{preset}_quick"
    desc = f"using {path} | {model.model_name} | trained {meta['epoch']} epoch(s) on {trained_on}"
    if verbose:
        print(desc)
        if quick:
            print("NOTE: this is the quick-mode toy checkpoint (a few batches): maps and metrics show the method, "
                  "not a trained model's behaviour.")
    return CourseCheckpoint(path=path, model=model, quick=quick, description=desc)
