"""Writing checkpoints atomically, and the RNG state that makes a resumed run exact.

Reading them (``load_checkpoint``, ``load_model``, ``CheckpointError``) lives in :mod:`fer_lib.inference.checkpoint`
so that inference never imports the trainer; the names are re-exported here for existing code.

A checkpoint is a ``dict`` of tensors and plain python types only, so ``torch.load(path, weights_only=True)``
(no arbitrary pickled code) loads it. Keys (see ``docs/DESIGN.md``)::

    format            "fer_lib.checkpoint/1"
    model_name        e.g. "sota_resemote_small_v1"   (fer_lib.models.build_model rebuilds it)
    model_config      the model's config as a plain dict
    model             state_dict of the trained weights
    ema               {"module": state_dict, "updates": int, "decay": float} or None
    optimizer, scheduler, scaler   their state_dicts (scaler: None without fp16)
    epoch             number of finished epochs (resume starts at this epoch index)
    history           list of per-epoch dicts (see fer_lib.train.engine)
    best_val_acc      float
    rng               RNG states (torch CPU/CUDA, numpy, python)
    data_fingerprint  FERData.fingerprint of the data it was trained on
    train_config      TrainConfig.to_dict()

A run writes two files (``fer_lib.train.engine``): ``last.pt`` after every epoch, with all of the above (what
``resume`` needs), and ``best.pt`` when validation accuracy improved, for evaluation and inference only: the same
dict without ``optimizer``, ``scheduler``, ``scaler`` and ``rng`` (:func:`inference_state`; about half the size
with EMA, a third without, as AdamW keeps two tensors per weight). ``load_model`` reads either; ``resume``
needs ``last.pt`` (a ``best.pt`` written before this split holds everything and still resumes).

Atomic write: the state goes to a temporary file in the same folder, is flushed and ``fsync``-ed, and then
``os.replace``-d over the target (atomic on POSIX and Windows). A kill at any moment leaves either the old or the
new complete file, never a half-written one.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fer_lib.inference.checkpoint import (  # noqa: F401 - re-exported: the reading side moved
    FORMAT,
    REQUIRED_KEYS,
    CheckpointError,
    load_checkpoint,
    load_state_into,
    load_weights,
)
from fer_lib.inference.loading import load_model  # noqa: F401 - re-exported: fer_lib.train.load_model


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (tmp file + fsync + ``os.replace``).

    Args:
        state: tensors and plain python types only (checked by the reload in the tests).
        path: target file; its folder is created.

    Returns:
        The target path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # make the rename itself durable (POSIX; not possible on Windows)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return path



#: What only ``resume`` reads; :func:`inference_state` leaves these out of ``best.pt``.
TRAINING_ONLY_KEYS = ("optimizer", "scheduler", "scaler", "rng")


def inference_state(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` without :data:`TRAINING_ONLY_KEYS`: what ``best.pt`` holds (weights, EMA weights, model identity,
    recipe, data fingerprint, history up to that epoch). The tensors are shared with ``state``, not copied."""
    return {k: v for k, v in state.items() if k not in TRAINING_ONLY_KEYS}


def is_resumable(state: dict[str, Any]) -> bool:
    """Whether a loaded checkpoint holds what ``resume`` needs (a ``last.pt``, or a ``best.pt`` written before
    ``best.pt`` left the training state out)."""
    return all(k in state for k in ("optimizer", "scheduler", "rng"))


def capture_rng_state() -> dict[str, Any]:
    """torch (CPU and every CUDA device), numpy and python RNG states, as tensors and plain types."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "python": random.getstate(),
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (CUDA states are restored only when the device count matches)."""
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), int(pos), int(has_gauss), cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
