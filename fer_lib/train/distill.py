"""Knowledge distillation: a frozen teacher's softened probabilities as a second training target.

Hinton et al. 2015 ("Distilling the Knowledge in a Neural Network", https://arxiv.org/abs/1503.02531): the
student matches the teacher's probabilities softened by a temperature ``T``, which say how much the teacher finds
a face *also* looks like each other emotion (soft targets carry more information per image than one label)::

    loss = (1 - w) * label_loss + w * T^2 * KL( softmax(teacher / T) || softmax(student / T) )

The ``T^2`` keeps the gradients of the soft term on the scale of the label term as ``T`` changes (the gradient of
the KL term shrinks as ``1 / T^2``). Beyer et al. 2022 ("Knowledge distillation: A good teacher is patient and
consistent", https://arxiv.org/abs/2106.05237) found that the teacher must see *exactly* the student's view of
each image, augmented and mixed ("consistent teaching"), not a fixed view computed in advance; so
:func:`fer_lib.train.train` runs the :class:`Teacher` on the very batch the student gets, at every step.

Switched on by ``TrainConfig.kd_weight > 0`` with ``TrainConfig.teacher`` (``--teacher``, ``--kd-weight``,
``--kd-temperature``); the mixing with the label loss is :func:`fer_lib.train.steps.training_loss`.
"""

from __future__ import annotations

import os
import time

import torch
import torch.nn.functional as F
from torch import nn

from fer_lib.inference.loading import load_model
from fer_lib.inference.models import logits_of, model_in_chans


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
                      ) -> torch.Tensor:
    """Hinton et al.'s soft-target loss ``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, batch mean.

    Args:
        student_logits: ``[B, K]``, the student's logits (any float dtype; computed in fp32).
        teacher_logits: ``[B, K]``, the teacher's logits or log probabilities (an
            :class:`fer_lib.inference.EnsembleModel` returns ``log`` of its members' mean probabilities; ``/ T``
            then softens that mean). A constant: no gradient flows into it (detached).
        temperature: ``T > 0``; 1 compares the plain probabilities, larger values soften both distributions.

    Returns:
        A scalar fp32 tensor: the KL divergence summed over the ``K`` classes, averaged over the ``B`` images,
        times ``T^2``. It is 0 when the student's probabilities equal the teacher's, and never negative.

    Raises:
        ValueError: the shapes differ (e.g. a teacher with another number of classes) or ``T <= 0``.
    """
    if student_logits.shape != teacher_logits.shape or student_logits.ndim != 2:
        raise ValueError(f"distillation_loss: student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} must both be [B, K] with the same classes")
    t = float(temperature)
    if not t > 0:
        raise ValueError(f"distillation_loss: temperature must be > 0, got {temperature!r}")
    log_p_student = F.log_softmax(student_logits.float() / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.detach().float() / t, dim=-1)
    # kl_div(input=log q, target=log p, log_target=True) = sum_k p_k (log p_k - log q_k) = KL(p || q)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * (t * t)


class Teacher:
    """A trained model that only gives targets: frozen, in eval mode, on the student's device, and timed.

    It is not an ``nn.Module`` and not part of the student: the trainer's ``model.train()`` calls, its optimiser,
    its EMA and its checkpoints never see it (the run's ``TrainConfig.teacher`` string is what a checkpoint keeps).

    Args:
        source: anything :func:`fer_lib.inference.load_model` reads (a bundled name such as ``"fer2013_resnet18"``
            or ``"ensemble"``, a ``best.pt``, a ``.safetensors`` file), or an ``nn.Module`` used as it is.
        device: the student's device; the teacher is moved there.
        channels_last: store the teacher's weights in NHWC (as the trainer does for the student when
            ``TrainConfig.channels_last``).

    Calling it, ``teacher(x)`` with ``x [B, C, H, W]`` (the normalised, augmented, mixed batch the student gets,
    ``C`` 1 or 3: a gray batch is repeated or cut to the teacher's own input channels) returns its logits
    ``[B, K]`` under ``torch.no_grad()``; run it inside the student's autocast to get the same precision.
    :meth:`take_seconds` reports the time its forward passes took.
    """

    def __init__(self, source: str | os.PathLike | nn.Module, device: str | torch.device = "cpu", *,
                 channels_last: bool = False) -> None:
        device = torch.device(device)
        if isinstance(source, nn.Module):
            model, self.source = source.to(device), type(source).__name__
        else:
            model, self.source = load_model(source, device=device), os.fspath(source)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model.eval().requires_grad_(False)
        self.in_chans = model_in_chans(model)
        self.device = device
        self._seconds = 0.0  # host-timed forward passes (CPU; MPS approximately)
        self._events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []  # CUDA: timed on the device

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, C, H, W]`` -> the teacher's logits ``[B, K]`` (no autograd graph; the model stays in eval)."""
        self.model.eval()  # at every call, whatever a caller did to the module (or a submodule) in between
        if x.shape[1] != self.in_chans:  # the channels are copies of one gray image
            x = x[:, :1] if self.in_chans == 1 else x[:, :1].expand(-1, self.in_chans, -1, -1)
        if self.device.type == "cuda":  # asynchronous: events, read in take_seconds (no synchronisation here)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            logits = logits_of(self.model(x))
            end.record()
            self._events.append((start, end))
        else:
            t0 = time.perf_counter()
            logits = logits_of(self.model(x))
            self._seconds += time.perf_counter() - t0
        return logits

    def take_seconds(self) -> float:
        """Seconds the forward passes took since the last call (then reset). On CUDA measured with events between
        the launches, read here with one synchronisation; on a CPU wall-clock time (each forward is synchronous)."""
        seconds = self._seconds
        if self._events:
            self._events[-1][1].synchronize()
            seconds += sum(start.elapsed_time(end) for start, end in self._events) / 1000.0
        self._seconds, self._events = 0.0, []
        return seconds

    def describe(self) -> str:
        """One line for the training log: what the teacher is and how big."""
        n = sum(p.numel() for p in self.model.parameters())
        name = getattr(self.model, "model_name", type(self.model).__name__)
        return f"{self.source} ({name}, {n / 1e6:.1f}M parameters, {self.in_chans} input channel(s))"


__all__ = ["Teacher", "distillation_loss"]
