"""The quick-mode recipe of the course's training notebook.

Notebook 08 trains the ``gpu`` preset (on Colab the ``colab`` one, the same recipe within a 60-minute budget), or in
quick mode (``FER_QUICK=1``, CI) the toy version :func:`quick_config`, which only shows that the pipeline runs.
Notebooks 09-11 never use the toy: :func:`fer_lib.colab.course_model` gives them notebook 08's full run when it
exists, else the trained model bundled with fer_lib.
"""

from __future__ import annotations

from typing import Any

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
