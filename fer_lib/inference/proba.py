"""Batched class probabilities for faces, with deterministic test-time augmentation (TTA).

The one inference loop of fer_lib: evaluation, photo inference and the widget call :func:`predict_proba`.
Probabilities (softmax) are averaged over the TTA views:

* ``"none"``: the image as is.
* ``"flip"``: the image and its horizontal mirror (faces are roughly left-right symmetric).
* ``"tencrop"``: the image resized to 52x52 (bilinear), its 4 corner and centre 48x48 crops, and the
  mirror of each: 10 views (the "10-crop" of Krizhevsky et al. 2012, https://papers.nips.cc/paper/4824,
  adapted to 48x48 faces). Bilinear resizing commutes with the affine normalisation, so views are built from
  the normalised input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fer_lib.inference.models import eval_mode, logits_of, model_device, to_model_input

TTA_MODES = ("none", "flip", "tencrop")
_TENCROP_SIZE = 52


def tta_views(x: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """The deterministic views of a normalised batch ``x`` ``[B, C, 48, 48]`` for TTA ``mode``.

    Returns:
        1 (``none``), 2 (``flip``) or 10 (``tencrop``) tensors of shape ``[B, C, 48, 48]``.
    """
    if mode not in TTA_MODES:
        raise ValueError(f"unknown tta {mode!r}; choose one of {TTA_MODES}")
    if mode == "none":
        return [x]
    if mode == "flip":
        return [x, x.flip(-1)]
    h, w = x.shape[-2:]
    big = F.interpolate(x, size=(_TENCROP_SIZE, _TENCROP_SIZE), mode="bilinear", align_corners=False)
    d = _TENCROP_SIZE - h
    offsets = [(0, 0), (0, d), (d, 0), (d, d), (d // 2, d // 2)]
    crops = [big[..., i : i + h, j : j + w] for i, j in offsets]
    return crops + [c.flip(-1) for c in crops]


@torch.no_grad()
def predict_proba(model: nn.Module, images, tta: str = "none", *, batch_size: int = 256, device=None) -> torch.Tensor:
    """Class probabilities for faces, averaged over the TTA views; the model's train/eval mode is restored after.

    Args:
        model: any classifier on ``[B, C, 48, 48]`` (run in eval mode); logits or ``ModelOutput``.
        images: ``uint8`` faces ``[N, 48, 48]`` (tensor or numpy, as stored in ``FERSplit.images`` and returned by
            ``fer_lib.faces.face_crops``), or float input already made by ``fer_lib.data.preprocess``.
        tta: ``"none"``, ``"flip"`` or ``"tencrop"`` (see the module docstring).
        batch_size: images per forward pass (``tencrop`` feeds 10x as many views).
        device: defaults to the model's device.

    Returns:
        ``float32 [N, classes]`` on the CPU, rows summing to 1.
    """
    if tta not in TTA_MODES:
        raise ValueError(f"unknown tta {tta!r}; choose one of {TTA_MODES}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device) if device is not None else model_device(model)
    out = []
    with eval_mode(model):
        for i in range(0, len(images), batch_size):
            x = to_model_input(images[i : i + batch_size], model).to(device)
            views = tta_views(x, tta)
            logits = logits_of(model(torch.cat(views)))
            probs = logits.float().softmax(-1).view(len(views), len(x), -1).mean(0)
            out.append(probs.cpu())
    if not out:
        raise ValueError("predict_proba: no images given")
    return torch.cat(out)
