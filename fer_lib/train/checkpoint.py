"""Checkpoints: atomic writes, safe loading, clear mismatch errors, and ``load_model`` from the file alone.

A checkpoint is a ``dict`` of tensors and plain python types only, so ``torch.load(path, weights_only=True)``
(no arbitrary pickled code) loads it. Keys (see ``docs/DESIGN.md``)::

    format            "fer_lib.checkpoint/1"
    model_name        e.g. "sota_resemote_small"   (fer_lib.models.build_model rebuilds it)
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

Atomic write: the state goes to a temporary file in the same folder, is flushed and ``fsync``-ed, and then
``os.replace``-d over the target (atomic on POSIX and Windows). A kill at any moment leaves either the old or the
new complete file, never a half-written one.
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

FORMAT = "fer_lib.checkpoint/1"
REQUIRED_KEYS = ("model_name", "model_config", "model")
_MAX_LISTED = 8


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, not a fer_lib checkpoint, or does not fit the model."""


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


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a fer_lib checkpoint with ``weights_only=True``.

    Raises:
        CheckpointError: the file does not exist, is truncated/corrupt, holds pickled objects, or lacks the
            keys of a fer_lib checkpoint. The message names the file and what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (train one with `python -m fer_lib train`)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - a junk file can fail anywhere inside the unpickler
        # torch's own message suggests weights_only=False, i.e. unpickling arbitrary code: never repeat that.
        unsafe = isinstance(e, pickle.UnpicklingError) or "weights_only" in str(e)
        reason = "it holds pickled objects or is not a torch file" if unsafe else type(e).__name__
        raise CheckpointError(
            f"{path} is not a readable fer_lib checkpoint ({reason}); it may be truncated, corrupt or saved by "
            "another program (fer_lib never unpickles arbitrary objects); use the best.pt or last.pt of a fer_lib run"
        ) from e
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED_KEYS):
        have = sorted(ckpt)[:_MAX_LISTED] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{path} is not a fer_lib checkpoint: it needs keys {list(REQUIRED_KEYS)}, found {have}; "
            "a bare state_dict can be loaded with model.load_state_dict(torch.load(path, weights_only=True))"
        )
    return ckpt


def _strip_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove the ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes."""
    out = {}
    for k, v in state_dict.items():
        for prefix in ("module.", "_orig_mod."):
            while k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v
    return out


def _listed(keys: list[str]) -> str:
    more = f" ... (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return ", ".join(keys[:_MAX_LISTED]) + more


def load_state_into(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    *,
    checkpoint_model_name: str | None = None,
    source: str = "checkpoint",
) -> None:
    """Copy ``state_dict`` into ``model``; on any mismatch raise one error that names all of it.

    Args:
        model: the target (its ``model_name`` attribute, when present, is compared).
        state_dict: weights (``module.`` / ``_orig_mod.`` prefixes are accepted).
        checkpoint_model_name: the architecture the weights came from, for the message.
        source: how to call the weights in the message (e.g. the file name).

    Raises:
        CheckpointError: naming the two model names, the missing and unexpected keys and the shape mismatches.
    """
    state_dict = _strip_prefixes(state_dict)
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [
        f"{k}: {tuple(state_dict[k].shape)} in {source} vs {tuple(own[k].shape)} in the model"
        for k in sorted(set(own) & set(state_dict))
        if tuple(own[k].shape) != tuple(state_dict[k].shape)
    ]
    if missing or unexpected or shapes:
        target_name = getattr(model, "model_name", type(model).__name__)
        parts = [f"{source} does not fit the model"]
        if checkpoint_model_name is not None:
            parts.append(f"it holds {checkpoint_model_name!r} weights, the model is {target_name!r}")
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_listed(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {_listed(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): {_listed(shapes)}")
        parts.append("build the model the checkpoint names (fer_lib.train.load_model(path) does this)")
        raise CheckpointError("; ".join(parts))
    model.load_state_dict(state_dict)


def load_weights(
    model: nn.Module, checkpoint: str | os.PathLike | dict[str, Any], *, use_ema: bool = True
) -> nn.Module:
    """Load a checkpoint's weights (EMA when present and ``use_ema``) into an existing ``model``.

    Raises:
        CheckpointError: unreadable file, or a named architecture mismatch (see :func:`load_state_into`).
    """
    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    source = "the checkpoint" if isinstance(checkpoint, dict) else f"checkpoint {Path(checkpoint).name}"
    ema = ckpt.get("ema")
    weights = ema["module"] if (use_ema and ema) else ckpt["model"]
    load_state_into(model, weights, checkpoint_model_name=ckpt["model_name"], source=source)
    return model


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu", *, use_ema: bool = True) -> nn.Module:
    """Rebuild the trained model from the checkpoint alone: architecture, config and weights.

    Args:
        path: a ``best.pt`` / ``last.pt`` written by :func:`fer_lib.train.train`.
        device: where to put the model.
        use_ema: load the EMA weights when the checkpoint has them (what validation measured).

    Returns:
        The model in eval mode; ``model.checkpoint_path`` and ``model.data_fingerprint`` are set.

    Raises:
        CheckpointError: unreadable file or unknown architecture.
    """
    ckpt = load_checkpoint(path)
    from fer_lib.models import build_model

    try:
        model = build_model(ckpt["model_name"], ckpt["model_config"])
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(
            f"checkpoint {path} names model {ckpt['model_name']!r}, which fer_lib.models cannot build ({e})"
        ) from e
    load_weights(model, ckpt, use_ema=use_ema)
    model.checkpoint_path = str(path)
    model.data_fingerprint = ckpt.get("data_fingerprint")
    return model.to(device).eval()


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
