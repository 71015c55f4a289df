"""Synthetic cartoon faces: determinism, balance, masks, no single-pixel shortcut, and learnability by a small CNN."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn as nn

from fer_lib.data import SYNTHETIC_SOURCE, load_dataset, load_synthetic, make_synthetic_faces, preprocess


def test_deterministic_by_seed_balanced_and_typed():
    x, y, m = make_synthetic_faces(70, seed=5, return_masks=True)
    x2, y2 = make_synthetic_faces(70, seed=5)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = make_synthetic_faces(70, seed=6)
    assert not torch.equal(x, x3)
    assert x.dtype == torch.uint8 and x.shape == (70, 48, 48) and y.dtype == torch.int64
    assert m.dtype == torch.bool and m.shape == (70, 48, 48)
    assert torch.bincount(y, minlength=7).tolist() == [10] * 7
    assert x.float().std() > 20  # not blank
    assert make_synthetic_faces(0)[0].shape == (0, 48, 48)
    with pytest.raises(ValueError, match="non-negative"):
        make_synthetic_faces(-1)


def test_expressions_live_in_the_masks_and_no_single_pixel_separates_them():
    x, y, m = make_synthetic_faces(1400, seed=0, return_masks=True)
    v = x.flatten(1).float()
    class_means = torch.stack([v[y == c].mean(0) for c in range(7)])  # [7, 2304]
    # where the class means differ is where the masks (brows, eyes, mouth) are
    between_class = class_means.std(0)
    mask_freq = m.float().mean(0).flatten()
    assert torch.corrcoef(torch.stack([between_class, mask_freq]))[0, 1] > 0.5
    # every face has cue pixels above (brows/eyes) and below (mouth) its centre
    rows = torch.arange(48).view(1, 48, 1)
    assert (m & (rows < 24)).flatten(1).any(1).all() and (m & (rows > 28)).flatten(1).any(1).all()
    # nearest-class-mean on any single pixel stays far from separable (chance = 1/7 = 0.14)
    pred = (v[:, None, :] - class_means[None]).abs().argmin(1)  # [N, 2304]
    assert (pred == y[:, None]).float().mean(0).max() < 0.35


def test_load_synthetic_and_fallback_are_labelled(monkeypatch, tmp_path):
    data = load_synthetic(70, 14, seed=2)
    assert data.synthetic and data.form == "synthetic" and data.source == SYNTHETIC_SOURCE
    assert [len(s) for s in data.splits.values()] == [70, 14] and list(data.splits) == ["Training", "PublicTest"]
    assert not set(data["train"].ids) & set(data["val"].ids)
    assert "SYNTHETIC" in data.summary()
    monkeypatch.setattr("fer_lib.paths.find_fer2013", lambda explicit=None: None)
    with pytest.warns(UserWarning, match="SYNTHETIC"):
        fallback = load_dataset(quick=True)
    assert fallback.synthetic and len(fallback["train"]) == 2100
    with pytest.raises(ValueError, match="msambare/fer2013"):
        load_dataset(synthetic_fallback=False)


def test_generation_is_fast():
    t = time.perf_counter()
    make_synthetic_faces(2000, seed=0)
    assert time.perf_counter() - t < 10  # ~0.6 s on an idle 2-core CPU; generous for shared CI machines


@pytest.mark.slow
def test_small_cnn_learns_synthetic_faces_above_90_percent():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # faster than 2 on a shared 2-core machine for these tiny convolutions
    try:
        torch.manual_seed(0)
        xtr, ytr = make_synthetic_faces(3000, seed=0)
        xva, yva = make_synthetic_faces(1000, seed=1)
        xtr, xva = preprocess(xtr), preprocess(xva)

        def block(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(),
                                 nn.MaxPool2d(2))

        model = nn.Sequential(block(1, 16), block(16, 32), block(32, 64), block(64, 64),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 7))
        epochs, bs = 4, 64
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=epochs * -(-len(ytr) // bs))
        g = torch.Generator().manual_seed(0)
        for _ in range(epochs):
            model.train()
            perm = torch.randperm(len(ytr), generator=g)
            for i in range(0, len(ytr), bs):
                idx = perm[i:i + bs]
                loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        model.eval()
        with torch.no_grad():
            acc = (model(xva).argmax(1) == yva).float().mean().item()
        assert acc > 0.90, f"validation accuracy {acc:.3f}"
    finally:
        torch.set_num_threads(threads)
