"""The training loop: :func:`train` reads top to bottom over four named steps.

``_setup`` (device, data, model, optimiser, schedule, precision, EMA, DDP) -> ``_start`` (a new run folder or a
resumed checkpoint) -> per epoch ``_train_epoch`` then ``_end_epoch`` (validation, budget re-plan, checkpoints).
Everything one process holds lives in a :class:`_Run`; the time budget is :class:`fer_lib.train.budget.TimeBudget`.

Per step (all on the device, no per-image python work, and nothing that makes the host wait for the device)::

    uint8 batch ──/255──> Augment ──> mixup/cutmix (soft targets) ──> normalize ──> model (autocast)
        ──> CE(logits, label smoothing, class weights) + aux_weight * mean CE(aux_logits)
        [kd_weight = w > 0: (1 - w) * that + w * T^2 * KL(teacher || student), the frozen teacher run in
         eval mode under no_grad on the same normalised batch: fer_lib/train/distill.py]
        ──> backward (GradScaler for fp16) ──> clip ──> step (lr from the schedule; fused AdamW on CUDA) ──> EMA

Every ``log_every`` steps (else :data:`READ_EVERY`) and at the epoch's end the loop reads the steps' loss and
accuracy from the device in one transfer: the progress line and the finite-loss check run there.

Per epoch: validation with the EMA weights (when on), atomic ``last.pt`` (the full state, for ``resume``) and
(when validation accuracy improved) ``best.pt`` (weights and EMA weights only, for evaluation), ``history.json``.
Every epoch re-seeds from ``(seed, epoch, rank)`` and the data order comes from ``TensorBatches.set_epoch``, so
``resume`` repeats an uninterrupted run exactly.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from fer_lib import NUM_CLASSES
from fer_lib.paths import display_path
from fer_lib.train import distributed as D
from fer_lib.train import setup as S
from fer_lib.train.budget import TimeBudget
from fer_lib.train.checkpoint import (
    FORMAT,
    capture_rng_state,
    inference_state,
    is_resumable,
    load_checkpoint,
    load_state_into,
    restore_rng_state,
    save_checkpoint,
)
from fer_lib.train.config import TrainConfig
from fer_lib.train.distill import Teacher
from fer_lib.train.ema import ModelEMA
from fer_lib.train.progress import TrainLog
from fer_lib.train.schedule import WarmupCosineSchedule
from fer_lib.train.steps import forward_for_loss, training_loss, validate

HISTORY_KEYS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_sec", "images")


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        history: one dict per finished epoch with :data:`HISTORY_KEYS` (+ ``"partial"`` when the time budget
            cut the epoch short, and ``"teacher_seconds"``, the seconds of this process's teacher forward passes,
            when distilling: ``cfg.kd_weight > 0``).
        best_path / last_path: the checkpoints (``None`` when no epoch finished; ``best_path`` is also ``None``
            when a run resumed into another folder has no ``best.pt`` there: see :func:`train`).
        model: the final model in eval mode (EMA weights when EMA is on); ``load_model(best_path)`` gives the best.
        run_dir: the output folder.
        stop_reason: ``None`` after all planned epochs, else why training stopped early (time budget).
        data_source: ``FERData.source``; ``synthetic`` says whether that was the synthetic faces.
    """

    history: list[dict]
    best_path: Path | None
    last_path: Path | None
    model: nn.Module
    run_dir: Path
    stop_reason: str | None = None
    data_source: str = ""
    synthetic: bool = False

    @property
    def best_val_acc(self) -> float:
        return max((h["val_acc"] for h in self.history), default=float("nan"))


class TrainingStopped(RuntimeError):
    """Training was stopped by a signal (SIGTERM) at a step boundary; ``last.pt`` holds the last finished epoch."""


class _StopOnSignal:
    """Turns SIGTERM (what Colab, Slurm and Kubernetes send before a kill) into a stop at the next step boundary.

    Only the main thread can install signal handlers; elsewhere (a notebook's worker thread) this does nothing.
    SIGINT keeps Python's default: a ``KeyboardInterrupt`` at once (Jupyter's stop button), which leaves the same
    checkpoints behind.
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous = None

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.signal = signum

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


@dataclass
class _Run:
    """Everything one training process holds (built by :func:`_setup`, advanced by the epoch steps)."""

    cfg: TrainConfig
    info: Any  # fer_lib.train.distributed.DistInfo
    log: TrainLog
    data: Any  # fer_lib.data.FERData
    train_split: Any
    val_split: Any
    batches_for: Callable[[int], Any]  # epoch -> TensorBatches
    steps_per_epoch: int
    raw: nn.Module  # the model itself (what checkpoints hold)
    net: nn.Module  # what the step calls: raw, or its DDP / torch.compile wrapper
    optimizer: torch.optim.Optimizer
    schedule: WarmupCosineSchedule
    precision: Any  # fer_lib.train.setup.Precision
    scaler: Any
    ema: ModelEMA | None
    class_weight: torch.Tensor | None
    augment: Callable | None
    teacher: Teacher | None = None  # cfg.kd_weight > 0: frozen, eval mode, outside raw / net / optimizer / ema
    budget: TimeBudget | None = None
    params: list[nn.Parameter] = field(default_factory=list)  # raw's parameters, listed once (gradient clipping)
    history: list[dict] = field(default_factory=list)
    best_acc: float = -1.0
    start_epoch: int = 0
    stop_reason: str | None = None
    has_best: bool = False  # run_dir/best.pt holds this run's best epoch so far (written, resumed or carried over)

    @property
    def device(self) -> torch.device:
        return self.info.device

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.out_dir) / self.cfg.name

    def planned_epochs(self) -> int:
        """``cfg.epochs``, unless ``fit_budget`` re-planned the run."""
        return math.ceil(self.schedule.total_steps / self.steps_per_epoch)

    def checkpoint(self, epoch_done: int, partial: bool) -> dict:
        model_name, model_config = S.model_identity(self.raw)
        return {
            "format": FORMAT, "model_name": model_name, "model_config": model_config,
            "model": self.raw.state_dict(), "ema": self.ema.state_dict() if self.ema else None,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None, "epoch": epoch_done, "partial": partial,
            "history": self.history, "best_val_acc": self.best_acc, "rng": capture_rng_state(),
            "data_fingerprint": self.data.fingerprint, "data_source": self.data.source,
            "synthetic": bool(self.data.synthetic), "train_config": self.cfg.to_dict(),
            "world_size": self.info.world_size,
        }


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def train(
    cfg: TrainConfig,
    data=None,
    progress: bool = True,
    *,
    model: nn.Module | None = None,
    resume: str | os.PathLike | None = None,
    on_epoch_end: Callable[[int, dict], None] | None = None,
) -> TrainResult:
    """Train ``cfg.model`` on ``data`` (or the data ``cfg`` names) and write checkpoints under ``cfg.out_dir/name``.

    Args:
        cfg: the recipe (:class:`TrainConfig`; see also :data:`fer_lib.train.PRESETS`).
        data: a :class:`fer_lib.data.FERData`; ``None`` loads what ``cfg.data`` / ``cfg.data_root`` say.
        progress: ``tqdm.auto`` epoch and batch bars (loss, accuracy, lr); ``False`` prints plain lines (one per
            epoch, plus one every ``cfg.log_every`` steps), which suits CI logs.
        model: train this module instead of building ``cfg.model`` (its ``forward`` takes ``[B, C, 48, 48]``
            and returns logits or ``ModelOutput``); such a checkpoint needs the same class to load.
        resume: a checkpoint to continue from (overrides ``cfg.resume``). Resumed into another run folder
            (``cfg.out_dir/cfg.name`` is not the checkpoint's folder), the checkpoint's run's ``best.pt`` is copied
            there first when it is the best epoch the checkpoint knows of, so that the new folder's ``best.pt`` is
            the best epoch so far; when it cannot be (missing, or from later epochs), the new folder gets a
            ``best.pt`` only once an epoch beats the resumed best, and until then ``best_path`` is ``None``.
        on_epoch_end: called as ``fn(epoch_index, history_row)`` after each epoch's checkpoints are written.

    Returns:
        A :class:`TrainResult`.

    Raises:
        FloatingPointError: the loss became NaN/inf (names epoch and step; no checkpoint of that epoch is written).
        ValueError: resuming with a different recipe or different data (names what differs), or a run folder
            that already holds checkpoints without ``cfg.overwrite`` (a new run, or one resumed from another folder).
        TrainingStopped: SIGTERM arrived; ``last.pt`` holds the last finished epoch and resumes exactly.
    """
    t_start = time.perf_counter()
    run = _setup(cfg, data, progress, model)
    _start(run, resume if resume is not None else cfg.resume, t_start)
    with _StopOnSignal() as stop:
        try:
            epoch = run.start_epoch
            while epoch < run.planned_epochs():
                if not run.budget.next_epoch_fits([h["seconds"] for h in run.history[run.start_epoch:]]):
                    run.stop_reason = (f"time budget: {run.budget.elapsed() / 60:.1f} of {cfg.max_minutes} minutes "
                                       f"used, the next epoch would not fit; stopped after epoch {epoch} of "
                                       f"{run.planned_epochs()}")
                    break
                row = _end_epoch(run, epoch, _train_epoch(run, epoch, stop))
                if on_epoch_end is not None:
                    on_epoch_end(epoch, row)
                if row.get("partial"):
                    break
                epoch += 1
        finally:
            run.log.close()
    if run.stop_reason:
        run.log.write(f"note: {run.stop_reason}")
    final = run.ema.module if run.ema is not None else run.raw
    final.eval()
    have = bool(run.history)
    return TrainResult(run.history, run.run_dir / "best.pt" if have and run.has_best else None,
                       run.run_dir / "last.pt" if have else None, final, run.run_dir, run.stop_reason,
                       run.data.source, bool(run.data.synthetic))


def _setup(cfg: TrainConfig, data, progress: bool, model: nn.Module | None) -> _Run:
    """Device and threads, the teacher (when distilling), data (in memory, uint8, on the device), model, optimiser,
    schedule, precision, EMA."""
    from fer_lib.data import Augment, AugmentConfig, TensorBatches

    # before init_distributed, this process's first CUDA work (CUBLAS_WORKSPACE_CONFIG must precede cuBLAS)
    S.configure_determinism(cfg.deterministic, D.resolve_device(cfg.device))
    info = D.init_distributed(cfg.device)
    device = info.device
    log = TrainLog(enabled=info.is_main, progress=progress, log_every=cfg.log_every)
    if cfg.num_threads and device.type == "cpu":
        torch.set_num_threads(cfg.num_threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    teacher = None
    if cfg.kd_weight > 0:  # loaded first: a wrong name or path fails before any data is read
        teacher = Teacher(cfg.teacher, device, channels_last=cfg.channels_last)
        log.write(f"teacher: {teacher.describe()} | kd_weight {cfg.kd_weight}, kd_temperature {cfg.kd_temperature}")

    if data is None:
        data = S.load_training_data(cfg)
    train_split, val_split = S.select_splits(cfg, data)
    kind = "SYNTHETIC faces (not FER2013)" if data.synthetic else "FER2013"
    log.write(f"data: {kind}: {display_path(data.source)} | train {train_split.name} {len(train_split)} images, "
              f"val {val_split.name} {len(val_split)} images | device {device} x{info.world_size}")
    weight = None
    if cfg.class_balance == "loss":
        weight = S.class_weights(train_split.labels, cfg.class_balance_power).to(device)
    # Moved to the device once (all of FER2013 is 83 MB as uint8); TensorBatches then only indexes it each epoch.
    dev_images, dev_labels = train_split.images.to(device), train_split.labels.to(device)

    def batches_for(epoch: int):
        images, labels = dev_images, dev_labels
        if cfg.class_balance == "sampler":
            idx = S.balanced_indices(train_split.labels, cfg.class_balance_power, S.epoch_seed(cfg.seed, epoch)).to(device)
            images, labels = images[idx], labels[idx]
        per_rank = len(images) // info.world_size
        tb = TensorBatches(images, labels, cfg.batch_size, shuffle=True, drop_last=per_rank > cfg.batch_size,
                           seed=cfg.seed, device=device, rank=info.rank, world_size=info.world_size)
        tb.set_epoch(epoch)
        return tb

    steps_per_epoch = len(batches_for(0))
    if steps_per_epoch == 0:
        raise ValueError(f"no training batches: {len(train_split)} images for batch size {cfg.batch_size}")

    S.seed_everything(cfg.seed)
    raw = (model if model is not None else S.build_model(cfg)).to(device)
    if cfg.channels_last:
        raw = raw.to(memory_format=torch.channels_last)
    optimizer = S.build_optimizer(raw, cfg)
    total = cfg.epochs * steps_per_epoch
    schedule = WarmupCosineSchedule(optimizer, total, min(total, round(cfg.warmup_epochs * steps_per_epoch)),
                                    cfg.min_lr_ratio)
    precision = S.precision_for(cfg.amp, device)
    scaler = torch.amp.GradScaler(device.type) if precision.use_scaler else None  # fp16 (CUDA); tests run it on CPU
    net: nn.Module = raw
    if info.enabled:  # DDP broadcasts rank 0's weights here, so everything below starts identical on all ranks
        net = nn.parallel.DistributedDataParallel(raw, device_ids=[device.index] if device.type == "cuda" else None,
                                                  find_unused_parameters=S.has_idle_parameters(raw, cfg))
    ema = ModelEMA(raw, cfg.ema_decay) if cfg.ema else None
    if cfg.compile:
        net = torch.compile(net)
    return _Run(cfg, info, log, data, train_split, val_split, batches_for, steps_per_epoch, raw, net, optimizer,
                schedule, precision, scaler, ema, weight,
                Augment(AugmentConfig.from_dict(cfg.augment_overrides)) if cfg.augment else None,
                teacher=teacher, params=list(raw.parameters()))


def _same_folder(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def check_run_folder(cfg: TrainConfig, resume=None) -> None:
    """Refuse (``ValueError``) a run whose folder ``cfg.out_dir/cfg.name`` holds checkpoints of an earlier run
    that it would replace: a new run, or one resumed from a checkpoint in another folder, without
    ``cfg.overwrite``. Resuming in the checkpoint's own folder continues that run and is never refused here.
    :func:`train` checks this before its first step; the CLI also calls it before loading any data."""
    run_dir = Path(cfg.out_dir) / cfg.name
    resume = resume if resume is not None else cfg.resume
    if cfg.overwrite or (resume is not None and _same_folder(Path(resume).parent, run_dir)):
        return
    existing = [p.name for p in (run_dir / "best.pt", run_dir / "last.pt") if p.exists()]
    if existing:
        raise ValueError(
            f"run folder {display_path(run_dir)} already holds {' and '.join(existing)} of an earlier run; "
            f"pass --name with a new name, --resume {display_path(run_dir / 'last.pt')} to continue it, or "
            "--overwrite to replace it (its files are replaced only when this run's first epoch is written)")


def _carry_best(run: _Run, resume, ckpt: dict) -> None:
    """Resumed into another folder: copy the checkpoint's run's ``best.pt`` into this run folder (atomically)
    when it is the best epoch the checkpoint knows of (same best validation accuracy, not a later epoch), so
    that this folder's ``best.pt`` always names the best epoch so far. Otherwise say where things stand."""
    src, dst = Path(resume).with_name("best.pt"), run.run_dir / "best.pt"
    why = None
    if not src.is_file():
        why = f"{display_path(src)} does not exist"
    else:
        try:
            best = load_checkpoint(src, map_location="cpu")
        except Exception as e:  # noqa: BLE001 - any unreadable best.pt: resume goes on without it
            best, why = None, f"{display_path(src)} cannot be read ({type(e).__name__})"
        if best is not None and (best.get("best_val_acc") != ckpt.get("best_val_acc")
                                 or int(best.get("epoch", 0)) > int(ckpt.get("epoch", 0))):
            why = f"{display_path(src)} is not the best epoch of {display_path(resume)} (a later or other run)"
    if why is None:
        tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
        run.has_best = True
        run.log.write(f"resumed into a new run folder: copied {display_path(src)} (best val_acc "
                      f"{run.best_acc:.4f}) to {display_path(dst)}")
    else:
        run.log.write(f"note: resumed into a new run folder, but {why}: {display_path(dst)} is written when an "
                      f"epoch beats the resumed best val_acc {run.best_acc:.4f}")


def _start(run: _Run, resume, t_start: float) -> None:
    """Resume from a checkpoint (same recipe and data, or a ``ValueError`` naming what differs), or start a new
    run in a folder that holds no checkpoints of an earlier run (unless ``cfg.overwrite``: they are then replaced,
    atomically, when this run's first epoch is written, never deleted before)."""
    cfg, run_dir = run.cfg, run.run_dir
    check_run_folder(cfg, resume)
    ckpt = None
    if resume is not None:
        ckpt = load_checkpoint(resume, map_location=run.device)
        if not is_resumable(ckpt):
            raise ValueError(f"cannot resume from {resume}: it holds the weights only (best.pt is written for "
                             "evaluation and inference, without the optimiser, schedule and RNG state); resume "
                             f"from the run's last.pt ({display_path(Path(resume).with_name('last.pt'))})")
        diff = cfg.recipe_diff(ckpt.get("train_config") or {})
        if diff:
            raise ValueError(f"cannot resume from {resume}: the recipe differs in {diff} (this run, checkpoint); "
                             "resume with the checkpoint's settings or start a new run")
        if ckpt.get("data_fingerprint") != run.data.fingerprint:
            raise ValueError(f"cannot resume from {resume}: it was trained on data {ckpt.get('data_fingerprint')!r}, "
                             f"this run has {run.data.fingerprint!r} ({run.data.source})")
        load_state_into(run.raw, ckpt["model"], checkpoint_model_name=ckpt["model_name"], source=str(resume))
        run.optimizer.load_state_dict(ckpt["optimizer"])
        run.schedule.load_state_dict(ckpt["scheduler"], strict=not cfg.fit_budget)  # fit_budget: keep the plan
        if run.ema is not None and ckpt.get("ema"):
            run.ema.load_state_dict(ckpt["ema"])
        if run.scaler is not None and ckpt.get("scaler"):
            run.scaler.load_state_dict(ckpt["scaler"])
        run.history, run.best_acc = list(ckpt["history"]), float(ckpt["best_val_acc"])
        run.start_epoch = int(ckpt["epoch"])
        restore_rng_state(ckpt["rng"])
        run.log.write(f"resumed from {resume} after epoch {run.start_epoch} (best val_acc {run.best_acc:.4f})")
    if run.info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        for tmp in run_dir.glob(".*.tmp-*"):  # left by a process killed while writing
            tmp.unlink(missing_ok=True)
        _write_json(run_dir / "config.json", cfg.to_dict())
    if ckpt is not None:
        if _same_folder(Path(resume).parent, run_dir):
            run.has_best = (run_dir / "best.pt").is_file()
        elif run.info.is_main:
            _carry_best(run, resume, ckpt)
    run.budget = TimeBudget(cfg.max_minutes, cfg.fit_budget, sum(h["seconds"] for h in run.history), t_start)
    run.log.start(run.planned_epochs(), run.start_epoch)


class _EpochPart(NamedTuple):
    """What :func:`_train_epoch` measured, for :func:`_end_epoch` to finish the history row with."""

    train_loss: float
    train_acc: float
    images: int
    t0: float  # perf_counter() at the epoch's start
    train_s: float  # seconds of training (without validation)
    partial: bool  # the epoch stopped early (budget, or the fitted plan ends inside it)


#: Steps between two reads of the step statistics from the device when ``cfg.log_every`` is 0.
READ_EVERY = 50


class _Pending:
    """The steps since the last read: their statistics stay on the device until :meth:`read` fetches them in one
    transfer (one host-device synchronisation per read, none inside a step)."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.lrs: list[float] = []
        self.sizes: list[int] = []
        self.stats: list[torch.Tensor] = []  # per step: [loss * batch size, correct] (float32, on the device)

    def add(self, step: int, lr: float, size: int, stats: torch.Tensor) -> None:
        self.steps.append(step)
        self.lrs.append(lr)
        self.sizes.append(size)
        self.stats.append(stats)

    def read(self) -> list[list[float]]:
        """``[loss * batch size, correct]`` of every pending step, in one transfer."""
        return torch.stack(self.stats).tolist()

    def clear(self) -> None:
        self.steps, self.lrs, self.sizes, self.stats = [], [], [], []


def _train_epoch(run: _Run, epoch: int, stop: _StopOnSignal) -> _EpochPart:
    """One pass over the training batches (or up to the budget / the plan's end).

    Nothing inside a step waits for the device: the loss and accuracy of each step stay on the device and are read
    every ``cfg.log_every`` steps (:data:`READ_EVERY` when 0) and at the end of the epoch, in one transfer. That
    read also runs the finite-loss check, so a NaN/inf loss is reported (with the epoch, step and learning rate
    where it *first* appeared) at most that many steps late; the optimiser steps in between change only the
    weights in memory, as the error leaves no checkpoint of the epoch. Under DDP the ranks agree on that check
    at each read, and a time budget is checked at the reads (without DDP: after every step, host-side only).
    """
    from fer_lib.data import mixup_cutmix, normalize

    cfg, info, device = run.cfg, run.info, run.device
    t0 = time.perf_counter()
    S.seed_everything(S.epoch_seed(cfg.seed, epoch, info.rank))
    batches = run.batches_for(epoch)
    n_epochs, steps = run.planned_epochs(), run.steps_per_epoch
    mixing = cfg.mix_prob > 0 and (cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0)
    read_every = cfg.log_every if cfg.log_every > 0 else READ_EVERY
    run.net.train()
    run.log.start_epoch(epoch, n_epochs, steps)
    totals = [0.0, 0.0, 0.0]  # loss sum, correct, count: float64 sums of the read statistics, in step order
    pending = _Pending()

    def read() -> None:
        rows = pending.read()
        bad = next((i for i, row in enumerate(rows) if not math.isfinite(row[0])), None)
        if not D.all_true(bad is None, info, device):
            if bad is None:
                raise FloatingPointError(
                    f"non-finite training loss on another rank by epoch {epoch + 1}, step {pending.steps[-1] + 1}; "
                    "no checkpoint of this epoch was written. Lower --lr, keep --grad-clip on, or use amp "
                    "'bf16'/'off'")
            raise FloatingPointError(
                f"non-finite training loss ({rows[bad][0] / pending.sizes[bad]}) at epoch {epoch + 1}, step "
                f"{pending.steps[bad] + 1} (lr {pending.lrs[bad]:.3g}); no checkpoint of this epoch was written. "
                "Lower --lr, keep --grad-clip on, or use amp 'bf16'/'off'")
        for (loss_sum, correct), size in zip(rows, pending.sizes):
            totals[0] += loss_sum
            totals[1] += correct
            totals[2] += size
        n = sum(pending.sizes)
        run.log.step(epoch, n_epochs, pending.steps[-1], steps, sum(r[0] for r in rows) / n,
                     sum(r[1] for r in rows) / n, pending.lrs[-1])
        pending.clear()

    partial = False
    for step, (images, labels) in enumerate(batches):
        x01 = images.unsqueeze(1).float().div_(255.0) if images.ndim == 3 else images.float().div_(255.0)
        if run.augment is not None:
            x01 = run.augment(x01)
        target = labels
        if mixing:
            x01, target = mixup_cutmix(x01, labels, NUM_CLASSES, cfg.mixup_alpha, cfg.cutmix_alpha, cfg.mix_prob)
        x = normalize(x01, inplace=True)  # x01 is this step's own tensor (cast, augmented or mixed)
        if cfg.in_chans == 3:
            x = x.expand(-1, 3, -1, -1)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        lr = run.schedule.step()
        teacher_logits = None
        with run.precision.autocast():
            if run.teacher is not None:  # the very view the student gets: consistent teaching (Beyer et al. 2022)
                teacher_logits = run.teacher(x)
            output = forward_for_loss(run.net, run.raw, x, cfg)
        loss, logits = training_loss(output, target, cfg, run.class_weight, teacher_logits)
        pending.add(step, lr, len(labels), torch.stack(
            [loss.detach().float() * len(labels), (logits.detach().argmax(1) == labels).sum().float()]))
        _optimizer_step(run, loss)
        run.log.advance()
        at_read = (step + 1) % read_every == 0
        if at_read:
            read()
        if stop.signal is not None:
            raise TrainingStopped(
                f"stopped by signal {signal.Signals(stop.signal).name} during epoch {epoch + 1}, step {step + 1}: "
                f"{display_path(run.run_dir / 'last.pt')} holds epoch {epoch} and resumes exactly with --resume")
        if step + 1 < steps:
            if run.schedule.step_count >= run.schedule.total_steps:
                partial = True  # the budget-fitted plan ends inside this epoch
                break
            if run.budget.limited and (at_read or not info.enabled) and not D.all_true(not run.budget.over(),
                                                                                        info, device):
                partial = True
                run.stop_reason = (f"time budget: {cfg.max_minutes} minutes reached during epoch {epoch + 1} "
                                   f"after {step + 1} of {steps} steps; stopped early")
                break
    if pending.steps:
        read()
    train_s = time.perf_counter() - t0
    sums = D.all_reduce_sum(torch.tensor(totals, dtype=torch.float64, device=device), info).tolist()
    return _EpochPart(sums[0] / sums[2], sums[1] / sums[2], int(sums[2]), t0, train_s, partial)


def _optimizer_step(run: _Run, loss: torch.Tensor) -> None:
    """Backward (scaled for fp16), gradient clipping, optimiser step, EMA update."""
    run.optimizer.zero_grad(set_to_none=True)
    if run.scaler is not None:
        run.scaler.scale(loss).backward()
        run.scaler.unscale_(run.optimizer)
    else:
        loss.backward()
    if run.cfg.grad_clip:
        nn.utils.clip_grad_norm_(run.params, run.cfg.grad_clip)
    if run.scaler is not None:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    if run.ema is not None:
        run.ema.update(run.raw)


def _end_epoch(run: _Run, epoch: int, part: _EpochPart) -> dict:
    """Validate (EMA weights when on), re-fit the plan to the budget, write ``last.pt`` / ``best.pt`` /
    ``history.json``; returns the epoch's history row."""
    cfg, info = run.cfg, run.info
    train_s, partial = part.train_s, part.partial
    D.average_buffers(run.raw, info)
    if run.ema is not None:
        D.average_buffers(run.ema.module, info)
    eval_model = run.ema.module if run.ema is not None else run.raw
    val_loss, val_acc = validate(eval_model, run.val_split.images, run.val_split.labels, cfg, run.device,
                                 run.precision, info)
    seconds = time.perf_counter() - part.t0
    row = {"epoch": epoch + 1, "train_loss": part.train_loss, "train_acc": part.train_acc, "val_loss": val_loss,
           "val_acc": val_acc, "lr": run.optimizer.param_groups[0]["lr"], "seconds": seconds,
           "images_per_sec": part.images / train_s, "images": part.images}
    if partial:
        row["partial"] = True
    if run.teacher is not None:  # its share of the epoch's time: the cost of distilling
        row["teacher_seconds"] = run.teacher.take_seconds()
    run.budget.record_epoch(train_s)
    if run.budget.should_refit(epoch == 0, run.schedule, run.steps_per_epoch, partial):
        before = run.schedule.total_steps
        run.budget.refit(run.schedule, run.steps_per_epoch, seconds - train_s, info, run.device)
        if epoch == run.start_epoch or abs(run.schedule.total_steps - before) >= run.steps_per_epoch / 4:
            run.log.set_epochs(run.planned_epochs())
            run.log.write(f"fit_budget: planned {run.schedule.total_steps} steps "
                          f"({run.schedule.total_steps / run.steps_per_epoch:.2f} epochs) to end within "
                          f"{cfg.max_minutes} minutes (re-fitted after each epoch from the measured epoch times)")
    run.history.append(row)
    improved = val_acc > run.best_acc
    run.best_acc = max(run.best_acc, val_acc)
    run.has_best = run.has_best or improved
    if info.is_main:  # last.pt: everything resume needs; best.pt: the same without the training state
        state = run.checkpoint(epoch + 1, partial)
        save_checkpoint(state, run.run_dir / "last.pt")
        if improved:
            save_checkpoint(inference_state(state), run.run_dir / "best.pt")
        _write_json(run.run_dir / "history.json", run.history)
    D.barrier(info)
    run.log.end_epoch(row, run.planned_epochs(), run.best_acc)
    return row
