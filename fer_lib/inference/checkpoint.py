"""Reading fer_lib checkpoints: safe loading (``weights_only=True``), clear mismatch errors, and the model a
checkpoint names (:func:`build_named_model`); :func:`fer_lib.inference.load_model` builds on them.

A checkpoint (written by :mod:`fer_lib.train.checkpoint`) is a ``dict`` of tensors and plain python types only, so
``torch.load(path, weights_only=True)`` -- no arbitrary pickled code -- loads it. The keys this module reads:
``model_name`` (what :func:`fer_lib.models.build_model` rebuilds), ``model_config``, ``model`` (the state_dict),
``ema`` (``{"module": state_dict, ...}`` or ``None``) and ``data_fingerprint``; the full layout is in
``docs/DESIGN.md``. Reading lives here, outside the training package, so that evaluation, explanation, photo
inference and export never import the trainer.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fer_lib.models import build_model

FORMAT = "fer_lib.checkpoint/1"
REQUIRED_KEYS = ("model_name", "model_config", "model")
_MAX_LISTED = 8


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, not a fer_lib checkpoint, or does not fit the model."""


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a fer_lib checkpoint with ``weights_only=True``.

    Raises:
        CheckpointError: the file does not exist, is truncated/corrupt, holds pickled objects, or lacks the
            keys of a fer_lib checkpoint. The message names the file and what to do.
    """
    path = Path(path)
    if path.is_dir():
        hint = next((f"; pass {path / n}" for n in ("best.pt", "last.pt") if (path / n).is_file()), "")
        raise CheckpointError(f"checkpoint {path} is a directory, not a checkpoint file{hint or '; pass DIR/best.pt'}")
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
        parts.append("build the model the checkpoint names (fer_lib.load_model(path) does this)")
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


def build_named_model(model_name: str, model_config: dict[str, Any], source: str) -> nn.Module:
    """``fer_lib.models.build_model(model_name, model_config)``, with a :class:`CheckpointError` naming ``source``
    when fer_lib cannot build that architecture."""
    try:
        return build_model(model_name, model_config)
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{source} names model {model_name!r}, which fer_lib.models cannot build ({e})") from e
