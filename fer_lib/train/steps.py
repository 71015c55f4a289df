"""One training step's loss and the validation pass, apart from the loop so each can be read and tested alone."""

from __future__ import annotations

import torch
import torch.nn.functional as F

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


@torch.no_grad()
def validate(model, images, labels, cfg, device, precision, info) -> tuple[float, float]:
    """Mean NLL and accuracy over ``images`` (rank ``r`` takes every ``world_size``-th image; sums reduced).

    Runs :func:`fer_lib.inference.batched_logits` under the training precision and memory format; the sums stay
    on the device until the one read at the end."""
    from fer_lib.inference import batched_logits

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
