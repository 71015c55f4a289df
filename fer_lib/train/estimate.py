"""How long will a run take? Time a few dozen real training steps on the device before starting it.

:func:`estimate_minutes` builds what :func:`fer_lib.train.train` builds for ``cfg`` (model, optimiser, schedule,
precision and gradient scaler, EMA, augmentation, teacher), with train's own builder
(:func:`fer_lib.train.run.build_run`), takes the batches of the run's training split on the device that the loop
takes, and times ``steps`` whole steps of the loop's own :func:`fer_lib.train.steps.train_step` (uint8 ->
augmentation -> mixup/CutMix -> normalise -> forward under autocast -> loss -> backward -> clipping -> optimiser
step -> EMA) after ``warmup`` untimed ones (cuDNN autotuning, the first CUDA kernels, ``torch.compile``). It then
times one validation batch and extrapolates::

    epoch seconds = steps_per_epoch * seconds_per_step + validation seconds (the whole validation split)
    minutes       = cfg.epochs * epoch seconds / 60

With ``cfg.max_minutes`` the run stops at its budget, and with ``cfg.fit_budget`` its schedule is re-planned to
end there: :attr:`Estimate.run_minutes` and :attr:`Estimate.run_epochs` say what that means for this run.

Left out: loading the data, one process only (no DDP), writing the checkpoints after each epoch
(:attr:`Estimate.checkpoint_mb` says how much ``last.pt`` holds; on Google Drive that write may take longer than on a
local disk), and a device that slows down during the run (a shared or throttled GPU). So it is an estimate, made to
decide *before* a long run whether it fits, not a measurement of the run (its history's ``seconds`` are that).

Nothing is written and no run folder is touched: the model is built, timed and dropped. What it changes is what
:func:`~fer_lib.train.train` changes too at its start (the global random state, which ``train`` re-seeds; cuDNN
autotuning, TF32 and ``cfg.num_threads``).
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass

import torch

from fer_lib.train import setup as S
from fer_lib.train.config import TrainConfig
from fer_lib.train.distributed import DistInfo, resolve_device
from fer_lib.train.progress import TrainLog
from fer_lib.train.run import build_run
from fer_lib.train.steps import train_step, validate

__all__ = ["Estimate", "estimate_minutes"]


@dataclass(frozen=True)
class Estimate:
    """What :func:`estimate_minutes` measured for one recipe, and what it extrapolates to.

    Attributes:
        name / model: the run's name and model (``cfg.name``, ``cfg.model``).
        device: where it was timed, e.g. ``"cuda (Tesla T4)"`` or ``"cpu"``.
        precision: the training precision on that device (``"fp16"``, ``"bf16"``, ``"fp32"``).
        batch_size: images per step.
        train_images / val_images: the sizes of the run's training and validation splits (subsets applied).
        steps_per_epoch: optimiser steps per epoch, counted as :func:`fer_lib.train.train` counts them
            (:func:`fer_lib.train.steps_per_epoch`).
        seconds_per_step: the mean time of one timed training step.
        steps_timed: how many steps that mean is over (fewer than asked when ``max_seconds`` ran out).
        val_seconds: one validation pass over the whole validation split (extrapolated from one batch).
        epochs: the planned epochs (``cfg.epochs``).
        max_minutes / fit_budget: the run's time budget (``cfg.max_minutes``, ``cfg.fit_budget``).
        checkpoint_mb: the tensors ``last.pt`` holds (weights, EMA weights, optimiser state), in MB, written
            after every epoch (not timed).
    """

    name: str
    model: str
    device: str
    precision: str
    batch_size: int
    train_images: int
    val_images: int
    steps_per_epoch: int
    seconds_per_step: float
    steps_timed: int
    val_seconds: float
    epochs: int
    max_minutes: float | None
    fit_budget: bool
    checkpoint_mb: float

    @property
    def epoch_seconds(self) -> float:
        """One epoch: its training steps plus one validation pass."""
        return self.steps_per_epoch * self.seconds_per_step + self.val_seconds

    @property
    def minutes(self) -> float:
        """The planned epochs (``cfg.epochs``), validation included."""
        return self.epochs * self.epoch_seconds / 60.0

    @property
    def run_minutes(self) -> float:
        """What the run itself should take: :attr:`minutes`, or with a budget at most ``max_minutes`` (with
        ``fit_budget`` the plan is stretched or shrunk to end at the budget, so the run takes about that)."""
        if self.max_minutes is None:
            return self.minutes
        return self.max_minutes if self.fit_budget else min(self.minutes, self.max_minutes)

    @property
    def run_epochs(self) -> float:
        """The epochs the run should train: ``epochs``, or as many as fit the budget (``fit_budget``: however
        many that is; without it at most ``epochs``)."""
        if self.max_minutes is None:
            return float(self.epochs)
        fit = self.max_minutes * 60.0 / self.epoch_seconds
        return fit if self.fit_budget else min(float(self.epochs), fit)

    def __str__(self) -> str:
        head = (f"{self.name}: {self.model}, batch {self.batch_size}, {self.precision} on {self.device}: "
                f"{self.seconds_per_step:.3f} s per step ({self.steps_timed} steps timed) x {self.steps_per_epoch} "
                f"steps + {self.val_seconds:.1f} s validation = {self.epoch_seconds:.1f} s per epoch; "
                f"{self.epochs} epochs: about {_minutes(self.minutes)}")
        if self.max_minutes is not None and self.fit_budget:
            head += (f"; its {self.max_minutes:g}-minute budget (fit_budget) re-plans it to about "
                     f"{self.run_epochs:.0f} epochs in {self.max_minutes:g} minutes")
        elif self.max_minutes is not None and self.minutes > self.max_minutes:
            head += f"; max_minutes stops it at {self.max_minutes:g} minutes, after about {self.run_epochs:.0f} epochs"
        return head + f" (estimated; checkpoint writes of {self.checkpoint_mb:.0f} MB per epoch not included)"


def _minutes(m: float) -> str:
    """``"40 minutes"``, or with one decimal below ten (``"0.4 minutes"``)."""
    return f"{m:.0f} minutes" if m >= 10 else f"{m:.1f} minutes"


def _sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA and MPS run asynchronously to the host)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _tensor_mb(obj) -> float:
    """Megabytes of every tensor in a (nested) state dict."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size() / 1e6
    if isinstance(obj, dict):
        return sum(_tensor_mb(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_mb(v) for v in obj)
    return 0.0


def estimate_minutes(cfg: TrainConfig, data=None, steps: int = 30, warmup: int = 3, *,
                     max_seconds: float | None = 120.0) -> Estimate:
    """Time ``steps`` real training steps of ``cfg`` on its device and estimate the minutes of the whole run.

    Args:
        cfg: the recipe the run will use (its ``device``, ``batch_size``, ``amp``, ``channels_last``, ``compile``,
            model, augmentation, mixing, EMA, teacher and subsets all count).
        data: the :class:`fer_lib.data.FERData` the run will train on (``None``: load what ``cfg`` names, as
            ``train`` does); only its training and validation splits are used.
        steps: training steps to time (at least 1); a few dozen give a stable mean on a GPU.
        warmup: untimed steps before them (first-call costs: cuDNN autotuning, CUDA kernels, ``torch.compile``).
        max_seconds: stop timing after this many seconds, with at least one timed step (a slow device or a large
            model on a CPU then gives a mean over fewer steps); ``None``: time all ``steps``.

    Returns:
        An :class:`Estimate`; ``str(estimate)`` is a one-line summary.

    Raises:
        ValueError: ``steps < 1``, ``warmup < 0``, or a training split with no batch.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"estimate_minutes needs steps >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    device = resolve_device(cfg.device)
    try:
        return _measure(cfg, data, device, steps, warmup, max_seconds)
    finally:
        if device.type == "cuda":  # hand the timing's memory back before the real run allocates its own
            gc.collect()
            torch.cuda.empty_cache()


def _measure(cfg: TrainConfig, data, device: torch.device, steps: int, warmup: int,
             max_seconds: float | None) -> Estimate:
    """:func:`estimate_minutes` without its argument checks and clean-up."""
    S.configure_determinism(cfg.deterministic, device)  # cuDNN autotuning on CUDA, as in train()
    # what train() builds, with train()'s own builder: one process (no DDP), no log lines
    run = build_run(cfg, data, DistInfo(0, 1, 0, device), TrainLog(enabled=False, progress=False, log_every=0))

    def batches():
        epoch = 0
        while True:  # as many epochs as the timed steps need (a small split has few batches)
            yield from run.batches_for(epoch)
            epoch += 1

    stats: list[torch.Tensor] = []  # each step's statistics, left on the device as the loop leaves them
    source = batches()
    run.net.train()
    for _ in range(warmup):
        stats.append(train_step(run, *next(source))[1])
    _sync(device)
    timed = 0
    t0 = time.perf_counter()
    while timed < steps:
        stats.append(train_step(run, *next(source))[1])
        timed += 1
        if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
            break
    torch.stack(stats).sum().item()  # reads the steps' statistics, as the loop does (and waits for the device)
    _sync(device)
    seconds_per_step = (time.perf_counter() - t0) / timed

    val_split = run.val_split
    n_val = min(len(val_split), cfg.eval_batch_size)
    eval_model = run.ema.module if run.ema is not None else run.raw
    val_images, val_labels = val_split.images[:n_val], val_split.labels[:n_val]
    validate(eval_model, val_images, val_labels, cfg, device, run.precision, run.info)  # untimed: first-call costs
    _sync(device)
    t0 = time.perf_counter()
    validate(eval_model, val_images, val_labels, cfg, device, run.precision, run.info)
    _sync(device)
    val_seconds = (time.perf_counter() - t0) * len(val_split) / max(n_val, 1)

    checkpoint_mb = (_tensor_mb(run.raw.state_dict()) + _tensor_mb(run.optimizer.state_dict()["state"])
                     + (_tensor_mb(run.ema.state_dict()) if run.ema is not None else 0.0))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return Estimate(
        name=cfg.name, model=cfg.model, device=f"{device.type} ({name})" if name else device.type,
        precision=str(run.precision), batch_size=cfg.batch_size, train_images=len(run.train_split),
        val_images=len(val_split), steps_per_epoch=run.steps_per_epoch, seconds_per_step=seconds_per_step,
        steps_timed=timed, val_seconds=val_seconds, epochs=cfg.epochs, max_minutes=cfg.max_minutes,
        fit_budget=cfg.fit_budget, checkpoint_mb=checkpoint_mb)
