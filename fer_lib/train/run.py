"""One training run's state: what a process holds (:class:`Run`), how it is built (:func:`build_run`), its folder.

:func:`fer_lib.train.train` sets up the process (determinism, DDP) and calls :func:`build_run` (data on the device,
model, optimiser, schedule, precision, EMA, teacher: the pieces of :mod:`fer_lib.train.setup`, assembled); then it
starts the run: :func:`check_run_folder` (no earlier run's checkpoints are replaced unasked),
:meth:`Run.resume_from` a ``last.pt`` (same recipe and data, or a ``ValueError`` naming what differs),
:func:`prepare_run_folder` and, for a run resumed into another folder, :func:`carry_best`. The loop advances the
run and writes its files (:meth:`Run.checkpoint`, :func:`write_json`). :func:`fer_lib.train.estimate_minutes`
builds the same :class:`Run` to time its steps.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fer_lib.data import Augment, AugmentConfig, TensorBatches
from fer_lib.paths import display_path
from fer_lib.train import setup as S
from fer_lib.train.budget import TimeBudget
from fer_lib.train.checkpoint import (
    FORMAT,
    capture_rng_state,
    is_resumable,
    load_checkpoint,
    load_state_into,
    restore_rng_state,
)
from fer_lib.train.config import TrainConfig
from fer_lib.train.distill import Teacher
from fer_lib.train.ema import ModelEMA
from fer_lib.train.progress import TrainLog
from fer_lib.train.schedule import WarmupCosineSchedule


@dataclass
class Run:
    """Everything one training process holds (built by :func:`build_run`, advanced by the loop's epoch steps)."""

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
        """What ``last.pt`` holds after ``epoch_done`` epochs: everything ``resume`` needs (``best.pt`` is its
        :func:`~fer_lib.train.checkpoint.inference_state`)."""
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

    def resume_from(self, resume) -> dict:
        """Continue the run that ``resume`` (its ``last.pt``) holds: its weights, optimiser, schedule, EMA, scaler,
        history, best accuracy, epoch and random state; returns the checkpoint.

        Raises:
            ValueError: ``resume`` holds the weights only (a ``best.pt``), or was trained with another recipe or
                on other data (the message names what differs).
        """
        cfg = self.cfg
        ckpt = load_checkpoint(resume, map_location=self.device)
        if not is_resumable(ckpt):
            raise ValueError(f"cannot resume from {resume}: it holds the weights only (best.pt is written for "
                             "evaluation and inference, without the optimiser, schedule and RNG state); resume "
                             f"from the run's last.pt ({display_path(Path(resume).with_name('last.pt'))})")
        diff = cfg.recipe_diff(ckpt.get("train_config") or {})
        if diff:
            raise ValueError(f"cannot resume from {resume}: the recipe differs in {diff} (this run, checkpoint); "
                             "resume with the checkpoint's settings or start a new run")
        if ckpt.get("data_fingerprint") != self.data.fingerprint:
            raise ValueError(f"cannot resume from {resume}: it was trained on data {ckpt.get('data_fingerprint')!r}, "
                             f"this run has {self.data.fingerprint!r} ({self.data.source})")
        load_state_into(self.raw, ckpt["model"], checkpoint_model_name=ckpt["model_name"], source=str(resume))
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["scheduler"], strict=not cfg.fit_budget)  # fit_budget: keep the plan
        if self.ema is not None and ckpt.get("ema"):
            self.ema.load_state_dict(ckpt["ema"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.history, self.best_acc = list(ckpt["history"]), float(ckpt["best_val_acc"])
        self.start_epoch = int(ckpt["epoch"])
        restore_rng_state(ckpt["rng"])
        self.log.write(f"resumed from {resume} after epoch {self.start_epoch} (best val_acc {self.best_acc:.4f})")
        return ckpt


def build_run(cfg: TrainConfig, data, info, log: TrainLog, model: nn.Module | None = None) -> Run:
    """Threads and TF32, the teacher (when distilling), data (in memory, uint8, on the device), model, optimiser,
    schedule, precision, EMA, augmentation: everything :func:`fer_lib.train.train` trains with, for the process
    ``info`` (a :class:`fer_lib.train.distributed.DistInfo`; with ``world_size > 1`` the model is wrapped in
    ``DistributedDataParallel``, so the process group must be up).

    Args:
        cfg: the recipe.
        data: a :class:`fer_lib.data.FERData`; ``None`` loads what ``cfg`` names.
        info: this process's rank, world size and device.
        log: where the run's lines go (``TrainLog(enabled=False, ...)`` writes nothing).
        model: train this module instead of building ``cfg.model``.

    Raises:
        ValueError: the training split gives no batch.
    """
    device = info.device
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
        # the drop-last rule that fer_lib.train.schedule.steps_per_epoch counts with
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
    return Run(cfg, info, log, data, train_split, val_split, batches_for, steps_per_epoch, raw, net, optimizer,
               schedule, precision, scaler, ema, weight,
               Augment(AugmentConfig.from_dict(cfg.augment_overrides)) if cfg.augment else None,
               teacher=teacher, params=list(raw.parameters()))


def same_folder(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def check_run_folder(cfg: TrainConfig, resume=None) -> None:
    """Refuse (``ValueError``) a run whose folder ``cfg.out_dir/cfg.name`` holds checkpoints of an earlier run
    that it would replace: a new run, or one resumed from a checkpoint in another folder, without
    ``cfg.overwrite``. Resuming in the checkpoint's own folder continues that run and is never refused here.
    :func:`~fer_lib.train.train` checks this before its first step; the CLI also calls it before loading any data."""
    run_dir = Path(cfg.out_dir) / cfg.name
    resume = resume if resume is not None else cfg.resume
    if cfg.overwrite or (resume is not None and same_folder(Path(resume).parent, run_dir)):
        return
    existing = [p.name for p in (run_dir / "best.pt", run_dir / "last.pt") if p.exists()]
    if existing:
        raise ValueError(
            f"run folder {display_path(run_dir)} already holds {' and '.join(existing)} of an earlier run; "
            f"pass --name with a new name, --resume {display_path(run_dir / 'last.pt')} to continue it, or "
            "--overwrite to replace it (its files are replaced only when this run's first epoch is written)")


def write_json(path: Path, obj) -> None:
    """Write ``obj`` as JSON, atomically (a temporary file, then renamed over ``path``)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def prepare_run_folder(run_dir: Path, cfg: TrainConfig) -> None:
    """Create ``run_dir``, remove the temporary files a process killed while writing left there, and write the
    recipe (``config.json``). Checkpoints of an earlier run stay until this run's first epoch replaces them."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for tmp in run_dir.glob(".*.tmp-*"):  # left by a process killed while writing
        tmp.unlink(missing_ok=True)
    write_json(run_dir / "config.json", cfg.to_dict())


def carry_best(run: Run, resume, ckpt: dict) -> None:
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
