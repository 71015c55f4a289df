"""Showing maps on 48x48 faces at a readable size: overlays and a Grad-CAM grid by class.

A 48x48 face drawn at 48 screen pixels is too small to read, and a 6x6 (or 3x3) map stretched with
nearest-neighbour looks like a chessboard. So the face is upsampled with bicubic interpolation and the map
(already 48x48 from ``pytorch_grad_cam``) with bilinear interpolation, then blended with a jet/turbo colormap.
"""

from __future__ import annotations

import cv2
import matplotlib
import numpy as np
from matplotlib.figure import Figure

from fer_lib import EMOTIONS
from fer_lib.explain.cam import FERCam
from fer_lib.inference.models import to_uint8_faces

DISPLAY_SIZE = 192


def upsample_face(face, size: int = DISPLAY_SIZE, interpolation: str = "bicubic") -> np.ndarray:
    """``uint8 [48, 48]`` face -> ``uint8 [size, size]`` (``"bicubic"`` or ``"nearest"`` to see raw pixels)."""
    flag = {"bicubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}.get(interpolation)
    if flag is None:
        raise ValueError(f"interpolation={interpolation!r}: choose 'bicubic' or 'nearest'")
    face = to_uint8_faces(face)[0]
    return cv2.resize(face, (size, size), interpolation=flag)


def upsample_map(heat, size: int = DISPLAY_SIZE) -> np.ndarray:
    """Any ``[h, w]`` map -> ``float32 [size, size]`` with bilinear interpolation (values unchanged in range)."""
    heat = np.asarray(heat, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"map of shape {heat.shape}: expected [h, w]")
    return cv2.resize(heat, (size, size), interpolation=cv2.INTER_LINEAR)


def colorize(heat01: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """``float [H, W]`` in ``[0, 1]`` -> ``uint8 RGB [H, W, 3]`` through a matplotlib colormap."""
    rgba = matplotlib.colormaps[cmap](np.clip(heat01, 0.0, 1.0))
    return np.rint(rgba[..., :3] * 255).astype(np.uint8)


def overlay_cam(face, cam, *, size: int = DISPLAY_SIZE, alpha: float = 0.45, cmap: str = "jet",
                normalize: bool = False) -> np.ndarray:
    """Blend a map over a face at display size.

    Args:
        face: ``uint8 [48, 48]`` (or ``[1, 48, 48]``) face.
        cam: ``[h, w]`` map in ``[0, 1]`` (any grid; upsampled bilinearly).
        size: output side in pixels.
        alpha: weight of the colour map (0 = face only, 1 = map only).
        cmap: matplotlib colormap (``"jet"`` or ``"turbo"`` read well on gray faces).
        normalize: min-max scale the map first (for raw attention maps not in ``[0, 1]``).

    Returns:
        ``uint8 RGB [size, size, 3]``.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha} must be in [0, 1]")
    heat = upsample_map(cam, size)
    if normalize:
        lo, hi = float(heat.min()), float(heat.max())
        heat = (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)
    gray = upsample_face(face, size).astype(np.float32)
    blend = (1.0 - alpha) * gray[..., None] + alpha * colorize(heat, cmap).astype(np.float32)
    return np.clip(np.rint(blend), 0, 255).astype(np.uint8)


def _pick_per_class(labels: np.ndarray, per_class: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    picks = []
    for c in range(len(EMOTIONS)):
        idx = np.flatnonzero(labels == c)
        picks.append(sorted(rng.choice(idx, size=min(per_class, len(idx)), replace=False).tolist()))
    return picks


def cam_grid(model, split, per_class: int = 4, *, method: str = "gradcam", target: str = "predicted",
             seed: int = 0, size: int = 128, alpha: float = 0.45, cmap: str = "jet") -> Figure:
    """A grid of CAM overlays: one row per emotion (true label), ``per_class`` random faces per row.

    Args:
        model: a fer_lib classifier.
        split: a ``FERSplit`` (or anything with ``.images`` uint8 ``[N,48,48]`` and ``.labels`` ``[N]``).
        per_class: faces per row.
        method: ``"gradcam"``, ``"gradcam++"`` or ``"eigencam"``.
        target: explain the ``"predicted"`` class or the ``"true"`` label.
        seed: which faces are picked.
        size, alpha, cmap: see :func:`overlay_cam`.

    Returns:
        A matplotlib ``Figure``; each title reads ``true -> predicted (prob)``, green when right, red when wrong.
    """
    if target not in ("predicted", "true"):
        raise ValueError(f"target={target!r}: choose 'predicted' or 'true'")
    if per_class < 1:
        raise ValueError(f"per_class={per_class} must be >= 1")
    images = to_uint8_faces(split.images)
    labels = np.asarray(split.labels).reshape(-1)
    if len(images) != len(labels):
        raise ValueError(f"split has {len(images)} images but {len(labels)} labels")
    picks = _pick_per_class(labels, per_class, seed)
    flat = [i for row in picks for i in row]
    if not flat:
        raise ValueError("the split is empty: nothing to show")
    with FERCam(model, method=method) as cam:
        maps = cam(images[flat], targets=labels[flat].tolist() if target == "true" else None)
        probs = cam.last_probs
    fig = Figure(figsize=(1.6 * per_class, 1.75 * len(EMOTIONS)), layout="constrained")
    axes = fig.subplots(len(EMOTIONS), per_class, squeeze=False)
    k = 0
    for c, row in enumerate(picks):
        for j in range(per_class):
            ax = axes[c, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(EMOTIONS[c], fontsize=10)
            if j >= len(row):
                ax.set_frame_on(False)
                continue
            i = row[j]
            pred = int(probs[k].argmax())
            ax.imshow(overlay_cam(images[i], maps[k], size=size, alpha=alpha, cmap=cmap))
            ax.set_title(f"-> {EMOTIONS[pred]} {probs[k][pred]:.2f}", fontsize=8,
                         color="tab:green" if pred == labels[i] else "tab:red")
            k += 1
    fig.suptitle(f"{method} ({'predicted class' if target == 'predicted' else 'true class'}); rows = true label",
                 fontsize=10)
    return fig
