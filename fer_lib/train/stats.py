"""The training steps' statistics on their way from the device to the history: read in batches, never per step.

Each step leaves its ``[loss * batch size, correct]`` on the device (:class:`PendingSteps`); the loop
(``fer_lib/train/engine.py``) reads all pending steps in one transfer every ``cfg.log_every`` steps (else
:data:`READ_EVERY`) and at the epoch's end, so a GPU step never waits for the host. What an epoch's steps add up to
goes to the epoch's end as an :class:`EpochPart`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

#: Steps between two reads of the step statistics from the device when ``cfg.log_every`` is 0.
READ_EVERY = 50


class EpochPart(NamedTuple):
    """What the loop's ``_train_epoch`` measured, for its ``_end_epoch`` to finish the history row with."""

    train_loss: float
    train_acc: float
    images: int
    t0: float  # perf_counter() at the epoch's start
    train_s: float  # seconds of training (without validation)
    partial: bool  # the epoch stopped early (budget, or the fitted plan ends inside it)


class PendingSteps:
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
