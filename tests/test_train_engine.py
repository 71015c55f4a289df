"""The training loop: overfitting, exact resume, NaN guard, time budget, class balance, mixing, plots."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from torch import nn

from fer_lib.data import FERData, FERSplit, load_synthetic
from fer_lib.models import ModelOutput
from fer_lib.train import TrainConfig, load_checkpoint, plot_history, train


class TinyNet(nn.Module):
    """A 2-conv CNN with an auxiliary head and dropout (exercises aux loss and RNG-dependent layers)."""

    model_name = "tiny_test_net"

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1),
        )
        self.head, self.aux = nn.Linear(32, 7), nn.Linear(32, 7)

    def forward(self, x):
        z = self.features(x)
        return ModelOutput(self.head(z), (self.aux(z),)) if self.training else self.head(z)


def tiny_cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(name="t", out_dir=str(tmp_path), epochs=3, batch_size=32, lr=3e-3, ema_decay=0.9, device="cpu",
                warmup_epochs=0.5)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def data():
    return load_synthetic(n_train=256, n_val=96)


def test_overfits_a_tiny_batch(tmp_path):
    images, labels = load_synthetic(n_train=32, n_val=7).splits["Training"].images, None
    labels = torch.arange(32) % 7
    split = FERSplit("Training", images, labels, [str(i) for i in range(32)])
    same = FERData({"Training": split, "PublicTest": FERSplit("PublicTest", images, labels, split.ids)},
                   form="synthetic", synthetic=True, source="32 faces with arbitrary labels")
    cfg = tiny_cfg(tmp_path, epochs=60, lr=1e-2, augment=False, ema=False, label_smoothing=0.0, aux_weight=0.0,
                   weight_decay=0.0, warmup_epochs=0.0)
    torch.manual_seed(0)
    res = train(cfg, same, progress=False, model=nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 64), nn.ReLU(),
                                                               nn.Linear(64, 7)))
    losses = [h["train_loss"] for h in res.history]
    assert losses[-1] < 0.1 * losses[0]
    assert res.history[-1]["val_acc"] == 1.0  # labels are arbitrary: only memorising gets 100%


def test_resume_repeats_an_uninterrupted_run_exactly(tmp_path, data):
    cfg = tiny_cfg(tmp_path, mixup_alpha=0.2, cutmix_alpha=1.0, mix_prob=0.5, class_balance="loss")
    torch.manual_seed(1)
    full = train(cfg.replace(name="full"), data, progress=False, model=TinyNet())

    class Stop(Exception):
        pass

    def stop_after_two(epoch, row):
        if epoch == 1:
            raise Stop

    torch.manual_seed(1)  # the same initial weights
    with pytest.raises(Stop):
        train(cfg.replace(name="cut"), data, progress=False, model=TinyNet(), on_epoch_end=stop_after_two)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 2
    torch.manual_seed(123)  # resume must not depend on the global RNG at the time of the call
    resumed = train(cfg.replace(name="cut"), data, progress=False, model=TinyNet(), resume=tmp_path / "cut" / "last.pt")
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "last.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    keys = ("train_loss", "train_acc", "val_loss", "val_acc", "lr")
    assert [[h[k] for k in keys] for h in full.history] == [[h[k] for k in keys] for h in resumed.history]


def test_fp16_with_grad_scaler_trains_checkpoints_and_resumes_exactly(tmp_path, data, monkeypatch):
    """CUDA's fp16 path (GPUs without bf16: T4, V100): fp16 autocast plus a GradScaler. No GPU here, so the same loop
    code runs on the CPU, where torch also has fp16 autocast and a GradScaler; only the device differs."""
    from fer_lib.train import setup as S

    monkeypatch.setattr(S, "precision_for", lambda amp, device: S.Precision(torch.float16, device.type))
    cfg = tiny_cfg(tmp_path, epochs=3)
    torch.manual_seed(1)
    full = train(cfg.replace(name="full"), data, progress=False, model=TinyNet())
    scaler = load_checkpoint(tmp_path / "full" / "last.pt")["scaler"]
    assert scaler is not None and scaler["scale"] > 0 and scaler["_growth_tracker"] >= 0  # its state is saved
    assert all(torch.isfinite(v).all() for v in full.model.state_dict().values() if v.is_floating_point())
    assert full.history[-1]["train_loss"] < full.history[0]["train_loss"]  # it learns through the scaler

    class Stop(Exception):
        pass

    def stop_after_one(epoch, row):
        if epoch == 0:
            raise Stop

    torch.manual_seed(1)
    with pytest.raises(Stop):
        train(cfg.replace(name="cut"), data, progress=False, model=TinyNet(), on_epoch_end=stop_after_one)
    resumed = train(cfg.replace(name="cut"), data, progress=False, model=TinyNet(), resume=tmp_path / "cut" / "last.pt")
    # the scale and its growth counter continue from the checkpoint (a fresh scaler would restart at 65536, count 0)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["scaler"] == scaler
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)


def test_resume_refuses_a_different_recipe_or_data(tmp_path, data):
    cfg = tiny_cfg(tmp_path, epochs=1)
    res = train(cfg, data, progress=False, model=TinyNet())
    with pytest.raises(ValueError, match=r"recipe differs in \{'lr'"):
        train(cfg.replace(lr=0.1), data, progress=False, model=TinyNet(), resume=res.last_path)
    other = load_synthetic(n_train=256, n_val=96, seed=5)
    with pytest.raises(ValueError, match="trained on data"):
        train(cfg, other, progress=False, model=TinyNet(), resume=res.last_path)


class NaNAfter(TinyNet):
    """Returns NaN logits from the ``n``-th training forward pass on."""

    def __init__(self, n):
        super().__init__()
        self.n, self.calls = n, 0

    def forward(self, x):
        out = super().forward(x)
        if self.training:
            self.calls += 1
            if self.calls >= self.n:
                return ModelOutput(out.logits * float("nan"), out.aux_logits)
        return out


def test_nan_loss_stops_with_a_clear_error_and_no_nan_checkpoint(tmp_path, data):
    cfg = tiny_cfg(tmp_path, epochs=3)  # 8 steps per epoch: the NaN comes at epoch 2, step 3
    with pytest.raises(FloatingPointError, match=r"non-finite training loss \(nan\) at epoch 2, step 3"):
        train(cfg, data, progress=False, model=NaNAfter(11))
    ck = load_checkpoint(tmp_path / "t" / "last.pt")
    assert ck["epoch"] == 1
    for state in (ck["model"], ck["ema"]["module"]):
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_time_budget_stops_cleanly_and_says_so(tmp_path, data, capsys):
    cfg = tiny_cfg(tmp_path, epochs=50, max_minutes=0.5 / 60)  # half a second
    res = train(cfg, data, progress=False, model=TinyNet())
    assert res.stop_reason is not None and "time budget" in res.stop_reason
    assert 1 <= len(res.history) < 50
    assert load_checkpoint(res.last_path)["epoch"] == len(res.history)
    assert "note: time budget" in capsys.readouterr().out


def test_sampler_balance_progress_bars_history_and_plot(tmp_path, data, capsys):
    cfg = tiny_cfg(tmp_path, epochs=2, class_balance="sampler", class_balance_power=1.0, optimizer="sgd", lr=0.05)
    res = train(cfg, data, progress=True, model=TinyNet())
    err = capsys.readouterr()
    assert "epoch 2/2" in err.out + err.err  # the tqdm bars and the per-epoch line
    assert [h["epoch"] for h in res.history] == [1, 2]
    assert json.loads((tmp_path / "t" / "history.json").read_text()) == res.history
    for h in res.history:
        assert set(h) >= {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_sec"}
    import matplotlib.pyplot as plt

    open_before = len(plt.get_fignums())
    fig = plot_history(res.history)
    assert len(fig.axes) == 3 and len(fig.axes[0].lines) == 2
    assert len(plt.get_fignums()) == open_before  # pyplot-free: a notebook draws it once, nothing leaks
    with pytest.raises(ValueError, match="empty"):
        plot_history([])


def test_fit_budget_ends_the_cosine_schedule_with_the_budget(tmp_path, data):
    budget_min = 4.0 / 60
    cfg = tiny_cfg(tmp_path, epochs=1, warmup_epochs=1.0, max_minutes=budget_min, fit_budget=True, min_lr_ratio=0.01)
    res = train(cfg, data, progress=False, model=TinyNet())
    assert res.stop_reason is None, res.stop_reason  # the fitted plan ran to its end inside the budget
    assert len(res.history) >= 2  # epochs=1 was only the first epoch's plan
    sched = load_checkpoint(res.last_path)["scheduler"]
    assert sched["step_count"] == sched["total_steps"] > 8  # 8 steps per epoch here
    assert res.history[-1]["lr"] <= cfg.lr * 0.02  # annealed to (almost) lr * min_lr_ratio, not cut off high
    assert sum(h["seconds"] for h in res.history) < budget_min * 60
    again = train(cfg, data, progress=False, model=TinyNet(), resume=res.last_path)  # the plan survives resume
    assert len(again.history) == len(res.history)
    with pytest.raises(ValueError, match="fit_budget needs max_minutes"):
        tiny_cfg(tmp_path, fit_budget=True)


@pytest.mark.skipif(not shutil.which("g++") and not shutil.which("c++"), reason="inductor needs a C++ compiler on a CPU")
def test_torch_compile_trains_like_eager_and_checkpoints_plain_weights(tmp_path, data):
    """``compile=True`` (inductor; on a CPU it builds C++ kernels) learns the same thing as eager mode, and its
    checkpoints hold the plain module's keys (no ``_orig_mod.`` prefix), so they load anywhere without compiling."""
    import torch._inductor.config as inductor_config

    cfg = tiny_cfg(tmp_path, epochs=2, ema=False)
    torch.manual_seed(1)
    eager = train(cfg.replace(name="eager"), data, progress=False, model=TinyNet())
    torch.manual_seed(1)
    # the same dropout masks as eager mode; inductor's own patch() restores its config afterwards (monkeypatch's
    # setattr/undo on the config module left it without the option, and a later torch.export in the same process
    # failed with "torch._inductor.config.fallback_random does not exist")
    with inductor_config.patch(fallback_random=True):
        compiled = train(cfg.replace(name="compiled", compile=True), data, progress=False, model=TinyNet())
    for key in ("train_loss", "val_loss"):  # fused kernels round differently, so close, not bitwise equal
        assert [h[key] for h in compiled.history] == pytest.approx([h[key] for h in eager.history], rel=1e-3), key
    state = load_checkpoint(tmp_path / "compiled" / "last.pt")["model"]
    assert list(state) == list(TinyNet().state_dict())
    net = TinyNet()
    net.load_state_dict(state)  # strict
    # the weights themselves may differ more (Adam normalises the noise-sized gradients of the conv biases that
    # batch norm cancels), so compare what the checkpoint predicts with what the eager run predicts
    x = data.splits["PublicTest"].images[:64].unsqueeze(1).float() / 255
    with torch.no_grad():
        want, got, fresh = eager.model.eval()(x), net.eval()(x), TinyNet().eval()(x)
    assert (got - want).norm() < 0.05 * want.norm()  # measured 0.018
    assert (fresh - want).norm() > 0.5 * want.norm()  # the control, an untrained net: measured 0.79
