"""Classification and calibration metrics, and the two plots that show them.

* Accuracy, macro-F1 and per-class precision / recall / F1 / support come from scikit-learn
  (``precision_recall_fscore_support``, ``confusion_matrix``), always over all 7 labels so that a class missing
  from a small sample still has a row (with ``zero_division=0``).
* Expected calibration error (Naeini et al. 2015; Guo et al. 2017, https://arxiv.org/abs/1706.04599): split the
  confidences ``max_k p_k`` into ``n_bins`` equal-width bins ``(i/n, (i+1)/n]`` (the first bin also takes 0), and

      ECE = sum_b (|B_b| / N) * |accuracy(B_b) - mean confidence(B_b)|

  A perfectly calibrated model (70% confident -> right 70% of the time) has ECE 0.
* Comparing two models on the *same* faces (:func:`compare_models`): a paired bootstrap confidence interval of
  each difference (resample the faces, keep each face's pair of predictions together; Efron & Tibshirani 1993)
  and McNemar's exact test on the faces where exactly one model is right (McNemar 1947; Dietterich 1998,
  https://doi.org/10.1162/089976698300017197, recommends it for comparing two classifiers on one test set).
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
    # scikit-learn is heavy: imported on first use
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


def top_confusions(confusion, k: int = 3, class_names=EMOTIONS) -> list[tuple[str, str, float]]:
    """The ``k`` largest off-diagonal cells of the row-normalised confusion matrix: ``(true, predicted, rate)``,
    where ``rate`` is the share of the true class predicted as the other (largest first)."""
    rates = normalize_confusion(confusion)
    np.fill_diagonal(rates, -1.0)
    order = np.argsort(-rates, axis=None)[:k]
    return [(class_names[i], class_names[j], float(rates[i, j])) for i, j in zip(*np.unravel_index(order, rates.shape))]


def _scores(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """``[accuracy, macro-F1, F1 of class 0 .. num_classes-1]`` of one set of predictions (float64)."""
    cm = np.bincount(labels * num_classes + preds, minlength=num_classes * num_classes).reshape(num_classes, -1)
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(0) + cm.sum(1)  # predicted + true = 2 TP + FP + FN
    f1 = np.divide(2 * tp, denom, out=np.zeros(num_classes), where=denom > 0)
    return np.concatenate([[tp.sum() / len(labels), f1.mean()], f1])


def mcnemar_test(labels, pred_a, pred_b) -> dict:
    """McNemar's exact test: do two classifiers err on the same faces at different rates?

    Only the discordant faces count: ``b`` (A right, B wrong) and ``c`` (A wrong, B right). Under the null
    hypothesis that both models are equally accurate, ``b ~ Binomial(b + c, 1/2)``; the two-sided exact p-value is
    ``min(1, 2 * P(X <= min(b, c)))``.

    Returns:
        ``{"a_only": b, "b_only": c, "p_value": p}``.
    """
    from scipy.stats import binom  # heavy: imported only for McNemar's test

    y, a, b_ = _np(labels).astype(np.int64), _np(pred_a).astype(np.int64), _np(pred_b).astype(np.int64)
    if not (len(y) == len(a) == len(b_)) or len(y) == 0:
        raise ValueError(f"mcnemar_test: labels and both predictions need the same non-zero length, got "
                         f"{len(y)}, {len(a)}, {len(b_)}")
    ra, rb = a == y, b_ == y
    b, c = int((ra & ~rb).sum()), int((~ra & rb).sum())
    p = 1.0 if b + c == 0 else min(1.0, 2.0 * float(binom.cdf(min(b, c), b + c, 0.5)))
    return {"a_only": b, "b_only": c, "p_value": p}


def compare_models(labels, pred_a, pred_b, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0,
                   class_names=EMOTIONS) -> dict:
    """Model B minus model A on the same faces: each difference with a paired bootstrap interval, and McNemar.

    Args:
        labels, pred_a, pred_b: ``[N]`` true labels and the two models' predicted classes on the same faces.
        n_boot: bootstrap resamples of the ``N`` faces (with replacement, pairs kept together).
        level: the interval's coverage (percentile interval).
        seed: the resampling seed (the same seed gives the same interval).

    Returns:
        ``{"rows": [{"metric", "a", "b", "diff", "low", "high"}, ...], "mcnemar": mcnemar_test(...), "n": N}``;
        rows are accuracy, macro-F1 and the F1 of each class.
    """
    y, a, b = _np(labels).astype(np.int64), _np(pred_a).astype(np.int64), _np(pred_b).astype(np.int64)
    if not (len(y) == len(a) == len(b)) or len(y) == 0:
        raise ValueError(f"compare_models: labels and both predictions need the same non-zero length, got "
                         f"{len(y)}, {len(a)}, {len(b)}")
    if not 0 < level < 1 or n_boot < 1:
        raise ValueError(f"compare_models: level must be in (0, 1) and n_boot >= 1, got {level}, {n_boot}")
    k = len(class_names)
    score_a, score_b = _scores(y, a, k), _scores(y, b, k)
    rng = np.random.default_rng(seed)
    diffs = np.empty((n_boot, k + 2))
    for i in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        diffs[i] = _scores(y[idx], b[idx], k) - _scores(y[idx], a[idx], k)
    low, high = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2], axis=0)
    names = ["accuracy", "macro_f1"] + [f"f1_{c}" for c in class_names]
    rows = [{"metric": n, "a": float(sa), "b": float(sb), "diff": float(sb - sa), "low": float(lo), "high": float(hi)}
            for n, sa, sb, lo, hi in zip(names, score_a, score_b, low, high)]
    return {"rows": rows, "mcnemar": mcnemar_test(y, a, b), "n": int(len(y)), "level": level, "n_boot": n_boot}
