"""Knowledge distillation in the trainer (issue 34): the loss against a hand computation, ``kd_weight 0`` leaves
training exactly as it was, the teacher stays frozen and byte-identical, resume keeps it, and bad flags are refused."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fer_lib.data import load_synthetic
from fer_lib.models import ModelOutput
from fer_lib.train import (
    CheckpointError,
    Teacher,
    TrainConfig,
    distillation_loss,
    load_checkpoint,
    save_checkpoint,
    train,
)
from fer_lib.train import run as train_run
from fer_lib.train import steps as train_steps
from fer_lib.train.steps import training_loss


class TinyNet(nn.Module):
    """A 2-conv student with an auxiliary head and dropout (the aux loss and the RNG-dependent path both run)."""

    model_name = "tiny_test_net"

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1),
        )
        self.head, self.aux = nn.Linear(16, 7), nn.Linear(16, 7)

    def forward(self, x):
        z = self.features(x)
        return ModelOutput(self.head(z), (self.aux(z),)) if self.training else self.head(z)


def tiny_cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(name="t", out_dir=str(tmp_path), epochs=2, batch_size=32, lr=3e-3, ema_decay=0.9, device="cpu",
                warmup_epochs=0.5)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def data():
    return load_synthetic(n_train=128, n_val=32)  # 4 steps of 32 per epoch


@pytest.fixture(scope="module")
def teacher_path(tmp_path_factory) -> Path:
    """A teacher checkpoint built here (an untrained ResNet18 with the stride-4 stem: cheap at 48 px, and any fixed
    network is a teacher as far as the mechanics go), loadable by ``fer_lib.inference.load_model``."""
    from fer_lib.models import create_model

    torch.manual_seed(7)
    model = create_model("baseline_resnet18", stem="default").eval()
    path = tmp_path_factory.mktemp("teacher") / "best.pt"
    return save_checkpoint({"model_name": model.model_name, "model_config": model.config.to_dict(),
                            "model": model.state_dict(), "ema": None}, path)


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- 1. the loss --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("T", [1.0, 4.0])
def test_distillation_loss_equals_the_hand_computation(T):
    torch.manual_seed(0)
    student, teacher = torch.randn(6, 7, requires_grad=True), 3 * torch.randn(6, 7)
    p = torch.softmax(teacher / T, dim=1)  # the teacher's softened probabilities
    hand = T**2 * (p * (torch.log_softmax(teacher / T, dim=1) - torch.log_softmax(student / T, dim=1))).sum(1).mean()
    loss = distillation_loss(student, teacher, T)
    torch.testing.assert_close(loss, hand)
    assert loss.ndim == 0 and loss.dtype == torch.float32 and loss > 0
    # Hinton et al.'s gradient: d/dz (T^2 KL) = T (softmax(z / T) - p), per image, averaged over the batch
    (grad,) = torch.autograd.grad(loss, student)
    torch.testing.assert_close(grad, T * (torch.softmax(student.detach() / T, dim=1) - p) / len(student))
    # zero when the student says what the teacher says; a shift of the logits changes no probability
    assert distillation_loss(teacher, teacher, T).abs() < 1e-6
    assert distillation_loss(teacher + 5.0, teacher, T).abs() < 1e-5
    # an ensemble hands over log probabilities: the same targets as its logits
    torch.testing.assert_close(distillation_loss(student, torch.log_softmax(teacher, dim=1), T), loss)


def test_distillation_loss_treats_the_teacher_as_a_constant_and_checks_shapes():
    student, teacher = torch.randn(4, 7, requires_grad=True), torch.randn(4, 7, requires_grad=True)
    distillation_loss(student, teacher, 2.0).backward()
    assert student.grad is not None and teacher.grad is None
    with pytest.raises(ValueError, match="same classes"):
        distillation_loss(torch.randn(4, 7), torch.randn(4, 8))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        distillation_loss(torch.randn(4, 7), torch.randn(4, 7), 0.0)


def _loss_before_distillation(output, target, cfg, weight):
    """``fer_lib.train.steps.training_loss`` as it was before distillation existed, verbatim."""
    from fer_lib.train.steps import logits_and_aux

    logits, aux = logits_and_aux(output)

    def ce(z):
        return F.cross_entropy(z.float(), target, weight=weight, label_smoothing=cfg.label_smoothing)

    loss = ce(logits)
    if aux and cfg.aux_weight > 0:
        loss = loss + cfg.aux_weight * torch.stack([ce(z) for z in aux]).mean()
    return loss, logits


def test_training_loss_mixes_the_label_loss_with_distillation():
    torch.manual_seed(0)
    output = ModelOutput(torch.randn(8, 7), (torch.randn(8, 7),))
    target, teacher = torch.randint(0, 7, (8,)), torch.randn(8, 7)
    weight = torch.rand(7) + 0.5
    plain = TrainConfig()
    label, logits = _loss_before_distillation(output, target, plain, weight)
    # no teacher, or kd_weight 0: exactly the label loss of before
    assert torch.equal(training_loss(output, target, plain, weight)[0], label)
    assert torch.equal(training_loss(output, target, plain, weight, teacher)[0], label)
    for w, T in ((0.25, 1.0), (0.7, 4.0), (1.0, 2.0)):
        cfg = TrainConfig(teacher="fer2013_resnet18", kd_weight=w, kd_temperature=T)
        loss, got = training_loss(output, target, cfg, weight, teacher)
        assert got is logits
        torch.testing.assert_close(loss, (1 - w) * label + w * distillation_loss(logits, teacher, T))


# -- 2. kd_weight 0 changes nothing --------------------------------------------------------------------------------

def test_kd_weight_zero_trains_exactly_as_before(tmp_path, data, monkeypatch):
    def no_teacher(*args, **kwargs):
        raise AssertionError("kd_weight 0 must not load a teacher")

    monkeypatch.setattr(train_run, "Teacher", no_teacher)  # build_run loads the teacher
    base = tiny_cfg(tmp_path, mixup_alpha=0.2, cutmix_alpha=1.0, mix_prob=0.5, class_balance="loss")
    kd0 = base.replace(teacher=None, kd_weight=0.0, kd_temperature=4.0)  # a temperature with nothing to soften
    runs = {}
    for name, cfg in (("default", base), ("kd0", kd0)):
        torch.manual_seed(3)
        runs[name] = train(cfg.replace(name=name), data, progress=False, model=TinyNet())

    # the same loop with the training loss as it was before distillation existed
    def loss_before(output, target, cfg, weight, teacher_logits=None):
        assert teacher_logits is None
        return _loss_before_distillation(output, target, cfg, weight)

    monkeypatch.setattr(train_steps, "training_loss", loss_before)  # what train_step calls
    torch.manual_seed(3)
    runs["before"] = train(base.replace(name="before"), data, progress=False, model=TinyNet())

    ckpts = {name: load_checkpoint(r.last_path) for name, r in runs.items()}
    assert ckpts["default"]["scheduler"]["step_count"] == 2 * 4  # a few optimiser steps really ran
    for name in ("kd0", "before"):
        assert same_state(ckpts[name]["model"], ckpts["default"]["model"]), name
        assert same_state(ckpts[name]["ema"]["module"], ckpts["default"]["ema"]["module"]), name
        assert [h["train_loss"] for h in runs[name].history] == [h["train_loss"] for h in runs["default"].history]
    assert all("teacher_seconds" not in h for r in runs.values() for h in r.history)


# -- 3. the teacher stays frozen, the student learns from it --------------------------------------------------------

def test_teacher_gets_no_gradient_and_keeps_its_weights(tmp_path, data, teacher_path, monkeypatch):
    made: list[Teacher] = []
    calls: list[tuple[bool, bool]] = []  # per teacher forward: (any module in train mode, autograd on)

    class Recorded(Teacher):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.before = {k: v.clone() for k, v in self.model.state_dict().items()}
            self.model.register_forward_pre_hook(lambda module, args: calls.append(
                (any(m.training for m in module.modules()), torch.is_grad_enabled())))
            made.append(self)

    monkeypatch.setattr(train_run, "Teacher", Recorded)
    base = tiny_cfg(tmp_path, mixup_alpha=0.2, mix_prob=0.5)
    kd = base.replace(teacher=str(teacher_path), kd_weight=0.5, kd_temperature=4.0)
    torch.manual_seed(3)
    plain = train(base.replace(name="plain"), data, progress=False, model=TinyNet())
    torch.manual_seed(3)
    student = TinyNet()
    distilled = train(kd.replace(name="kd"), data, progress=False, model=student)

    (teacher,) = made
    assert len(calls) == 2 * 4 and calls == [(False, False)] * 8  # every step, in eval mode, under no_grad
    assert not teacher.model.training
    for name, p in teacher.model.named_parameters():
        assert not p.requires_grad and p.grad is None, name
    after = teacher.model.state_dict()
    assert after.keys() == teacher.before.keys()
    stored = load_checkpoint(teacher_path)["model"]  # the file it was loaded from
    for k, v in after.items():  # weights and BatchNorm statistics: byte-identical, before and after, to the file
        assert torch.equal(v, teacher.before[k]) and torch.equal(v, stored[k]), k
    # nothing of the teacher in the optimiser, the EMA or the checkpoint: only the student's tensors
    ckpt = load_checkpoint(distilled.last_path)
    n_student = len(list(student.parameters()))
    assert sum(len(g["params"]) for g in ckpt["optimizer"]["param_groups"]) == n_student
    assert ckpt["model"].keys() == student.state_dict().keys() == ckpt["ema"]["module"].keys()
    assert ckpt["train_config"]["teacher"] == str(teacher_path) and ckpt["train_config"]["kd_weight"] == 0.5
    # the student did learn something else than without the teacher
    assert not same_state(ckpt["model"], load_checkpoint(plain.last_path)["model"])
    assert [h["train_loss"] for h in distilled.history] != [h["train_loss"] for h in plain.history]
    # the teacher's cost is in every history row
    assert all(0 < h["teacher_seconds"] < h["seconds"] for h in distilled.history)


def test_resume_with_a_teacher_repeats_the_run_exactly(tmp_path, data, teacher_path):
    cfg = tiny_cfg(tmp_path, teacher=Path(teacher_path), kd_weight=0.5, kd_temperature=2.0)
    assert cfg.teacher == str(teacher_path)  # a path is stored as a string (JSON, checkpoints, resume)
    torch.manual_seed(1)
    full = train(cfg.replace(name="full"), data, progress=False, model=TinyNet())

    class Stop(Exception):
        pass

    def stop_after_one(epoch, row):
        raise Stop

    torch.manual_seed(1)
    with pytest.raises(Stop):
        train(cfg.replace(name="cut"), data, progress=False, model=TinyNet(), on_epoch_end=stop_after_one)
    stored = TrainConfig.from_dict(load_checkpoint(tmp_path / "cut" / "last.pt")["train_config"])
    assert (stored.teacher, stored.kd_weight, stored.kd_temperature) == (str(teacher_path), 0.5, 2.0)
    resumed = train(stored, data, progress=False, model=TinyNet(), resume=tmp_path / "cut" / "last.pt")
    assert same_state(load_checkpoint(resumed.last_path)["model"], load_checkpoint(full.last_path)["model"])
    with pytest.raises(ValueError, match="recipe differs.*kd_weight"):  # another distillation is another recipe
        train(stored.replace(kd_weight=0.3), data, progress=False, model=TinyNet(),
              resume=tmp_path / "cut" / "last.pt")


def test_teacher_wrapper_is_frozen_adapts_channels_and_is_timed():
    class Gray(nn.Module):
        in_chans = 1

        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 7, 3), nn.BatchNorm2d(7)

        def forward(self, x):
            return self.bn(self.conv(x)).mean((2, 3))

    net = Gray().train()
    teacher = Teacher(net, "cpu")
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    x = torch.randn(4, 3, 48, 48, requires_grad=True)  # a 3-channel student's batch: the teacher takes one channel
    out = teacher(x)
    assert out.shape == (4, 7) and not out.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(out, net(x[:, :1]))
    net.train()  # whatever happens to the module in between, the teacher runs it in eval mode
    stats = net.bn.running_mean.clone()
    teacher(x)
    assert not net.training and torch.equal(net.bn.running_mean, stats)
    assert teacher.take_seconds() > 0 and teacher.take_seconds() == 0.0  # then reset
    assert "Gray" in teacher.describe()


def test_a_wrong_teacher_fails_before_any_training(tmp_path, data):
    with pytest.raises(CheckpointError, match="no_such_teacher"):
        train(tiny_cfg(tmp_path, teacher="no_such_teacher", kd_weight=0.5), data, progress=False, model=TinyNet())
    assert not (tmp_path / "t").exists()


# -- 4. the flags ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, match", [
    (dict(teacher="fer2013_resnet18", kd_weight=1.5), r"TrainConfig\.kd_weight must be in \[0, 1\]"),
    (dict(teacher="fer2013_resnet18", kd_weight=-0.1), r"TrainConfig\.kd_weight must be in \[0, 1\]"),
    (dict(teacher="fer2013_resnet18", kd_weight=math.nan), r"TrainConfig\.kd_weight must be a finite number"),
    (dict(kd_temperature=0.0), r"TrainConfig\.kd_temperature must be > 0"),
    (dict(kd_temperature=-2.0), r"TrainConfig\.kd_temperature must be > 0"),
    (dict(kd_temperature=math.inf), r"TrainConfig\.kd_temperature must be a finite number"),
    (dict(kd_weight=0.5), r"TrainConfig\.kd_weight=0\.5 needs a teacher"),
    (dict(teacher="fer2013_resnet18"), r"TrainConfig\.teacher='fer2013_resnet18' is given but TrainConfig\.kd_weight is 0"),
    (dict(teacher=" ", kd_weight=0.5), r"TrainConfig\.teacher must be a bundled model name or a file path"),
])
def test_bad_distillation_settings_are_refused_naming_the_field(changes, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**changes)


def test_distillation_flags_on_the_command_line():
    from fer_lib.cli import build_parser
    from fer_lib.cli.train import config_from_args

    def config(*flags):
        return config_from_args(build_parser("train").parse_args(["train", "--preset", "cpu", *flags]))

    cfg = config("--teacher", "ensemble", "--kd-weight", "0.5", "--kd-temperature", "4")
    assert (cfg.teacher, cfg.kd_weight, cfg.kd_temperature) == ("ensemble", 0.5, 4.0)
    assert (config().teacher, config().kd_weight) == (None, 0.0)  # off unless asked for
    with pytest.raises(ValueError, match=r"--kd-weight \(TrainConfig\.kd_weight\)=0\.5 needs a teacher"):
        config("--kd-weight", "0.5")
    with pytest.raises(ValueError, match=r"--kd-temperature \(TrainConfig\.kd_temperature\) must be > 0"):
        config("--kd-temperature", "0")


def test_recipes_stored_before_distillation_still_resume():
    """A checkpoint written before these fields existed lacks them: it computed no distillation, as the defaults."""
    old = {k: v for k, v in TrainConfig().to_dict().items() if k not in ("teacher", "kd_weight", "kd_temperature")}
    assert TrainConfig().recipe_diff(old) == {}
    kd = TrainConfig(teacher="ensemble", kd_weight=0.5)
    assert kd.recipe_diff(old) == {"teacher": ("ensemble", None), "kd_weight": (0.5, 0.0)}
