"""The training loop: :func:`train` reads top to bottom over four named steps.

``_setup`` (the process: determinism, DDP, the log; then :func:`fer_lib.train.run.build_run`: data, model,
optimiser, schedule, precision, EMA) -> ``_start`` (a new run folder or a resumed checkpoint) -> per epoch
``_train_epoch`` then ``_end_epoch`` (validation, budget re-plan, checkpoints). Around the loop, in the files a
reader looks for them in:

- ``fer_lib/train/run.py``: :class:`~fer_lib.train.run.Run`, everything one process holds, how it is built,
  resumed and checkpointed, and the run folder's rules;
- ``fer_lib/train/steps.py``: one training step (:func:`~fer_lib.train.steps.train_step`) and the validation pass;
- ``fer_lib/train/stats.py``: the steps' statistics, kept on the device until the loop reads them in batches;
- ``fer_lib/train/signals.py``: SIGTERM turned into a stop at a step boundary (:class:`TrainingStopped`);
- ``fer_lib/train/budget.py``: the time budget (:class:`~fer_lib.train.budget.TimeBudget`).

Per step (all on the device, no per-image python work, and nothing that makes the host wait for the device)::

    uint8 batch ──/255──> Augment ──> mixup/cutmix (soft targets) ──> normalize ──> model (autocast)
        ──> CE(logits, label smoothing, class weights) + aux_weight * mean CE(aux_logits)
        [kd_weight = w > 0: (1 - w) * that + w * T^2 * KL(teacher || student), the frozen teacher run in
         eval mode under no_grad on the same normalised batch: fer_lib/train/distill.py]
        ──> backward (GradScaler for fp16) ──> clip ──> step (lr from the schedule; fused AdamW on CUDA) ──> EMA

Every ``log_every`` steps (else :data:`fer_lib.train.stats.READ_EVERY`) and at the epoch's end the loop reads the
steps' loss and accuracy from the device in one transfer: the progress line and the finite-loss check run there.

Per epoch: validation with the EMA weights (when on), atomic ``last.pt`` (the full state, for ``resume``) and
(when validation accuracy improved) ``best.pt`` (weights and EMA weights only, for evaluation), ``history.json``.
Every epoch re-seeds from ``(seed, epoch, rank)`` and the data order comes from ``TensorBatches.set_epoch``, so
``resume`` repeats an uninterrupted run exactly.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from fer_lib.paths import display_path
from fer_lib.train import distributed as D
from fer_lib.train import setup as S
from fer_lib.train.budget import TimeBudget
from fer_lib.train.checkpoint import inference_state, save_checkpoint
from fer_lib.train.config import TrainConfig
from fer_lib.train.progress import TrainLog
from fer_lib.train.run import (
    Run,
    build_run,
    carry_best,
    check_run_folder,
    prepare_run_folder,
    same_folder,
    write_json,
)
from fer_lib.train.signals import StopOnSignal, TrainingStopped
from fer_lib.train.stats import READ_EVERY, EpochPart, PendingSteps
from fer_lib.train.steps import train_step, validate

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
    with StopOnSignal() as stop:
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


def _setup(cfg: TrainConfig, data, progress: bool, model: nn.Module | None) -> Run:
    """The process (determinism switches, then DDP when ``torchrun`` started it) and its log, then everything
    :func:`~fer_lib.train.run.build_run` builds: the teacher (when distilling), data (in memory, uint8, on the
    device), model, optimiser, schedule, precision, EMA."""
    # before init_distributed, this process's first CUDA work (CUBLAS_WORKSPACE_CONFIG must precede cuBLAS)
    S.configure_determinism(cfg.deterministic, D.resolve_device(cfg.device))
    info = D.init_distributed(cfg.device)
    log = TrainLog(enabled=info.is_main, progress=progress, log_every=cfg.log_every)
    return build_run(cfg, data, info, log, model)


def _start(run: Run, resume, t_start: float) -> None:
    """Resume from a checkpoint (same recipe and data, or a ``ValueError`` naming what differs), or start a new
    run in a folder that holds no checkpoints of an earlier run (unless ``cfg.overwrite``: they are then replaced,
    atomically, when this run's first epoch is written, never deleted before)."""
    cfg, run_dir = run.cfg, run.run_dir
    check_run_folder(cfg, resume)
    ckpt = run.resume_from(resume) if resume is not None else None
    if run.info.is_main:
        prepare_run_folder(run_dir, cfg)
    if ckpt is not None:
        if same_folder(Path(resume).parent, run_dir):
            run.has_best = (run_dir / "best.pt").is_file()
        elif run.info.is_main:
            carry_best(run, resume, ckpt)
    run.budget = TimeBudget(cfg.max_minutes, cfg.fit_budget, sum(h["seconds"] for h in run.history), t_start)
    run.log.start(run.planned_epochs(), run.start_epoch)


def _train_epoch(run: Run, epoch: int, stop: StopOnSignal) -> EpochPart:
    """One pass over the training batches (or up to the budget / the plan's end).

    Nothing inside a step waits for the device: the loss and accuracy of each step stay on the device and are read
    every ``cfg.log_every`` steps (:data:`~fer_lib.train.stats.READ_EVERY` when 0) and at the end of the epoch, in
    one transfer (:func:`_read_steps`). That read also runs the finite-loss check, so a NaN/inf loss is reported
    (with the epoch, step and learning rate where it *first* appeared) at most that many steps late; the optimiser
    steps in between change only the weights in memory, as the error leaves no checkpoint of the epoch. Under DDP
    the ranks agree on that check at each read, and a time budget is checked at the reads (without DDP: after
    every step, host-side only).
    """
    cfg, info, device = run.cfg, run.info, run.device
    t0 = time.perf_counter()
    S.seed_everything(S.epoch_seed(cfg.seed, epoch, info.rank))
    batches = run.batches_for(epoch)
    n_epochs, steps = run.planned_epochs(), run.steps_per_epoch
    read_every = cfg.log_every if cfg.log_every > 0 else READ_EVERY
    run.net.train()
    run.log.start_epoch(epoch, n_epochs, steps)
    totals = [0.0, 0.0, 0.0]  # loss sum, correct, count: float64 sums of the read statistics, in step order
    pending = PendingSteps()
    partial = False
    for step, (images, labels) in enumerate(batches):
        lr, stats = train_step(run, images, labels)
        pending.add(step, lr, len(labels), stats)
        run.log.advance()
        at_read = (step + 1) % read_every == 0
        if at_read:
            _read_steps(run, epoch, n_epochs, pending, totals)
        if stop.signal is not None:
            raise TrainingStopped(
                f"stopped by signal {stop.name} during epoch {epoch + 1}, step {step + 1}: "
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
        _read_steps(run, epoch, n_epochs, pending, totals)
    train_s = time.perf_counter() - t0
    sums = D.all_reduce_sum(torch.tensor(totals, dtype=torch.float64, device=device), info).tolist()
    return EpochPart(sums[0] / sums[2], sums[1] / sums[2], int(sums[2]), t0, train_s, partial)


def _read_steps(run: Run, epoch: int, n_epochs: int, pending: PendingSteps, totals: list[float]) -> None:
    """Read the pending steps' statistics in one transfer: check that every loss is finite (all ranks agree),
    add them to ``totals`` (loss sum, correct, count; in step order), show their means, and clear ``pending``."""
    info, device = run.info, run.device
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
    run.log.step(epoch, n_epochs, pending.steps[-1], run.steps_per_epoch, sum(r[0] for r in rows) / n,
                 sum(r[1] for r in rows) / n, pending.lrs[-1])
    pending.clear()


def _end_epoch(run: Run, epoch: int, part: EpochPart) -> dict:
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
        write_json(run.run_dir / "history.json", run.history)
    D.barrier(info)
    run.log.end_epoch(row, run.planned_epochs(), run.best_acc)
    return row
