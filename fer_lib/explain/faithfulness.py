"""Is the saliency map faithful? The deletion curve.

Deletion metric (Petsiuk, Das & Saenko 2018, RISE, https://arxiv.org/abs/1806.07421; see also Samek et al.
2017, https://arxiv.org/abs/1509.06321): remove the pixels a map calls most important first and watch the
accuracy (and the true class's probability) fall. A faithful map makes it fall *faster* than removing pixels in
random order, so the area under its curve (AUC, fractions 0..1 on the x axis) is *smaller* than random's.

"Removing" a pixel means replacing it with a neutral value: the image's mean (``fill="mean"``) or a heavily
blurred copy of the image (``fill="blur"``, which avoids sharp artificial edges). Both are choices, not truths:
the model never saw such images in training, so every curve also measures some distribution shift -- which is
why the random-order curve, which suffers the same shift, is the baseline to compare with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from matplotlib.figure import Figure

from fer_lib.explain.cam import FERCam, resolve_method
from fer_lib.inference.models import eval_mode, to_uint8_faces
from fer_lib.inference.proba import batched_logits


@dataclass
class DeletionResult:
    """Curves of a deletion experiment (all arrays have one entry per fraction).

    Attributes:
        fractions: fraction of pixels removed, ``[S]`` from 0 to 1.
        accuracy: ``{"saliency": [S], "random": [S]}`` accuracy after removal.
        prob: ``{"saliency": [S], "random": [S]}`` mean softmax probability of the true class.
        auc: ``{"saliency", "random"}`` area under the accuracy curves (trapezoid rule; lower = faster fall).
        prob_auc: the same for ``prob``.
        method, fill, n: what was measured (saliency method name, fill mode, number of images).
    """

    fractions: np.ndarray
    accuracy: dict[str, np.ndarray]
    prob: dict[str, np.ndarray]
    auc: dict[str, float] = field(default_factory=dict)
    prob_auc: dict[str, float] = field(default_factory=dict)
    method: str = ""
    fill: str = "mean"
    n: int = 0

    def summary(self) -> str:
        """One line per curve with its AUC."""
        return "\n".join(f"{k:>8}: accuracy AUC {self.auc[k]:.3f}, true-class prob AUC {self.prob_auc[k]:.3f}"
                         f" ({self.method}, fill={self.fill}, n={self.n})" for k in self.accuracy)


def _fill_values(images: np.ndarray, fill: str) -> np.ndarray:
    x = images.astype(np.float32)
    if fill == "mean":
        return np.broadcast_to(x.mean(axis=(1, 2), keepdims=True), x.shape).copy()
    if fill == "blur":
        return np.stack([cv2.GaussianBlur(im, (0, 0), sigmaX=5.0, borderType=cv2.BORDER_REFLECT) for im in x])
    raise ValueError(f"fill={fill!r}: choose 'mean' or 'blur'")


def delete_pixels(images: np.ndarray, order: np.ndarray, fraction: float, fill_values: np.ndarray) -> np.ndarray:
    """Replace the first ``round(fraction * H * W)`` pixels of each image's ``order`` by ``fill_values``.

    Args:
        images: ``uint8 [B, H, W]``; order: ``int [B, H*W]`` flat pixel indices, most important first;
        fraction: in ``[0, 1]``; fill_values: ``float [B, H, W]`` replacement pixels.

    Returns:
        ``uint8 [B, H, W]``.
    """
    b, h, w = images.shape
    k = int(round(float(fraction) * h * w))
    out = images.reshape(b, -1).astype(np.float32).copy()
    if k > 0:
        rows = np.arange(b)[:, None]
        out[rows, order[:, :k]] = fill_values.reshape(b, -1)[rows, order[:, :k]]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(b, h, w)


def _scores(model, images: np.ndarray, labels: np.ndarray, batch_size: int) -> tuple[float, float]:
    correct, prob, start = 0.0, 0.0, 0
    for logits in batched_logits(model, images, batch_size=batch_size):
        p = torch.softmax(logits[0].float(), 1).cpu().numpy()
        y = labels[start:start + len(p)]
        start += len(p)
        correct += float((p.argmax(1) == y).sum())
        prob += float(p[np.arange(len(y)), y].sum())
    return correct / len(images), prob / len(images)


def deletion_curve(model, images, labels, *, saliency: str | np.ndarray | Callable = "gradcam",
                   steps: int = 11, fill: str = "mean", batch_size: int = 128, seed: int = 0) -> DeletionResult:
    """Accuracy as the most salient pixels are removed, against removing random pixels.

    Args:
        model: a fer_lib classifier (mode restored afterwards).
        images: ``uint8 [N, 48, 48]`` faces; labels: ``int [N]`` true classes.
        saliency: a CAM method name (``"gradcam"``, ``"gradcam++"``, ``"eigencam"``; maps for the *true* class
            except EigenCAM, which has none), precomputed maps ``[N, 48, 48]``, or ``fn(images) -> [N, 48, 48]``.
        steps: number of fractions, evenly from 0 to 1 inclusive (11 = every 10%).
        fill: ``"mean"`` or ``"blur"`` (see the module docstring).
        batch_size: images per forward pass; seed: the random order's seed.

    Returns:
        :class:`DeletionResult` with both curves and their AUCs.
    """
    faces = to_uint8_faces(images)
    y = np.asarray(labels.cpu() if torch.is_tensor(labels) else labels).reshape(-1).astype(np.int64)
    if len(faces) != len(y) or len(y) == 0:
        raise ValueError(f"deletion_curve: {len(faces)} images and {len(y)} labels; need the same, non-zero count")
    if steps < 2:
        raise ValueError(f"steps={steps}: need at least 2 fractions (0 and 1)")
    name = saliency if isinstance(saliency, str) else getattr(saliency, "__name__", "given maps")
    if isinstance(saliency, str):
        method = resolve_method(saliency)
        with FERCam(model, method=method) as cam:
            maps = cam(faces, targets=None if method == "eigencam" else y.tolist())
    elif callable(saliency):
        maps = np.asarray(saliency(faces))
    else:
        maps = np.asarray(saliency)
    if maps.shape != faces.shape:
        raise ValueError(f"saliency maps have shape {maps.shape}; expected {faces.shape} (one 48x48 map per image)")
    b, h, w = faces.shape
    rng = np.random.default_rng(seed)
    # Stable descending order; a tiny random jitter breaks the many ties of maps upsampled from 3x3 or 6x6 grids.
    jitter = rng.uniform(0, 1e-6, size=(b, h * w))
    orders = {"saliency": np.argsort(-(maps.reshape(b, -1).astype(np.float64) + jitter), axis=1, kind="stable"),
              "random": np.argsort(rng.random((b, h * w)), axis=1)}
    fill_values = _fill_values(faces, fill)
    fractions = np.linspace(0.0, 1.0, steps)
    acc = {k: np.zeros(steps) for k in orders}
    prob = {k: np.zeros(steps) for k in orders}
    with eval_mode(model):
        for key, order in orders.items():
            for i, f in enumerate(fractions):
                acc[key][i], prob[key][i] = _scores(model, delete_pixels(faces, order, f, fill_values), y, batch_size)
    trapz = getattr(np, "trapezoid", None) or np.trapz
    return DeletionResult(fractions, acc, prob, auc={k: float(trapz(v, fractions)) for k, v in acc.items()},
                          prob_auc={k: float(trapz(v, fractions)) for k, v in prob.items()},
                          method=str(name), fill=fill, n=len(y))


def plot_deletion(result: DeletionResult, *, chance: float | None = 1 / 7) -> Figure:
    """Accuracy and true-class probability against the fraction removed, saliency vs random order."""
    fig = Figure(figsize=(8.5, 3.3), layout="constrained")
    for ax, curves, aucs, ylabel in zip(fig.subplots(1, 2), (result.accuracy, result.prob),
                                        (result.auc, result.prob_auc), ("accuracy", "mean true-class probability")):
        for key, style in (("saliency", "-o"), ("random", "--s")):
            ax.plot(result.fractions * 100, curves[key], style, ms=3,
                    label=f"{result.method if key == 'saliency' else 'random'} order (AUC {aucs[key]:.3f})")
        if chance is not None and ylabel == "accuracy":
            ax.axhline(chance, color="gray", lw=0.8, ls=":", label="chance (1/7)")
        ax.set_xlabel("pixels removed (%)")
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
    fig.suptitle(f"Deletion curves on {result.n} faces (fill={result.fill}; lower AUC = more faithful map)",
                 fontsize=10)
    return fig
