"""One training step (:func:`train_step`: input, forward, loss, :func:`optimizer_step`) and the validation pass,
apart from the loop so each can be read and tested alone; :func:`fer_lib.train.estimate_minutes` times the very
same step."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fer_lib import NUM_CLASSES
from fer_lib.data import mixup_cutmix, normalize
from fer_lib.inference import batched_logits
from fer_lib.train import distributed as D
from fer_lib.train.config import TrainConfig
from fer_lib.train.distill import distillation_loss


def wants_aux(model, cfg: TrainConfig) -> bool:
    """Whether the training step should ask ``model`` for auxiliary logits (``model(x, return_aux=True)``).

    Only models with a ``forward_train`` method (every :class:`fer_lib.models.SOTAResEmote`) take ``return_aux``;
    with ``cfg.aux_weight == 0`` the heads are not run at all (they cost time and would receive no gradient).
    """
    return cfg.aux_weight > 0 and hasattr(model, "forward_train")


def forward_for_loss(net, raw, x: torch.Tensor, cfg: TrainConfig):
    """The training forward pass: ``net(x, return_aux=True)`` when :func:`wants_aux` (through ``net``, so that a
    ``DistributedDataParallel`` wrapper sees the call), else ``net(x)``."""
    return net(x, return_aux=True) if wants_aux(raw, cfg) else net(x)


def logits_and_aux(output) -> tuple[torch.Tensor, tuple]:
    """Accept a ``ModelOutput(logits, aux_logits)`` (``forward_train``) or plain logits."""
    if hasattr(output, "logits"):
        return output.logits, tuple(getattr(output, "aux_logits", ()) or ())
    return output, ()


def training_loss(output, target: torch.Tensor, cfg: TrainConfig, weight: torch.Tensor | None,
                  teacher_logits: torch.Tensor | None = None):
    """Cross-entropy (hard labels ``[B]`` or soft targets ``[B, K]``) with label smoothing and class weights,
    plus ``cfg.aux_weight`` times the mean auxiliary-head loss. Returns ``(loss, logits)`` (loss in fp32).

    With ``teacher_logits`` (``[B, K]``, the teacher on the same batch) and ``cfg.kd_weight = w > 0``, that label
    loss is mixed with knowledge distillation (:func:`fer_lib.train.distill.distillation_loss`, Hinton et al.
    2015): ``(1 - w) * label_loss + w * T^2 * KL(teacher || student)`` at ``T = cfg.kd_temperature``, on the
    main logits only and without class weights. Without them the loss is exactly the label loss."""
    logits, aux = logits_and_aux(output)

    def ce(z):
        return F.cross_entropy(z.float(), target, weight=weight, label_smoothing=cfg.label_smoothing)

    loss = ce(logits)
    if aux and cfg.aux_weight > 0:
        loss = loss + cfg.aux_weight * torch.stack([ce(z) for z in aux]).mean()
    if teacher_logits is not None and cfg.kd_weight > 0:
        kd = distillation_loss(logits, teacher_logits, cfg.kd_temperature)
        loss = (1.0 - cfg.kd_weight) * loss + cfg.kd_weight * kd
    return loss, logits


def train_step(run, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, torch.Tensor]:
    """One optimiser step of ``run`` (a :class:`fer_lib.train.run.Run`) on a batch as the loop takes it::

        uint8 batch ──/255──> Augment ──> mixup/cutmix (soft targets) ──> normalize ──> model (autocast)
            ──> training_loss (+ the teacher's logits when distilling) ──> optimizer_step

    Nothing in it waits for the device.

    Returns:
        ``(lr, stats)``: the step's learning rate (from the schedule) and ``float32 [2]`` on the device,
        ``[loss * batch size, correct]`` (read later, in batches: :class:`fer_lib.train.stats.PendingSteps`).
    """
    cfg = run.cfg
    x01 = images.unsqueeze(1).float().div_(255.0) if images.ndim == 3 else images.float().div_(255.0)
    if run.augment is not None:
        x01 = run.augment(x01)
    target = labels
    if cfg.mix_prob > 0 and (cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0):
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
    stats = torch.stack([loss.detach().float() * len(labels), (logits.detach().argmax(1) == labels).sum().float()])
    optimizer_step(run, loss)
    return lr, stats


def optimizer_step(run, loss: torch.Tensor) -> None:
    """Backward (scaled for fp16), gradient clipping, optimiser step, EMA update (``run``: what
    :class:`fer_lib.train.run.Run` holds: ``optimizer``, ``scaler``, ``cfg.grad_clip``, ``params``, ``ema``, ``raw``)."""
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


@torch.no_grad()
def validate(model, images, labels, cfg, device, precision, info) -> tuple[float, float]:
    """Mean NLL and accuracy over ``images`` (rank ``r`` takes every ``world_size``-th image; sums reduced).

    Runs :func:`fer_lib.inference.batched_logits` under the training precision and memory format; the sums stay
    on the device until the one read at the end."""
    images, labels = images[info.rank :: info.world_size], labels[info.rank :: info.world_size]
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
    start = 0
    for logits in batched_logits(model, images, batch_size=cfg.eval_batch_size, device=device,
                                 autocast=precision.autocast, channels_last=cfg.channels_last):
        logits = logits[0]
        y = labels[start : start + len(logits)].to(device)
        start += len(logits)
        sums[0] += F.cross_entropy(logits.float(), y, reduction="sum").double()
        sums[1] += (logits.argmax(1) == y).sum()
        sums[2] += len(y)
    D.all_reduce_sum(sums, info)
    n = max(sums[2].item(), 1.0)
    return sums[0].item() / n, sums[1].item() / n
