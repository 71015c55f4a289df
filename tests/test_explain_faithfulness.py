"""Deletion curves: pixel removal against a hand loop, the curves' bookkeeping, and a case with a known answer.
(The curve of a trained model on synthetic faces: test_explain_trained.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fer_lib.explain import delete_pixels, deletion_curve, plot_deletion


def test_delete_pixels_matches_a_hand_loop():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 6, 6), dtype=np.uint8)
    order = np.stack([rng.permutation(36) for _ in range(3)])
    fill = rng.uniform(0, 255, (3, 6, 6)).astype(np.float32)
    for fraction in (0.0, 0.25, 0.5, 1.0):
        ref = images.copy()
        k = int(round(fraction * 36))
        for b in range(3):
            for idx in order[b, :k]:
                r, c = divmod(int(idx), 6)
                ref[b, r, c] = np.uint8(np.clip(np.rint(fill[b, r, c]), 0, 255))
        np.testing.assert_array_equal(delete_pixels(images, order, fraction, fill), ref)


class _CornerModel(nn.Module):
    """Class 1 when the top-left 8x8 corner is bright, else class 0: only those 64 pixels matter."""

    def forward(self, x):
        s = x[:, 0, :8, :8].mean((1, 2))
        return torch.stack([-s, s] + [torch.full_like(s, -1e3)] * 5, dim=1) * 10


def test_a_perfect_map_beats_random_order():
    n = 40
    images = np.full((n, 48, 48), 60, np.uint8)
    labels = np.zeros(n, np.int64)
    images[: n // 2, :8, :8] = 250  # half of them bright in the corner -> class 1
    labels[: n // 2] = 1
    perfect = np.zeros((n, 48, 48), np.float32)
    perfect[:, :8, :8] = 1.0
    res = deletion_curve(_CornerModel(), images, labels, saliency=perfect, steps=11, fill="mean")
    assert res.fractions[0] == 0 and res.fractions[-1] == 1 and len(res.fractions) == 11
    assert res.accuracy["saliency"][0] == 1.0 == res.accuracy["random"][0]
    # removing the corner first (about 3% of the pixels) already flips the bright half to class 0
    assert res.accuracy["saliency"][1] == pytest.approx(0.5)
    assert res.auc["saliency"] < res.auc["random"] - 0.2
    trapz = getattr(np, "trapezoid", None) or np.trapz
    assert res.auc["random"] == pytest.approx(float(trapz(res.accuracy["random"], res.fractions)))
    again = deletion_curve(_CornerModel(), images, labels, saliency=perfect, steps=11, fill="mean")
    np.testing.assert_array_equal(again.accuracy["random"], res.accuracy["random"])  # seeded
    fig = plot_deletion(res)
    assert len(fig.get_axes()) == 2 and "AUC" in fig.get_axes()[0].get_legend().get_texts()[0].get_text()
    assert "saliency" in res.summary() and "random" in res.summary()


def test_bad_arguments_are_named():
    model, images, labels = _CornerModel(), np.zeros((4, 48, 48), np.uint8), np.zeros(4, np.int64)
    with pytest.raises(ValueError, match="saliency maps have shape"):
        deletion_curve(model, images, labels, saliency=np.zeros((4, 6, 6)))
    with pytest.raises(ValueError, match="labels"):
        deletion_curve(model, images, labels[:3], saliency=np.zeros((4, 48, 48)))
    with pytest.raises(ValueError, match="fill"):
        deletion_curve(model, images, labels, saliency=np.zeros((4, 48, 48)), fill="zeros")
