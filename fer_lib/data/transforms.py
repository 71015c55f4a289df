"""The one preprocessing path from stored ``uint8`` pixels to model input (everything except augmentation).

Model input is ``float32 [B, C, 48, 48]`` with ``C = 1`` (grayscale) or ``3`` (the gray channel repeated, for
ImageNet-pretrained stems), normalised as ``(x01 - FER_MEAN) / FER_STD`` where ``x01 = pixels / 255``.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["FER_MEAN", "FER_STD", "preprocess", "normalize", "to_unit"]

# Computed once on the real FER2013 Training split (the 28,709 JPEGs of the Kaggle folder train/,
# decoded with cv2.IMREAD_GRAYSCALE, pixels / 255, mean and std over all pixels in float64):
# mean 0.51357, std 0.30673. tests/test_data_fer2013.py re-checks them to 3 decimals on the real data.
FER_MEAN = 0.5136
"""Mean pixel value of FER2013 Training in [0, 1] units."""
FER_STD = 0.3067
"""Standard deviation of FER2013 Training pixels in [0, 1] units."""


def to_unit(images_uint8, device=None) -> torch.Tensor:
    """``uint8`` images (tensor or numpy) -> ``float32 [B, 1, H, W]`` in ``[0, 1]``; shape rules as :func:`preprocess`."""
    if isinstance(images_uint8, np.ndarray):
        images_uint8 = torch.from_numpy(images_uint8)
    if not isinstance(images_uint8, torch.Tensor):
        raise TypeError(f"preprocess expects a torch.Tensor or numpy array of uint8 pixels, got {type(images_uint8)}")
    x = images_uint8
    if x.numel() == 0:  # before the dtype: np.zeros((0, 0)) is float64, but what is wrong with it is that it is empty
        if x.ndim >= 3 and x.shape[0] == 0:
            what = "no images"
        else:
            what = ("images" if x.ndim >= 3 else "an image") + " without pixels (a height or width of 0)"
        raise ValueError(
            f"preprocess got {what}: shape {tuple(x.shape)}; pass uint8 faces [H, W], [B, H, W] or [B, 1, H, W] "
            "with B, H and W of at least 1 (did a crop, a slice or a filter select nothing?)"
        )
    if x.dtype != torch.uint8:
        raise TypeError(
            f"preprocess expects uint8 pixels 0-255, got dtype {x.dtype}; for float images already in [0, 1] "
            "call fer_lib.data.normalize(x) instead (or convert with (x * 255).round().to(torch.uint8))"
        )
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[:, None]
    elif not (x.ndim == 4 and x.shape[1] == 1):
        raise ValueError(
            f"preprocess expects [H, W], [B, H, W] or [B, 1, H, W] grayscale images, got shape {tuple(x.shape)}"
            " (convert colour images to grayscale first)"
        )
    if device is not None:
        x = x.to(device, non_blocking=True)
    return x.float().div_(255.0)


def normalize(x01: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """``(x01 - FER_MEAN) / FER_STD`` for float images in ``[0, 1]`` (any shape); ``inplace=True`` overwrites
    ``x01`` (the training loop does, as its batch is a fresh tensor: one allocation fewer per step)."""
    if inplace:
        return x01.sub_(FER_MEAN).div_(FER_STD)
    return (x01 - FER_MEAN) / FER_STD


def preprocess(images_uint8, channels: int = 1, device=None) -> torch.Tensor:
    """Stored pixels -> normalised model input. Used by evaluation, Grad-CAM, photo inference and export.

    Args:
        images_uint8: ``uint8`` tensor or numpy array, ``[H, W]`` (one image), ``[B, H, W]`` or ``[B, 1, H, W]``.
        channels: 1 (grayscale) or 3 (the gray channel repeated).
        device: where the result lives; the ``uint8`` tensor is moved first (4x less to transfer).

    Returns:
        ``float32 [B, channels, H, W]`` equal to ``(pixels / 255 - FER_MEAN) / FER_STD``.

    Raises:
        ValueError: no images, or images without pixels (a zero-size array); a shape that is not one of the above.
        TypeError: pixels that are not ``uint8`` (float images in ``[0, 1]`` go to :func:`normalize`).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    x = normalize(to_unit(images_uint8, device=device))
    return x.expand(-1, 3, -1, -1).contiguous() if channels == 3 else x
