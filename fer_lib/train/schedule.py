"""Learning-rate schedule: linear warmup, then cosine decay, stepped once per optimiser step.

Why per step and not per epoch: with few epochs (the CPU preset runs ~27) an epoch-wise cosine makes large
jumps; stepping every batch gives the smooth curve of SGDR (Loshchilov & Hutter, https://arxiv.org/abs/1608.03983)
and the "gradual warmup" of Goyal et al. (https://arxiv.org/abs/1706.02677) that large batches need.

    lr(s) = peak * (s + 1) / warmup_steps                                   for s < warmup_steps
    lr(s) = peak * (r + (1 - r) * 0.5 * (1 + cos(pi * p)))                  otherwise,
            p = (s - warmup_steps) / max(1, total_steps - warmup_steps),     r = min_lr_ratio

Re-planning (``replan``, used by ``TrainConfig.fit_budget``): when a run must end at another step than planned, the
cosine *continues from its current phase* p0 at the current step s0 and is stretched (or squeezed) over the steps
that are left, so the learning rate never jumps and the curve keeps the cosine's shape:

    p = p0 + (1 - p0) * (s - s0) / (total_steps - s0)                                         for s >= s0

(before any re-plan s0 = warmup_steps and p0 = 0, which is the formula above; a re-plan to the same end changes
nothing). Restarting the cosine from the current *factor* instead (phase 0, slope 0) looks equivalent but is not:
re-planned after every epoch it keeps the learning rate near its peak for most of the run and anneals only in the
last few epochs.

The schedule is a tiny object with ``state_dict()`` / ``load_state_dict()`` holding only ints and floats, so it is
saved in checkpoints and ``resume`` continues at the exact step.
"""

from __future__ import annotations

import math

import torch

from fer_lib.data import TensorBatches


def cosine_phase(step: int, total_steps: int, warmup_steps: int, start_step: int | None = None,
                 start_phase: float = 0.0) -> float:
    """The cosine's phase in ``[0, 1]`` at ``step`` (0 during warmup), as :func:`warmup_cosine_factor` uses it."""
    if step < warmup_steps:
        return 0.0
    s0 = warmup_steps if start_step is None else max(start_step, warmup_steps)
    p0 = 0.0 if start_step is None or start_step < warmup_steps else start_phase
    return p0 + (1.0 - p0) * min(1.0, max(0, step - s0) / max(1, total_steps - s0))


def warmup_cosine_factor(step: int, total_steps: int, warmup_steps: int, min_lr_ratio: float,
                         start_step: int | None = None, start_phase: float = 0.0) -> float:
    """Multiplier of the peak learning rate at optimiser step ``step`` (0-based).

    Args:
        step: the step about to be taken (0 for the first batch).
        total_steps: planned optimiser steps of the whole run.
        warmup_steps: linear-warmup steps (0: start at the peak).
        min_lr_ratio: final learning rate as a fraction of the peak.
        start_step / start_phase: the step from which the cosine runs on and its phase there, in ``[0, 1]``
            (default: the end of warmup, phase 0; a re-plan moves them to the step and phase at which it happened).

    Returns:
        A float in ``[min_lr_ratio, 1]`` (warmup starts at ``1 / warmup_steps``); clamped after ``total_steps``.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = cosine_phase(step, total_steps, warmup_steps, start_step, start_phase)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def steps_per_epoch(num_images: int, batch_size: int, world_size: int = 1) -> int:
    """Optimiser steps in one epoch of :func:`fer_lib.train.train` over ``num_images`` training images.

    The loop gives each of ``world_size`` processes a shard of ``ceil(num_images / world_size)`` images
    (:class:`fer_lib.data.TensorBatches`) and drops the shard's last, incomplete batch whenever a process holds
    more than one batch, so every step sees ``batch_size`` images; a shard of at most one batch is one (short)
    step. So 28,709 FER2013 Training images at batch 256 make 112 steps, not ``ceil(28709 / 256) = 113``.
    ``tests/test_train_steps.py`` checks this against the steps :func:`~fer_lib.train.train` takes.
    """
    if num_images < 1 or batch_size < 1 or world_size < 1:
        raise ValueError(f"steps_per_epoch needs positive numbers, got {num_images} images, batch {batch_size}, "
                         f"world size {world_size}")
    empty = torch.empty(num_images, 0)  # TensorBatches counts samples only: no pixels needed
    return len(TensorBatches(empty, empty, batch_size, shuffle=False, world_size=world_size,
                             drop_last=num_images // world_size > batch_size))  # the rule of fer_lib.train.run.build_run


class WarmupCosineSchedule:
    """Sets ``lr`` of every parameter group of ``optimizer`` from :func:`warmup_cosine_factor`.

    Call :meth:`step` *before* each optimiser step (it sets the learning rate for that step and advances).
    Each group's peak is its ``lr`` at construction (kept as ``group["initial_lr"]``).

    Args:
        optimizer: a ``torch.optim.Optimizer``.
        total_steps: planned optimiser steps (``epochs * steps_per_epoch``).
        warmup_steps: warmup length in steps.
        min_lr_ratio: final ``lr`` as a fraction of the peak.
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.0
    ) -> None:
        if total_steps <= 0:
            raise ValueError(f"total_steps must be > 0, got {total_steps}")
        if not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}")
        self.optimizer = optimizer
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.min_lr_ratio = float(min_lr_ratio)
        self.step_count = 0
        self.start_step: int | None = None  # set by replan()
        self.start_phase = 0.0
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])

    def factor(self, step: int | None = None) -> float:
        """Multiplier at ``step`` (default: the next step)."""
        step = self.step_count if step is None else step
        return warmup_cosine_factor(step, self.total_steps, self.warmup_steps, self.min_lr_ratio, self.start_step,
                                    self.start_phase)

    def step(self) -> float:
        """Set the learning rate for the coming optimiser step, advance, and return the first group's lr."""
        f = self.factor()
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * f
        self.step_count += 1
        return self.optimizer.param_groups[0]["lr"]

    def replan(self, total_steps: int) -> None:
        """End the run at ``total_steps`` instead (e.g. to fit a time budget), without a jump in the learning rate.

        Inside the cosine part the cosine continues from its phase at the current step and reaches
        ``min_lr_ratio`` at ``total_steps``; during warmup only the end point moves. A plan shorter than the steps
        already taken (or than warmup) is raised to that point.
        """
        if self.step_count > self.warmup_steps:
            self.start_phase = cosine_phase(self.step_count, self.total_steps, self.warmup_steps, self.start_step,
                                            self.start_phase)
            self.start_step = self.step_count
        self.total_steps = max(int(total_steps), self.step_count, self.warmup_steps, 1)

    def state_dict(self) -> dict[str, int | float]:
        """Plain ints and floats: ``weights_only``-safe."""
        return {
            "step_count": self.step_count,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "min_lr_ratio": self.min_lr_ratio,
            "start_step": -1 if self.start_step is None else self.start_step,
            "start_phase": self.start_phase,
        }

    def load_state_dict(self, state: dict[str, int | float], strict: bool = True) -> None:
        """Restore the step counter and plan.

        Args:
            state: from :meth:`state_dict`.
            strict: a checkpoint planned for a different run length raises ``ValueError``; ``False`` (re-planned
                runs, ``fit_budget``) takes the checkpoint's plan instead.
        """
        if not strict:
            self.total_steps, self.warmup_steps = int(state["total_steps"]), int(state["warmup_steps"])
        if int(state["total_steps"]) != self.total_steps or int(state["warmup_steps"]) != self.warmup_steps:
            raise ValueError(
                f"the checkpoint's schedule ({state['total_steps']} steps, {state['warmup_steps']} warmup) does not "
                f"match this run ({self.total_steps} steps, {self.warmup_steps} warmup): epochs, batch size, processes, "
                "warmup or the data size changed; resume with the original settings"
            )
        self.step_count = int(state["step_count"])
        self.min_lr_ratio = float(state["min_lr_ratio"])
        start = int(state.get("start_step", -1))
        self.start_step = None if start < 0 else start
        if "start_phase" in state:
            self.start_phase = float(state["start_phase"])
        else:  # a checkpoint of the factor-restart version: the phase at which the cosine has that factor
            r, f0 = self.min_lr_ratio, float(state.get("start_factor", 1.0))
            cos = 2.0 * (f0 - r) / max(1e-12, 1.0 - r) - 1.0
            self.start_phase = math.acos(max(-1.0, min(1.0, cos))) / math.pi
