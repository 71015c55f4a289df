"""Two sanity checks of a training loop, run with the trainer's own loss, optimiser and augmentation.

* :func:`overfit_one_batch`: train on one fixed batch until it is memorised. A correct loop drives the loss towards
  0 (and the batch accuracy to 1) within a few dozen steps; when it does not, something between the data and the
  optimiser step is broken (labels out of line with images, a loss that ignores the logits, a learning rate of 0,
  frozen weights). Karpathy, "A Recipe for Training Neural Networks" (2019,
  http://karpathy.github.io/2019/04/25/recipe/), lists it among the first checks of a new training skeleton.
* :func:`lr_range_test`: Smith's learning-rate range test ("Cyclical Learning Rates for Training Neural Networks",
  WACV 2017, https://arxiv.org/abs/1506.01186): train while the learning rate grows from tiny to huge, record the
  smoothed loss, stop once it diverges, put the weights back, and read a learning rate off the curve. Smith raised
  the rate linearly over a few epochs; this follows fastai's ``lr_find``, which raises it exponentially over about
  a hundred steps.

Each step is the trainer's step (:func:`fer_lib.train.train`): :func:`~fer_lib.train.steps.forward_for_loss` and
:func:`~fer_lib.train.steps.training_loss` (label smoothing, auxiliary heads), the optimiser of
:func:`~fer_lib.train.setup.build_optimizer` (AdamW or SGD, no weight decay on biases and norms), gradient
clipping at ``cfg.grad_clip``. Unlike ``train`` they run in fp32 without autocast, EMA, schedule, teacher,
checkpoints or DDP, on the model's own device: a few seconds on a CPU with a small model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import torch
from torch import nn

from fer_lib.data import Augment, AugmentConfig, mixup_cutmix, normalize, to_unit
from fer_lib.inference.models import model_device, model_in_chans, model_num_classes
from fer_lib.train.config import TrainConfig
from fer_lib.train.setup import build_optimizer
from fer_lib.train.steps import forward_for_loss, training_loss

__all__ = ["lr_range_test", "overfit_one_batch"]


def _int_at_least(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _number(name: str, value, low: float, high: float = math.inf, *, low_open: bool = True) -> float:
    """``value`` as a float in ``(low, high)`` (``[low, high)`` with ``low_open=False``), else a ValueError."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and value < high
    if not ok:
        where = f"{'(' if low_open else '['}{low:g}, {high:g})"
        raise ValueError(f"{name} must be a finite number in {where}, got {value!r}")
    return float(value)


def _recipe(model, cfg) -> TrainConfig:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if cfg is not None and not isinstance(cfg, TrainConfig):
        raise ValueError(f"cfg must be a fer_lib.train.TrainConfig or None, got {type(cfg).__name__}")
    return cfg if cfg is not None else TrainConfig()


def _batch(images, labels, model: nn.Module, where: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    """Checked ``(x01 float [B, 1, H, W], labels int64 [B])`` on the model's device."""
    if not (isinstance(images, torch.Tensor) and images.dtype == torch.uint8
            and (images.ndim == 3 or (images.ndim == 4 and images.shape[1] == 1)) and len(images) > 0):
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{where}images must be uint8 faces [B, 48, 48] or [B, 1, 48, 48] with B >= 1 (as stored "
                         f"in FERSplit.images), got {got}")
    k = model_num_classes(model)
    if not (isinstance(labels, torch.Tensor) and labels.ndim == 1 and len(labels) == len(images)
            and not labels.is_floating_point() and not labels.is_complex() and labels.dtype != torch.bool):
        got = f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"{where}labels must be an integer tensor [B] with one label per image (B = "
                         f"{len(images)}), got {got}")
    if int(labels.min()) < 0 or int(labels.max()) >= k:
        raise ValueError(f"{where}labels must lie in [0, {k - 1}] (the model has {k} classes), got "
                         f"{int(labels.min())}..{int(labels.max())}")
    device = model_device(model)
    return to_unit(images, device=device), labels.to(device, torch.int64)


def _model_input(x01: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Normalised model input, the gray channel repeated for a 3-channel model (as the trainer does)."""
    x = normalize(x01)
    return x.expand(-1, 3, -1, -1) if in_chans == 3 else x


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, x, target, cfg: TrainConfig) -> float:
    """One optimiser step as the trainer takes it (fp32); returns the step's loss. No step on a non-finite loss."""
    loss, _ = training_loss(forward_for_loss(model, model, x, cfg), target, cfg, None)
    value = float(loss.detach())
    if math.isfinite(value):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
    return value


def overfit_one_batch(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, steps: int = 100,
                      lr: float = 1e-3, cfg: TrainConfig | None = None) -> list[float]:
    """Train ``model`` (in place) on one fixed batch and return the loss of every step.

    The recipe is ``cfg``'s (default :class:`TrainConfig`: AdamW) with what would hide memorising taken out: no
    augmentation, mixing, label smoothing (it puts the loss's floor above 0), weight decay or teacher, and the
    learning rate held at ``lr``. A correct loop ends near 0 (``losses[-1]`` a small fraction of ``losses[0]``).

    Args:
        model: any classifier on ``[B, C, 48, 48]`` (logits or ``ModelOutput``), on its device; its weights change.
        images: ``uint8 [B, 48, 48]`` (or ``[B, 1, 48, 48]``) faces, e.g. ``split.images[:16]``.
        labels: ``int64 [B]`` labels in ``[0, classes)``.
        steps: optimiser steps (>= 1).
        lr: the constant learning rate (> 0).
        cfg: the recipe to take the loss (auxiliary heads), optimiser and gradient clipping from.

    Returns:
        ``steps`` losses, in order (fewer when a loss was not finite: the last entry is then ``nan`` or ``inf``).
        The model is left in the train/eval mode it had.

    Raises:
        ValueError: a bad argument (the message names it).
    """
    base = _recipe(model, cfg)
    steps = _int_at_least("steps", steps, 1)
    lr = _number("lr", lr, 0.0)
    x01, y = _batch(images, labels, model)
    recipe = base.replace(lr=lr, label_smoothing=0.0, weight_decay=0.0, augment=False, mix_prob=0.0,
                          kd_weight=0.0, teacher=None)
    x = _model_input(x01, model_in_chans(model))
    optimizer = build_optimizer(model, recipe)
    was_training, losses = model.training, []
    model.train()
    try:
        for _ in range(steps):
            losses.append(_step(model, optimizer, x, y, recipe))
            if not math.isfinite(losses[-1]):
                break
    finally:
        model.train(was_training)
    return losses


def _pairs(batches: Iterable) -> Iterator:
    """``batches`` again and again (a list or a ``TensorBatches`` starts over; a one-shot iterator, or an empty
    iterable, ends)."""
    while True:
        empty = True
        for pair in batches:
            empty = False
            yield pair
        if empty or iter(batches) is batches:
            return


def lr_range_test(model: nn.Module, batches, *, start_lr: float = 1e-6, end_lr: float = 1.0, steps: int = 100,
                  cfg: TrainConfig | None = None, smoothing: float = 0.98, diverge_factor: float = 4.0) -> dict:
    """Smith's learning-rate range test: ``steps`` training steps at ``lr_i = start_lr * (end_lr / start_lr) **
    (i / (steps - 1))``, then the model's initial weights are put back.

    Each step is ``cfg``'s (default :class:`TrainConfig`): its augmentation, mixup/CutMix, loss, optimiser (its
    weight decay) and gradient clipping, without a teacher. The loss is smoothed with an exponential moving average
    (``smoothing``) with bias correction, as fastai's ``lr_find`` does; the test stops early when the smoothed loss
    exceeds ``diverge_factor`` times its lowest value so far, or when a loss is not finite.

    Args:
        model: any classifier on ``[B, C, 48, 48]`` on its device; its weights (state dict) and train/eval mode
            are restored afterwards, bit for bit, also after an error.
        batches: an iterable of ``(uint8 images [B, 48, 48], int64 labels [B])`` such as
            :class:`fer_lib.data.TensorBatches` (iterated again when it ends), or one ``(images, labels)`` pair
            used at every step.
        start_lr, end_lr: the first and the last learning rate, ``0 < start_lr < end_lr``.
        steps: planned steps (>= 2).
        cfg: the recipe.
        smoothing: the moving average's weight of the past, in ``[0, 1)`` (0: no smoothing).
        diverge_factor: stop when the smoothed loss exceeds this multiple (> 1) of its minimum.

    Returns:
        ``lrs``, ``losses`` (smoothed) and ``raw_losses``, one per finished step; ``lr_min``, the lr of the lowest
        smoothed loss; ``lr_steepest``, ``lrs[j]`` for the ``j`` where the smoothed loss falls most in one step
        (``losses[j + 1] - losses[j]`` lowest); ``suggested_lr = lr_min / 10`` (fastai's ``minimum`` suggestion: an
        order of magnitude below the minimum, where the loss still falls), clamped into ``[start_lr, end_lr]``;
        ``stop_reason`` (``None`` when every step ran) and ``stopped_early``. The three lrs are ``None`` when no
        step had a finite loss.

    Raises:
        ValueError: a bad argument (the message names it), or ``batches`` yields nothing.
    """
    recipe = _recipe(model, cfg)
    steps = _int_at_least("steps", steps, 2)
    start_lr, end_lr = _number("start_lr", start_lr, 0.0), _number("end_lr", end_lr, 0.0)
    if not start_lr < end_lr:
        raise ValueError(f"start_lr ({start_lr:g}) must be below end_lr ({end_lr:g})")
    smoothing = _number("smoothing", smoothing, 0.0, 1.0, low_open=False)
    diverge_factor = _number("diverge_factor", diverge_factor, 1.0)
    if isinstance(batches, (tuple, list)) and len(batches) == 2 and all(isinstance(t, torch.Tensor) for t in batches):
        batches = [tuple(batches)]
    if not isinstance(batches, Iterable):
        raise ValueError(f"batches must be an iterable of (images, labels) pairs, got {type(batches).__name__}")
    augment = Augment(AugmentConfig.from_dict(recipe.augment_overrides)) if recipe.augment else None
    mixing = recipe.mix_prob > 0 and (recipe.mixup_alpha > 0 or recipe.cutmix_alpha > 0)
    in_chans, k = model_in_chans(model), model_num_classes(model)
    optimizer = build_optimizer(model, recipe)
    ratio = (end_lr / start_lr) ** (1.0 / (steps - 1))
    initial = {name: t.detach().clone() for name, t in model.state_dict().items()}
    was_training, source = model.training, _pairs(batches)
    lrs, losses, raw, avg, reason = [], [], [], 0.0, None
    model.train()
    try:
        for i in range(steps):
            pair = next(source, None)
            if pair is None:
                if i == 0:
                    raise ValueError("batches yielded no (images, labels) pair")
                reason = f"the batches ran out after {i} steps"
                break
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise ValueError(f"batches must yield (images, labels) pairs, got {type(pair).__name__}")
            x01, labels = _batch(*pair, model, where=f"batches, step {i}: ")
            target = labels
            if augment is not None:
                x01 = augment(x01)
            if mixing:
                x01, target = mixup_cutmix(x01, labels, k, recipe.mixup_alpha, recipe.cutmix_alpha, recipe.mix_prob)
            lr = start_lr * ratio**i
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = _step(model, optimizer, _model_input(x01, in_chans), target, recipe)
            if not math.isfinite(loss):
                reason = f"the loss was not finite ({loss}) at lr {lr:.3g}"
                break
            avg = smoothing * avg + (1.0 - smoothing) * loss
            lrs.append(lr)
            raw.append(loss)
            losses.append(avg / (1.0 - smoothing ** len(lrs)))
            if losses[-1] > diverge_factor * min(losses):
                reason = (f"diverged at lr {lr:.3g}: smoothed loss {losses[-1]:.3g} > {diverge_factor:g} x its "
                          f"minimum {min(losses):.3g}")
                break
    finally:
        model.load_state_dict(initial)
        model.train(was_training)
    lr_min = lr_steepest = suggested = None
    if lrs:
        lr_min = lrs[min(range(len(losses)), key=losses.__getitem__)]
        drops = [b - a for a, b in zip(losses, losses[1:])]
        lr_steepest = lrs[min(range(len(drops)), key=drops.__getitem__)] if drops else lrs[0]
        suggested = min(max(lr_min / 10.0, start_lr), end_lr)
    return {"lrs": lrs, "losses": losses, "raw_losses": raw, "lr_min": lr_min, "lr_steepest": lr_steepest,
            "suggested_lr": suggested, "stop_reason": reason, "stopped_early": reason is not None}
