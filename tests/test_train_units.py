"""Unit tests of the training building blocks: config/presets, schedule, EMA, class weights, precision."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from fer_lib.train import (
    PRESETS,
    ModelEMA,
    TrainConfig,
    WarmupCosineSchedule,
    preset_config,
    warmup_cosine_factor,
)
from fer_lib.train import setup as S


def test_presets_are_valid_and_round_trip():
    assert set(PRESETS) == {"demo", "cpu", "gpu", "ablation", "colab"}
    for name in PRESETS:
        cfg = preset_config(name)
        assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    cpu = preset_config("cpu")
    assert cpu.max_minutes is not None and cpu.max_minutes <= 60 and cpu.ema and cpu.label_smoothing == 0.1
    gpu = preset_config("gpu")
    assert gpu.mix_prob > 0 and gpu.batch_size == 256 and gpu.amp == "auto"


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="unknown preset 'fast'.*cpu"):
        preset_config("fast")
    with pytest.raises(ValueError, match="TrainConfig.optimizer='adam'"):
        TrainConfig(optimizer="adam")
    with pytest.raises(ValueError, match="TrainConfig.epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match=r"unknown TrainConfig fields \['bogus'\]"):
        TrainConfig.from_dict({"bogus": 1})


def test_recipe_diff_ignores_runtime_fields():
    a = TrainConfig(name="a", device="cpu", max_minutes=5)
    assert a.recipe_diff(TrainConfig(name="b", out_dir="elsewhere")) == {}
    assert a.recipe_diff(TrainConfig(lr=0.1)) == {"lr": (a.lr, 0.1)}


def test_warmup_cosine_matches_hand_formula():
    total, warm, r = 100, 10, 0.1
    # warmup: linear from 1/10 to 1
    assert warmup_cosine_factor(0, total, warm, r) == pytest.approx(0.1)
    assert warmup_cosine_factor(9, total, warm, r) == pytest.approx(1.0)
    # cosine: half way through the decay the factor is the mean of 1 and r
    assert warmup_cosine_factor(10, total, warm, r) == pytest.approx(1.0)
    assert warmup_cosine_factor(55, total, warm, r) == pytest.approx((1 + r) / 2)
    p = (80 - warm) / (total - warm)
    assert warmup_cosine_factor(80, total, warm, r) == pytest.approx(r + (1 - r) * 0.5 * (1 + math.cos(math.pi * p)))
    assert warmup_cosine_factor(100, total, warm, r) == pytest.approx(r)
    assert warmup_cosine_factor(500, total, warm, r) == pytest.approx(r)  # clamped


def test_schedule_sets_lr_per_group_and_resumes():
    p1, p2 = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p1], "lr": 1.0}, {"params": [p2], "lr": 0.5}])
    sched = WarmupCosineSchedule(opt, total_steps=20, warmup_steps=4, min_lr_ratio=0.0)
    lrs = [sched.step() for _ in range(7)]
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert opt.param_groups[1]["lr"] == pytest.approx(0.5 * warmup_cosine_factor(6, 20, 4, 0.0))
    state = sched.state_dict()
    opt2 = torch.optim.SGD([{"params": [p1], "lr": 1.0}, {"params": [p2], "lr": 0.5}])
    sched2 = WarmupCosineSchedule(opt2, total_steps=20, warmup_steps=4)
    sched2.load_state_dict(state)
    assert sched2.step() == pytest.approx(sched.step())
    with pytest.raises(ValueError, match="does not match this run"):
        WarmupCosineSchedule(opt2, total_steps=30, warmup_steps=4).load_state_dict(state)


def test_ema_matches_hand_computation():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = ModelEMA(model, decay=0.9, warmup=False)
    w0 = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].running_mean.fill_(2.0)
        model[1].num_batches_tracked.fill_(7)
    ema.update(model)
    torch.testing.assert_close(ema.module[0].weight, 0.9 * w0 + 0.1 * (w0 + 1.0))
    torch.testing.assert_close(ema.module[1].running_mean, torch.full((2,), 0.2))
    assert int(ema.module[1].num_batches_tracked) == 7  # integer buffers are copied
    assert not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())
    warm = ModelEMA(model, decay=0.999)
    assert warm.current_decay() == pytest.approx(1 / 10)  # (1 + 0) / (10 + 0)


def test_class_weights_and_balanced_sampler():
    labels = torch.tensor([0] * 80 + [1] * 20)
    w = S.class_weights(labels, power=1.0, num_classes=2)
    # full inverse frequency: both classes get the same total weight, and the mean weight per sample is 1
    assert (w[0] * 80).item() == pytest.approx((w[1] * 20).item())
    assert ((w[0] * 80 + w[1] * 20) / 100).item() == pytest.approx(1.0)
    assert S.class_weights(labels, power=0.0, num_classes=2).tolist() == pytest.approx([1.0, 1.0])
    w7 = S.class_weights(labels, power=1.0)
    assert w7[2:].eq(0).all()  # absent classes
    idx = S.balanced_indices(labels, power=1.0, seed=0)
    assert len(idx) == 100 and torch.equal(idx, S.balanced_indices(labels, power=1.0, seed=0))
    frac_rare = (labels[idx] == 1).float().mean().item()
    assert 0.35 < frac_rare < 0.65  # ~50% instead of 20%


def test_precision_policy(monkeypatch):
    monkeypatch.setattr(S, "cpu_has_native_bf16", lambda: True)  # the fallback without it: the test below
    cpu = torch.device("cpu")
    assert S.precision_for("auto", cpu).dtype is None
    assert S.precision_for("bf16", cpu).dtype == torch.bfloat16
    assert not S.precision_for("bf16", cpu).use_scaler
    with pytest.raises(ValueError, match="fp16.*CUDA"):
        S.precision_for("fp16", cpu)


@pytest.mark.parametrize("capability, dtype", [((7, 5), torch.float16), ((8, 0), torch.bfloat16)])
def test_bf16_on_a_gpu_without_native_bf16_falls_back_to_fp16(monkeypatch, capability, dtype):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    cuda = torch.device("cuda")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        policy = S.precision_for("bf16", cuda)
    assert policy.dtype == dtype and policy.use_scaler == (dtype == torch.float16)
    messages = [str(w.message) for w in caught]
    if dtype == torch.float16:
        assert len(messages) == 1 and "Tesla T4 (compute capability 7.5)" in messages[0] and "GradScaler" in messages[0]
    else:
        assert messages == []
    assert S.precision_for("auto", cuda).dtype == dtype  # auto picks the same without a warning


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_native_bf16_falls_back_to_fp32(monkeypatch, native):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert S.cpu_has_native_bf16() is native
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert S.precision_for("bf16", torch.device("cpu")).dtype == (torch.bfloat16 if native else None)
        S.precision_for("off", torch.device("cpu"))
    messages = [str(w.message) for w in caught]
    assert (messages == []) if native else (len(messages) == 1 and "fp32 instead" in messages[0])


def test_optimizer_groups_skip_decay_on_norms_and_biases():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    opt = S.build_optimizer(model, TrainConfig(weight_decay=0.1))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and [p.ndim for p in decay["params"]] == [4]
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 3
    sgd = S.build_optimizer(model, TrainConfig(optimizer="sgd"))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["nesterov"]


def test_replan_continues_the_cosine_from_its_phase():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = WarmupCosineSchedule(opt, total_steps=100, warmup_steps=10, min_lr_ratio=0.1)
    for _ in range(10):
        sched.step()
    sched.replan(60)  # at the end of warmup: the plain formula with the new end
    assert [sched.factor(s) for s in (10, 35, 60)] == pytest.approx(
        [warmup_cosine_factor(s, 60, 10, 0.1) for s in (10, 35, 60)])
    for _ in range(20):
        sched.step()
    sched.replan(60)  # the same end again: nothing changes
    assert [sched.factor(s) for s in range(30, 61)] == pytest.approx(
        [warmup_cosine_factor(s, 60, 10, 0.1) for s in range(30, 61)])
    f_now = sched.factor()
    sched.replan(50)  # behind schedule: shorten; the cosine goes on from phase 20/50 = 0.4 at step 30
    assert sched.factor() == pytest.approx(f_now)
    by_hand = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (0.4 + 0.6 * 0.5)))  # step 40: half of the rest
    assert sched.factor(40) == pytest.approx(by_hand) and sched.factor(50) == pytest.approx(0.1)
    lrs = [sched.step() for _ in range(20)]
    assert all(b <= a + 1e-12 for a, b in zip(lrs, lrs[1:]))  # monotone: no jump up
    state = sched.state_dict()
    other = WarmupCosineSchedule(torch.optim.SGD([p], lr=1.0), total_steps=100, warmup_steps=10, min_lr_ratio=0.1)
    with pytest.raises(ValueError, match="does not match this run"):
        other.load_state_dict(state)
    other.load_state_dict(state, strict=False)  # a fit_budget resume takes the checkpoint's plan
    assert other.total_steps == 50 and other.factor(40) == pytest.approx(by_hand)
    sched.replan(5)  # shorter than the steps already taken: ends now
    assert sched.total_steps == sched.step_count == 50


def test_replanning_every_epoch_to_the_same_end_keeps_the_cosine():
    """The factor-restart design failed this: re-planned every epoch it stayed near the peak until the last epochs."""
    plain = WarmupCosineSchedule(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0), 200, 20, 0.01)
    fitted = WarmupCosineSchedule(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0), 200, 20, 0.01)
    a, b = [], []
    for step in range(200):
        a.append(plain.step())
        b.append(fitted.step())
        if step % 10 == 9:
            fitted.replan(200)
    assert b == pytest.approx(a)
    assert b[110] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 90 / 180)))  # half way: ~0.5


def test_schedule_loads_a_factor_restart_checkpoint():
    sched = WarmupCosineSchedule(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0), 100, 10, 0.1)
    old = {"step_count": 40, "total_steps": 100, "warmup_steps": 10, "min_lr_ratio": 0.1, "start_step": 30,
           "start_factor": 0.55}  # written before start_phase existed
    sched.load_state_dict(old)
    assert sched.factor(30) == pytest.approx(0.55) and sched.factor(100) == pytest.approx(0.1)
    assert sched.start_phase == pytest.approx(0.5)  # 0.1 + 0.9 * 0.5 * (1 + cos(pi / 2)) = 0.55
