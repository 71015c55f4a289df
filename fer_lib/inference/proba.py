"""Batched class probabilities for faces, with deterministic test-time augmentation (TTA).

:func:`batched_logits` is the one batched inference loop of fer_lib: :func:`predict_proba` (evaluation, photo
inference and the widget), the validation pass of training and the deletion curve's scoring all run through it
(export traces one batch; bench times single batches). Probabilities (softmax) are averaged over the TTA views:

* ``"none"``: the image as is.
* ``"flip"``: the image and its horizontal mirror (faces are roughly left-right symmetric).
* ``"tencrop"``: the image resized to 52x52 (bilinear), its 4 corner and centre 48x48 crops, and the
  mirror of each: 10 views (the "10-crop" of Krizhevsky et al. 2012, https://papers.nips.cc/paper/4824,
  adapted to 48x48 faces). Bilinear resizing commutes with the affine normalisation, so views are built from
  the normalised input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext

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
def batched_logits(model: nn.Module, images, tta: str = "none", *, batch_size: int = 256, device=None,
                   autocast: Callable[[], AbstractContextManager] = nullcontext,
                   channels_last: bool = False) -> Iterator[torch.Tensor]:
    """The one batched forward loop: logits for ``images``, batch by batch, in eval mode and without gradients.

    Args:
        model: any classifier on ``[B, C, 48, 48]``; logits or ``ModelOutput``. In eval mode while the loop runs;
            every module's own mode is restored when it ends (or is closed).
        images: ``uint8`` faces ``[N, 48, 48]`` (tensor or numpy) or float input made by
            ``fer_lib.data.preprocess`` (see :func:`fer_lib.inference.to_model_input`).
        tta: the views of each batch (:func:`tta_views`).
        batch_size: images per forward pass (``tencrop`` feeds 10x as many views).
        device: where the input goes (defaults to the model's device).
        autocast: a function returning the context to run the forward in (training passes its precision's
            ``autocast``); logits are returned as the model gives them (e.g. bf16 under autocast).
        channels_last: feed the input in ``torch.channels_last`` memory format (as training does).

    Yields:
        ``logits [views, b, classes]`` on ``device`` for each batch of ``b`` images, in order.
    """
    if tta not in TTA_MODES:
        raise ValueError(f"unknown tta {tta!r}; choose one of {TTA_MODES}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device) if device is not None else model_device(model)
    with eval_mode(model):
        for i in range(0, len(images), batch_size):
            x = to_model_input(images[i : i + batch_size], model).to(device)
            views = tta_views(x, tta)
            x = torch.cat(views) if len(views) > 1 else x
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast():
                logits = logits_of(model(x))
            yield logits.view(len(views), -1, logits.shape[-1])


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
    out = [logits.float().softmax(-1).mean(0).cpu()
           for logits in batched_logits(model, images, tta, batch_size=batch_size, device=device)]
    if not out:
        raise ValueError(f"predict_proba: no images given (shape {tuple(getattr(images, 'shape', ()))}); pass uint8 "
                         "faces [N, 48, 48] with N >= 1 (fer_lib.faces.predict_faces finds them in a photo)")
    return torch.cat(out)
