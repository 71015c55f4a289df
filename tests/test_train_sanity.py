"""The training-loop sanity tools (``fer_lib/train/sanity.py``): overfitting one batch really drives the loss down
(and a learning rate of almost 0 does not), the learning-rate range test steps its rate geometrically, stops on
divergence, suggests a rate inside its range and restores the weights bit for bit (also after an error), and bad
arguments are refused with a ValueError naming them."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fer_lib.data import TensorBatches, make_synthetic_faces, preprocess
from fer_lib.train import TrainConfig
from fer_lib.train.sanity import lr_range_test, overfit_one_batch


def small_cnn() -> nn.Module:
    """Two strided convolutions with BatchNorm and a linear layer on the 12x12 map (~17k weights): enough to
    memorise a handful of faces, and a few milliseconds per step on one CPU thread."""
    return nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Flatten(), nn.Linear(16 * 12 * 12, 7))


@pytest.fixture(scope="module")
def faces():
    return make_synthetic_faces(64, seed=3)  # uint8 [64, 48, 48], int64 [64], every class present


def same_bytes(a: dict, b: dict) -> bool:
    """Two state dicts hold the same tensors, byte for byte (dtype, shape and every bit)."""
    def raw(t):
        return t.detach().contiguous().reshape(-1).view(torch.uint8)

    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and torch.equal(raw(a[k]), raw(b[k])) for k in a)


def snapshot(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# -- overfit one batch --------------------------------------------------------------------------------------------

def test_overfit_one_batch_memorises_a_small_batch(faces):
    images, labels = faces[0][:14], faces[1][:14]
    torch.manual_seed(0)
    model = small_cnn().eval()
    losses = overfit_one_batch(model, images, labels, steps=80, lr=3e-3)
    assert len(losses) == 80 and all(math.isfinite(v) for v in losses)
    assert losses[0] > 1.0, f"an untrained model starts near ln 7 = 1.95, got {losses[0]:.3f}"
    assert losses[-1] < 0.2 * losses[0], f"the loss fell only from {losses[0]:.3f} to {losses[-1]:.3f}"
    assert not model.training, "the model's eval mode is restored"
    with torch.no_grad():  # memorised: the trained model (train mode: the batch's own statistics) names the faces
        pred = model.train()(preprocess(images)).argmax(1)
    assert (pred == labels).float().mean() >= 0.9


def test_overfit_one_batch_with_almost_no_learning_rate_does_not_learn(faces):
    """The control: the same batch and steps at lr 1e-8 leave the loss where it started, so the bound above
    measures learning, not something the loop does anyway."""
    torch.manual_seed(0)
    losses = overfit_one_batch(small_cnn(), faces[0][:14], faces[1][:14], steps=80, lr=1e-8)
    assert losses[-1] > 0.9 * losses[0]


# -- learning-rate range test -------------------------------------------------------------------------------------

def test_lr_range_test_restores_the_weights_and_steps_the_rate_geometrically(faces):
    torch.manual_seed(0)
    model = small_cnn().eval()
    before = snapshot(model)
    batches = TensorBatches(faces[0], faces[1], 16, shuffle=True, drop_last=True, seed=0)  # 4 batches, cycled
    out = lr_range_test(model, batches, start_lr=1e-5, end_lr=1e-1, steps=30, cfg=TrainConfig(augment=False))
    assert same_bytes(before, model.state_dict()), "the initial weights (and BatchNorm buffers) are put back"
    assert not model.training
    lrs = out["lrs"]
    assert len(lrs) == len(out["losses"]) == len(out["raw_losses"]) >= 2
    assert lrs[0] == pytest.approx(1e-5, rel=1e-12)
    ratio = (1e-1 / 1e-5) ** (1 / 29)
    assert all(b / a == pytest.approx(ratio, rel=1e-9) for a, b in zip(lrs, lrs[1:]))
    if not out["stopped_early"]:
        assert len(lrs) == 30 and lrs[-1] == pytest.approx(1e-1, rel=1e-9)
    assert len(set(out["raw_losses"])) > 1, "the model was trained during the test"
    for key in ("suggested_lr", "lr_min", "lr_steepest"):  # (the last rate may round a hair above 0.1)
        assert 1e-5 <= out[key] <= 1e-1 * (1 + 1e-9), (key, out[key])
    assert out["lr_min"] in lrs and out["lr_steepest"] in lrs
    assert out["suggested_lr"] == pytest.approx(max(out["lr_min"] / 10, 1e-5))


def test_lr_range_test_stops_early_when_the_loss_diverges(faces):
    torch.manual_seed(0)
    model = small_cnn()
    before = snapshot(model)
    out = lr_range_test(model, (faces[0][:32], faces[1][:32]), start_lr=1e-4, end_lr=1e4, steps=60,
                        cfg=TrainConfig(augment=False))  # one (images, labels) pair, used at every step
    assert out["stopped_early"] and len(out["lrs"]) < 60, out["stop_reason"]
    assert "diverged" in out["stop_reason"] or "not finite" in out["stop_reason"]
    assert 1e-4 <= out["suggested_lr"] <= 1e4
    if "diverged" in out["stop_reason"]:
        assert out["losses"][-1] > 4 * min(out["losses"]) and out["lr_min"] < out["lrs"][-1]
    assert same_bytes(before, model.state_dict()) and model.training


def test_lr_range_test_restores_the_weights_after_an_error(faces):
    def three_then_fail():
        for i in range(3):
            yield faces[0][16 * i:16 * (i + 1)], faces[1][16 * i:16 * (i + 1)]
        raise RuntimeError("the loader broke")

    model = small_cnn()
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="the loader broke"):
        lr_range_test(model, three_then_fail(), steps=10, cfg=TrainConfig(augment=False))
    assert same_bytes(before, model.state_dict())


def test_lr_range_test_runs_the_recipes_augmentation_and_mixing(faces):
    """The gpu preset's step (augmentation, mixup/CutMix soft targets, label smoothing) runs through the test."""
    cfg = TrainConfig(mixup_alpha=0.2, cutmix_alpha=1.0, mix_prob=1.0)
    out = lr_range_test(small_cnn(), TensorBatches(faces[0], faces[1], 16, shuffle=True), start_lr=1e-6,
                        end_lr=1e-3, steps=8, cfg=cfg)  # 4 batches, then the same again; far below divergence
    assert len(out["lrs"]) == 8 and all(math.isfinite(v) for v in out["raw_losses"])


# -- bad arguments ------------------------------------------------------------------------------------------------

def test_bad_arguments_are_refused_naming_them(faces):
    images, labels = faces[0][:8], faces[1][:8]
    model = small_cnn()
    bad_overfit = [
        (dict(steps=0), "steps"), (dict(steps=2.5), "steps"), (dict(lr=0.0), "lr"), (dict(lr=float("nan")), "lr"),
        (dict(cfg={"lr": 1e-3}), "cfg"),
    ]
    for kwargs, name in bad_overfit:
        with pytest.raises(ValueError, match=name):
            overfit_one_batch(model, images, labels, **kwargs)
    with pytest.raises(ValueError, match="images"):
        overfit_one_batch(model, images.float(), labels)
    with pytest.raises(ValueError, match="labels"):
        overfit_one_batch(model, images, labels[:5])
    with pytest.raises(ValueError, match="labels"):
        overfit_one_batch(model, images, torch.full((8,), 7))
    with pytest.raises(ValueError, match="model"):
        overfit_one_batch("resnet", images, labels)
    pair = (images, labels)
    bad_range = [
        (dict(steps=1), "steps"), (dict(start_lr=-1.0), "start_lr"), (dict(end_lr=float("inf")), "end_lr"),
        (dict(start_lr=1e-2, end_lr=1e-3), "start_lr"), (dict(smoothing=1.0), "smoothing"),
        (dict(diverge_factor=1.0), "diverge_factor"),
    ]
    for kwargs, name in bad_range:
        with pytest.raises(ValueError, match=name):
            lr_range_test(model, pair, **kwargs)
    with pytest.raises(ValueError, match="batches"):
        lr_range_test(model, [], steps=5)
    with pytest.raises(ValueError, match="batches"):
        lr_range_test(model, 42, steps=5)
    with pytest.raises(ValueError, match="labels"):
        lr_range_test(model, [(images, labels[:3])], steps=5)
