"""One way to get a trained model from what a user names: a checkpoint, a weights file, or a bundled name.

>>> from fer_lib.inference import load_model
>>> load_model("runs/cpu/best.pt")                  # a checkpoint of `python -m fer_lib train`
>>> load_model("mine.safetensors")                  # weights written by save_pretrained
>>> load_model("fer2013_sota_resemote_small")       # a bundled name (fer_lib.inference.list_pretrained())
>>> load_model("ensemble")                          # the average of the bundled models
>>> load_model(None)                                # the most accurate bundled single model

This is what ``--checkpoint`` means on every command (``predict``, ``evaluate``, ``export``) and in the widget. A
path that exists always wins over a bundled name of the same spelling.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from fer_lib.inference.checkpoint import CheckpointError, build_named_model, load_checkpoint, load_weights
from fer_lib.inference.pretrained import bundled_names, is_bundled_name, load_pretrained, pretrained


def load_model(
    path: str | os.PathLike | None = None, device: str | torch.device = "cpu", *, use_ema: bool = True
) -> nn.Module:
    """Rebuild a trained model from one file alone (architecture, config and weights), or a bundled one by name;
    in eval mode.

    Args:
        path: a ``best.pt`` / ``last.pt`` written by :func:`fer_lib.train.train`, a ``.safetensors`` file written
            by :func:`fer_lib.inference.save_pretrained`, a bundled name (:func:`fer_lib.inference.bundled_names`,
            ``"ensemble"`` included), or ``None`` for the most accurate bundled single model.
        device: where to put the model.
        use_ema: load the EMA weights when the checkpoint has them (what validation measured).

    Returns:
        The model in eval mode; ``model.checkpoint_path`` and ``model.data_fingerprint`` are set.

    Raises:
        CheckpointError: missing or unreadable file, a folder, an unknown name, or an architecture fer_lib cannot
            build.
    """
    if path is None or is_bundled_name(path):
        return pretrained(None if path is None else str(path), device=device)
    if str(path).endswith(".safetensors"):
        return load_pretrained(path, device=device)
    if not Path(path).exists() and not any(sep in str(path) for sep in ("/", os.sep, ".")):
        raise CheckpointError(f"{path!r} is neither a file nor a bundled model name; bundled names: "
                              f"{', '.join(bundled_names()) or 'none'} (`python -m fer_lib models` lists them with "
                              "their accuracy), or pass a checkpoint path such as runs/cpu/best.pt")
    ckpt = load_checkpoint(path)
    model = build_named_model(ckpt["model_name"], ckpt["model_config"], f"checkpoint {path}")
    try:
        load_weights(model, ckpt, use_ema=use_ema)
    except CheckpointError as e:  # the file contradicts itself: its weights are not those of its model_config
        detail = str(e).split("; ", 1)[-1].rsplit("; build the model", 1)[0]
        raise CheckpointError(f"checkpoint {path} is inconsistent: its weights do not match its own model_config "
                              f"({ckpt['model_name']!r}): {detail}; it was not written by fer_lib.train as it "
                              "is, so retrain or re-save it") from e
    model.checkpoint_path = str(path)
    model.data_fingerprint = ckpt.get("data_fingerprint")
    return model.to(device).eval()


__all__ = ["load_model"]
