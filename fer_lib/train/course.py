"""The quick-mode recipe of the course's training notebook.

Notebook 08 trains the ``gpu`` preset (on Colab the ``colab`` one, the same recipe within a 60-minute budget), or in
quick mode (``FER_QUICK=1``, CI) the toy version :func:`quick_config`, which only shows that the pipeline runs.
Notebooks 09-11 never use the toy: :func:`fer_lib.colab.course_model` gives them notebook 08's full run when it
exists, else the trained model bundled with fer_lib.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fer_lib.paths import display_path
from fer_lib.train.config import TrainConfig, preset_config
from fer_lib.train.engine import train

#: Quick mode (``FER_QUICK=1`` / CI): one short epoch on 128 faces. EMA gets a short memory, because a decay of
#: 0.9998 over 4 steps would keep the initial weights.
QUICK_OVERRIDES: dict[str, Any] = {
    "subset_train": 128,
    "subset_val": 64,
    "epochs": 1,
    "batch_size": 32,
    "warmup_epochs": 0.25,
    "ema_decay": 0.5,
    # no time budget: fit_budget would re-plan a budget-sized preset's toy (``colab``) to fill its whole budget
    "max_minutes": None,
    "fit_budget": False,
}


def quick_config(preset: str = "gpu", **overrides: Any) -> TrainConfig:
    """``preset`` shrunk to a one-minute pipeline check; its run is named ``<preset>_quick``.

    The separate name keeps a toy run from ever overwriting a real ``runs/<preset>/best.pt``; a toy run does replace
    the previous toy run of the same name (``overwrite=True``), so the notebook can be run again.
    """
    return preset_config(preset, **{"name": f"{preset}_quick", "overwrite": True, **QUICK_OVERRIDES, **overrides})


def latest_checkpoint(runs, name: str) -> Path | None:
    """``<runs>/<name>/last.pt`` (``runs``: a folder, or anything with a ``runs_dir``, such as
    :class:`fer_lib.colab.Session`) when an earlier session left one, the checkpoint to resume; ``None`` when there
    is none."""
    folder = Path(getattr(runs, "runs_dir", runs))
    last = folder / name / "last.pt"
    return last if last.is_file() else None


def _progress(last: Path) -> str:
    """What a ``last.pt`` holds, in a few words (``""`` when it cannot be read cheaply)."""
    try:
        ckpt = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
        sched = ckpt.get("scheduler") or {}
        text = f"{int(ckpt['epoch'])} epoch(s) done"
        if sched and int(sched["step_count"]) >= int(sched["total_steps"]):
            text += (" and its plan is complete, so nothing is left to train (to train again, give cfg another "
                     "name, or set overwrite=True and resume=False)")
        return text
    except Exception:  # noqa: BLE001 - only a message: train() reads the file and reports real problems
        return ""


def resume_or_start(cfg, data=None, progress: bool = True, *, resume: bool = True, **train_kwargs):
    """Train ``cfg``, or continue its run from its ``last.pt``: the one call that survives a Colab disconnect.

    ``train`` writes ``<cfg.out_dir>/<cfg.name>/last.pt`` after every epoch; with runs on Google Drive (the
    default of :func:`fer_lib.colab.setup` on Colab) it outlives the session. Run the notebook again after a disconnect and this
    call finds it (:func:`latest_checkpoint`) and passes it to ``fer_lib.train.train(cfg, data, resume=...)``:
    the run continues after its last finished epoch, exactly as if it had not stopped, and a ``fit_budget`` run
    gets what is left of its budget. Without a ``last.pt``, or with ``resume=False``, it starts a new run.

    Args:
        cfg: the recipe; resuming needs the same recipe and data as the checkpoint (``train`` refuses otherwise,
            naming what differs: start over under another ``cfg.name``).
        data, progress, train_kwargs: passed to :func:`fer_lib.train.train`.
        resume: look for a ``last.pt`` to continue (quick mode passes ``False``: a toy run always starts over).

    Returns:
        ``train``'s :class:`fer_lib.train.TrainResult` (its ``history`` includes the resumed epochs).
    """
    last = latest_checkpoint(cfg.out_dir, cfg.name) if resume else None
    if last is None:
        print(f"starting run {cfg.name!r} in {display_path(Path(cfg.out_dir) / cfg.name)}")
    else:
        done = _progress(last)
        print(f"resuming {display_path(last)}" + (f": {done}" if done else ""))
    return train(cfg, data, progress, resume=last, **train_kwargs)
