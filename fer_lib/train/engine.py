"""The training loop: one function, :func:`train`, returning a history that :func:`plot_history` draws.

Per step (all on the device, no per-image python work)::

    uint8 batch ──/255──> Augment ──> mixup/cutmix (soft targets) ──> normalize ──> model (autocast)
        ──> CE(logits, label smoothing, class weights) + aux_weight * mean CE(aux_logits)
        ──> finite check ──> backward (GradScaler for fp16) ──> clip ──> step (lr from the schedule) ──> EMA

Per epoch: validation with the EMA weights (when on), atomic ``last.pt`` and (when validation accuracy improved)
``best.pt``, ``history.json``. Every epoch re-seeds from ``(seed, epoch, rank)`` and the data order comes from
``TensorBatches.set_epoch``, so ``resume`` repeats an uninterrupted run exactly.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from fer_lib import NUM_CLASSES
from fer_lib.paths import display_path
from fer_lib.train import distributed as D
from fer_lib.train import setup as S
from fer_lib.train.checkpoint import (
    FORMAT,
    capture_rng_state,
    load_checkpoint,
    load_state_into,
    restore_rng_state,
    save_checkpoint,
)
from fer_lib.train.config import TrainConfig
from fer_lib.train.ema import ModelEMA
from fer_lib.train.progress import TrainLog
from fer_lib.train.schedule import WarmupCosineSchedule
from fer_lib.train.steps import training_loss, validate

HISTORY_KEYS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_sec", "images")


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        history: one dict per finished epoch with :data:`HISTORY_KEYS` (+ ``"partial"`` when the time budget
            cut the epoch short).
        best_path / last_path: the checkpoints (``None`` when no epoch finished).
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
        resume: a checkpoint to continue from (overrides ``cfg.resume``).
        on_epoch_end: called as ``fn(epoch_index, history_row)`` after each epoch's checkpoints are written.

    Returns:
        A :class:`TrainResult`.

    Raises:
        FloatingPointError: the loss became NaN/inf (names epoch and step; no checkpoint of that epoch is written).
        ValueError: resuming with a different recipe or different data (names what differs).
    """
    from fer_lib.data import Augment, AugmentConfig, TensorBatches, mixup_cutmix, normalize

    t_start = time.perf_counter()
    resume = resume if resume is not None else cfg.resume
    info = D.init_distributed(cfg.device)
    device = info.device
    log = TrainLog(enabled=info.is_main, progress=progress, log_every=cfg.log_every)
    if cfg.num_threads and device.type == "cpu":
        torch.set_num_threads(cfg.num_threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not cfg.deterministic
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True

    # ---- data (in memory, uint8) ------------------------------------------------------------------------------
    if data is None:
        data = S.load_training_data(cfg)
    train_split, val_split = S.select_splits(cfg, data)
    kind = "SYNTHETIC faces (not FER2013)" if data.synthetic else "FER2013"
    log.write(f"data: {kind}: {display_path(data.source)} | train {train_split.name} {len(train_split)} images, "
              f"val {val_split.name} {len(val_split)} images | device {device} x{info.world_size}")
    train_images, train_labels = train_split.images, train_split.labels
    weight = None
    if cfg.class_balance == "loss":
        weight = S.class_weights(train_labels, cfg.class_balance_power).to(device)

    # Moved to the device once (all of FER2013 is 83 MB as uint8); TensorBatches then only indexes it each epoch.
    dev_images, dev_labels = train_images.to(device), train_labels.to(device)

    def batches_for(epoch: int):
        images, labels = dev_images, dev_labels
        if cfg.class_balance == "sampler":
            idx = S.balanced_indices(train_labels, cfg.class_balance_power, S.epoch_seed(cfg.seed, epoch)).to(device)
            images, labels = images[idx], labels[idx]
        per_rank = len(images) // info.world_size
        tb = TensorBatches(images, labels, cfg.batch_size, shuffle=True, drop_last=per_rank > cfg.batch_size,
                           seed=cfg.seed, device=device, rank=info.rank, world_size=info.world_size)
        tb.set_epoch(epoch)
        return tb

    steps_per_epoch = len(batches_for(0))
    if steps_per_epoch == 0:
        raise ValueError(f"no training batches: {len(train_split)} images for batch size {cfg.batch_size}")

    # ---- model, EMA, optimiser, schedule, precision --------------------------------------------------------------
    S.seed_everything(cfg.seed)
    raw = model if model is not None else S.build_model(cfg)
    raw = raw.to(device)
    if cfg.channels_last:
        raw = raw.to(memory_format=torch.channels_last)
    model_name, model_config = S.model_identity(raw)
    optimizer = S.build_optimizer(raw, cfg)
    total = cfg.epochs * steps_per_epoch
    schedule = WarmupCosineSchedule(optimizer, total, min(total, round(cfg.warmup_epochs * steps_per_epoch)),
                                    cfg.min_lr_ratio)
    precision = S.precision_for(cfg.amp, device)
    scaler = torch.amp.GradScaler(device.type) if precision.use_scaler else None  # fp16 (CUDA); tests run it on CPU
    augment = Augment(AugmentConfig.from_dict(cfg.augment_overrides)) if cfg.augment else None
    mixing = cfg.mix_prob > 0 and (cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0)

    net: nn.Module = raw
    if info.enabled:  # DDP broadcasts rank 0's weights here, so everything below starts identical on all ranks
        net = nn.parallel.DistributedDataParallel(raw, device_ids=[device.index] if device.type == "cuda" else None)
    ema = ModelEMA(raw, cfg.ema_decay) if cfg.ema else None

    run_dir = Path(cfg.out_dir) / cfg.name
    best_path, last_path = run_dir / "best.pt", run_dir / "last.pt"
    history: list[dict] = []
    best_acc, start_epoch = -1.0, 0
    if resume is not None:
        ckpt = load_checkpoint(resume, map_location=device)
        diff = cfg.recipe_diff(ckpt.get("train_config") or {})
        if diff:
            raise ValueError(f"cannot resume from {resume}: the recipe differs in {diff} (this run, checkpoint); "
                             "resume with the checkpoint's settings or start a new run")
        if ckpt.get("data_fingerprint") != data.fingerprint:
            raise ValueError(f"cannot resume from {resume}: it was trained on data {ckpt.get('data_fingerprint')!r}, "
                             f"this run has {data.fingerprint!r} ({data.source})")
        load_state_into(raw, ckpt["model"], checkpoint_model_name=ckpt["model_name"], source=str(resume))
        optimizer.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt["scheduler"], strict=not cfg.fit_budget)  # fit_budget: keep the fitted plan
        if ema is not None and ckpt.get("ema"):
            ema.load_state_dict(ckpt["ema"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        history, best_acc, start_epoch = list(ckpt["history"]), float(ckpt["best_val_acc"]), int(ckpt["epoch"])
        restore_rng_state(ckpt["rng"])
        log.write(f"resumed from {resume} after epoch {start_epoch} (best val_acc {best_acc:.4f})")
    elif info.is_main:
        for stale in (best_path, last_path):
            stale.unlink(missing_ok=True)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        for tmp in run_dir.glob(".*.tmp-*"):  # left by a process killed while writing
            tmp.unlink(missing_ok=True)
        _write_json(run_dir / "config.json", cfg.to_dict())

    if cfg.compile:
        net = torch.compile(net)

    def checkpoint(epoch_done: int, partial: bool) -> dict:
        return {
            "format": FORMAT, "model_name": model_name, "model_config": model_config,
            "model": raw.state_dict(), "ema": ema.state_dict() if ema else None,
            "optimizer": optimizer.state_dict(), "scheduler": schedule.state_dict(),
            "scaler": scaler.state_dict() if scaler else None, "epoch": epoch_done, "partial": partial,
            "history": history, "best_val_acc": best_acc, "rng": capture_rng_state(),
            "data_fingerprint": data.fingerprint, "data_source": data.source, "synthetic": bool(data.synthetic),
            "train_config": cfg.to_dict(), "world_size": info.world_size,
        }

    budget_s = cfg.max_minutes * 60 if cfg.max_minutes else math.inf
    if cfg.fit_budget:  # the budget covers the whole run: a resumed process gets what the earlier ones left
        budget_s -= sum(h["seconds"] for h in history)
    stop_reason = None

    def planned_epochs() -> int:  # cfg.epochs, unless fit_budget re-planned the run
        return math.ceil(schedule.total_steps / steps_per_epoch)

    recent_train: list[float] = []  # training seconds of this process's epochs (fit_budget uses the last 3)
    log.start(planned_epochs(), start_epoch)
    epoch = start_epoch - 1
    try:
        while epoch + 1 < planned_epochs():
            epoch += 1
            n_epochs = planned_epochs()
            epoch_times = [h["seconds"] for h in history[start_epoch:]]
            elapsed = time.perf_counter() - t_start
            if not cfg.fit_budget and epoch_times and elapsed + sum(epoch_times) / len(epoch_times) > budget_s:
                stop_reason = (f"time budget: {elapsed / 60:.1f} of {cfg.max_minutes} minutes used, the next epoch "
                               f"would not fit; stopped after epoch {epoch} of {n_epochs}")
                break
            t0 = time.perf_counter()
            S.seed_everything(S.epoch_seed(cfg.seed, epoch, info.rank))
            batches = batches_for(epoch)
            net.train()
            log.start_epoch(epoch, n_epochs, steps_per_epoch)
            sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
            partial = False
            for step, (images, labels) in enumerate(batches):
                x01 = images.unsqueeze(1).float().div_(255.0) if images.ndim == 3 else images.float().div_(255.0)
                if augment is not None:
                    x01 = augment(x01)
                target = labels
                if mixing:
                    x01, target = mixup_cutmix(x01, labels, NUM_CLASSES, cfg.mixup_alpha, cfg.cutmix_alpha,
                                               cfg.mix_prob)
                x = normalize(x01)
                if cfg.in_chans == 3:
                    x = x.expand(-1, 3, -1, -1)
                if cfg.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                lr = schedule.step()
                with precision.autocast():
                    output = net(x)
                loss, logits = training_loss(output, target, cfg, weight)
                stats = torch.stack([loss.detach().float() * len(labels),
                                     (logits.detach().argmax(1) == labels).sum().float()])
                loss_sum, correct = stats.tolist()  # one device sync per step
                ok = D.all_true(math.isfinite(loss_sum), info, device)
                if not ok:
                    raise FloatingPointError(
                        f"non-finite training loss ({loss_sum / len(labels)}) at epoch {epoch + 1}, step {step + 1} "
                        f"(lr {lr:.3g}); no checkpoint of this epoch was written. Lower --lr, keep --grad-clip on, "
                        "or use amp 'bf16'/'off'")
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                else:
                    loss.backward()
                if cfg.grad_clip:
                    nn.utils.clip_grad_norm_(raw.parameters(), cfg.grad_clip)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                if ema is not None:
                    ema.update(raw)
                sums += torch.tensor([loss_sum, correct, len(labels)], dtype=torch.float64, device=device)
                log.step(epoch, n_epochs, step, steps_per_epoch, loss_sum / len(labels), correct / len(labels), lr)
                if schedule.step_count >= schedule.total_steps and step + 1 < steps_per_epoch:
                    partial = True  # the budget-fitted plan ends inside this epoch
                    break
                if budget_s < math.inf and step + 1 < steps_per_epoch:
                    over = time.perf_counter() - t_start > budget_s
                    if not D.all_true(not over, info, device):
                        partial = True
                        stop_reason = (f"time budget: {cfg.max_minutes} minutes reached during epoch {epoch + 1} "
                                       f"after {step + 1} of {steps_per_epoch} steps; stopped early")
                        break
            train_time = time.perf_counter() - t0
            D.all_reduce_sum(sums, info)
            D.average_buffers(raw, info)
            if ema is not None:
                D.average_buffers(ema.module, info)
            eval_model = ema.module if ema is not None else raw
            val_loss, val_acc = validate(eval_model, val_split.images, val_split.labels, cfg, device, precision,
                                          info)
            row = {
                "epoch": epoch + 1, "train_loss": sums[0].item() / sums[2].item(),
                "train_acc": sums[1].item() / sums[2].item(), "val_loss": val_loss, "val_acc": val_acc,
                "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - t0,
                "images_per_sec": sums[2].item() / train_time, "images": int(sums[2].item()),
            }
            if partial:
                row["partial"] = True
            recent_train.append(train_time)
            # re-fit after epoch 1 and then while more than one epoch of the plan is left (a re-fit inside the last
            # epoch would squeeze the end of the cosine into a few steps; the hard budget guards that epoch)
            if cfg.fit_budget and not partial and (
                    epoch == 0 or schedule.total_steps - schedule.step_count > steps_per_epoch):
                before = schedule.total_steps
                train_s = sum(recent_train[-3:]) / len(recent_train[-3:])
                _fit_plan_to_budget(schedule, train_s / steps_per_epoch, row["seconds"] - train_time, steps_per_epoch,
                                    budget_s, time.perf_counter() - t_start, info, device)
                if epoch == start_epoch or abs(schedule.total_steps - before) >= steps_per_epoch / 4:
                    log.set_epochs(planned_epochs())
                    log.write(f"fit_budget: planned {schedule.total_steps} steps "
                              f"({schedule.total_steps / steps_per_epoch:.2f} epochs) to end within {cfg.max_minutes} "
                              f"minutes (re-fitted after each epoch from the measured epoch times)")
            history.append(row)
            improved = val_acc > best_acc
            best_acc = max(best_acc, val_acc)
            if info.is_main:
                state = checkpoint(epoch + 1, partial)
                save_checkpoint(state, last_path)
                if improved:
                    save_checkpoint(state, best_path)
                _write_json(run_dir / "history.json", history)
            D.barrier(info)
            log.end_epoch(row, planned_epochs(), best_acc)
            if on_epoch_end is not None:
                on_epoch_end(epoch, row)
            if partial:
                break
    finally:
        log.close()
    if stop_reason:
        log.write(f"note: {stop_reason}")
    final = ema.module if ema is not None else raw
    final.eval()
    have = bool(history)
    return TrainResult(history, best_path if have else None, last_path if have else None, final, run_dir,
                       stop_reason, data.source, bool(data.synthetic))


def _fit_plan_to_budget(schedule: WarmupCosineSchedule, step_s: float, val_s: float, steps_per_epoch: int,
                        budget_s: float, elapsed_s: float, info, device: torch.device) -> None:
    """Re-plan ``schedule`` so that the run ends within the budget (``TrainConfig.fit_budget``).

    Each later step is assumed to cost ``step_s`` (the mean over the last three epochs) plus its share of one
    validation pass (``val_s``) per epoch; 3% of the budget is held back for checkpoint writes and timing noise. A
    machine that slows down (or speeds up) mid-run shortens (or lengthens) the rest of the plan, and the learning
    rate's cosine continues from its current phase (``WarmupCosineSchedule.replan``). Ranks agree on the mean plan.
    """
    val_s = max(0.0, val_s)
    remaining = budget_s * 0.97 - elapsed_s - val_s  # the last (possibly partial) epoch validates too
    extra = max(0, int(remaining / (step_s + val_s / steps_per_epoch)))
    plan = torch.tensor([float(schedule.step_count + extra)], dtype=torch.float64, device=device)
    D.all_reduce_sum(plan, info)
    schedule.replan(int(plan.item() / info.world_size))


def plot_history(history: list[dict] | TrainResult, title: str | None = None):
    """Loss, accuracy and learning rate per epoch (train vs validation) as one matplotlib figure.

    The training loss includes label smoothing and the auxiliary-head losses (and mixup/CutMix targets), so it
    sits *above* the validation loss (plain NLL) early on; that is not a bug. Training accuracy is measured on
    augmented batches with the live weights, validation with the EMA weights.

    Args:
        history: ``TrainResult.history`` (or the result itself, or the loaded ``history.json``).
        title: figure title.

    Returns:
        ``matplotlib.figure.Figure`` with three axes, made without pyplot: a notebook shows it once (as the cell's
        value), nothing stays open in pyplot's figure list, and ``fig.savefig(path)`` writes it.
    """
    from matplotlib.figure import Figure

    rows = history.history if isinstance(history, TrainResult) else list(history)
    if not rows:
        raise ValueError("plot_history: the history is empty (no epoch finished)")
    ep = [h["epoch"] for h in rows]
    fig = Figure(figsize=(13, 3.6))
    axes = fig.subplots(1, 3)
    for ax, key, label in ((axes[0], "loss", "loss"), (axes[1], "acc", "accuracy")):
        ax.plot(ep, [h[f"train_{key}"] for h in rows], "o-", label="train")
        ax.plot(ep, [h[f"val_{key}"] for h in rows], "s-", label="validation")
        ax.set(xlabel="epoch", ylabel=label, title=label)
        ax.grid(alpha=0.3)
        ax.legend()
    best = max(rows, key=lambda h: h["val_acc"])
    axes[1].annotate(f"best {best['val_acc']:.3f}", (best["epoch"], best["val_acc"]), textcoords="offset points",
                     xytext=(0, -14), ha="center", fontsize=8)
    axes[2].plot(ep, [h["lr"] for h in rows], "o-", color="tab:green")
    axes[2].set(xlabel="epoch", ylabel="learning rate (end of epoch)", title="learning rate")
    axes[2].grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
