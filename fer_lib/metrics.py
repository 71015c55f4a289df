"""Classification and calibration metrics, and the two plots that show them.

* Accuracy, macro-F1 and per-class precision / recall / F1 / support come from scikit-learn
  (``precision_recall_fscore_support``, ``confusion_matrix``), always over all 7 labels so that a class missing
  from a small sample still has a row (with ``zero_division=0``).
* Expected calibration error (Naeini et al. 2015; Guo et al. 2017, https://arxiv.org/abs/1706.04599): split the
  confidences ``max_k p_k`` into ``n_bins`` equal-width bins ``(i/n, (i+1)/n]`` (the first bin also takes 0), and

      ECE = sum_b (|B_b| / N) * |accuracy(B_b) - mean confidence(B_b)|

  A perfectly calibrated model (70% confident -> right 70% of the time) has ECE 0.
"""

from __future__ import annotations

import numpy as np
import torch

from fer_lib import EMOTIONS


def _np(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _check(probs: np.ndarray, labels: np.ndarray) -> None:
    if probs.ndim != 2 or labels.ndim != 1 or len(probs) != len(labels):
        raise ValueError(f"expected probs [N, K] and labels [N], got {probs.shape} and {labels.shape}")
    if len(labels) == 0:
        raise ValueError("no samples: probs and labels are empty")


def reliability_bins(probs, labels, n_bins: int = 15) -> dict[str, list]:
    """Per-bin statistics of the reliability diagram.

    Args:
        probs: ``[N, K]`` class probabilities (rows sum to 1).
        labels: ``[N]`` true labels.
        n_bins: equal-width confidence bins on ``[0, 1]``.

    Returns:
        ``{"lower", "upper", "confidence", "accuracy", "count"}``: lists of length ``n_bins``; ``confidence`` and
        ``accuracy`` are the bin means (``None`` for an empty bin).
    """
    probs, labels = _np(probs).astype(np.float64), _np(labels).astype(np.int64)
    _check(probs, labels)
    conf = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bin i holds (edges[i], edges[i+1]]; confidence 0 goes to bin 0
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    out: dict[str, list] = {"lower": edges[:-1].tolist(), "upper": edges[1:].tolist(),
                            "confidence": [], "accuracy": [], "count": []}
    for b in range(n_bins):
        m = idx == b
        n = int(m.sum())
        out["count"].append(n)
        out["confidence"].append(float(conf[m].mean()) if n else None)
        out["accuracy"].append(float(correct[m].mean()) if n else None)
    return out


def expected_calibration_error(probs, labels, n_bins: int = 15) -> float:
    """ECE with ``n_bins`` equal-width bins (see the module docstring); in ``[0, 1]``."""
    bins = reliability_bins(probs, labels, n_bins)
    total = sum(bins["count"])
    return float(sum(
        n / total * abs(a - c)
        for n, a, c in zip(bins["count"], bins["accuracy"], bins["confidence"]) if n
    ))


def classification_metrics(labels, preds, class_names=EMOTIONS) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix (counts).

    Args:
        labels: ``[N]`` true labels in ``0..K-1``.
        preds: ``[N]`` predicted labels.
        class_names: names of the ``K`` classes (rows/columns of the confusion matrix, in label order).

    Returns:
        ``{"accuracy", "macro_f1", "per_class": {name: {precision, recall, f1, support}}, "confusion": [[int]]}``;
        ``confusion[i][j]`` counts true class ``i`` predicted as ``j``.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    y, p = _np(labels).astype(np.int64), _np(preds).astype(np.int64)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"labels and preds must both be [N], got {y.shape} and {p.shape}")
    ks = list(range(len(class_names)))
    prec, rec, f1, sup = precision_recall_fscore_support(y, p, labels=ks, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y, p)),
        "macro_f1": float(f1_score(y, p, labels=ks, average="macro", zero_division=0)),
        "per_class": {
            name: {"precision": float(prec[k]), "recall": float(rec[k]), "f1": float(f1[k]), "support": int(sup[k])}
            for k, name in enumerate(class_names)
        },
        "confusion": confusion_matrix(y, p, labels=ks).tolist(),
    }


def normalize_confusion(confusion) -> np.ndarray:
    """Row-normalised confusion matrix: row ``i`` is the distribution of predictions for true class ``i``
    (its diagonal is the per-class recall); rows without samples stay 0."""
    c = np.asarray(confusion, dtype=np.float64)
    rows = c.sum(1, keepdims=True)
    return np.divide(c, rows, out=np.zeros_like(c), where=rows > 0)


def __getattr__(name: str):
    """The plots moved to :mod:`fer_lib.plots`; ``fer_lib.metrics.plot_confusion`` / ``plot_reliability`` still work."""
    if name in ("plot_confusion", "plot_reliability"):
        from fer_lib import plots

        return getattr(plots, name)
    raise AttributeError(f"module 'fer_lib.metrics' has no attribute {name!r}")
