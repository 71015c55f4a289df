"""The wall-clock budget of a training run (``TrainConfig.max_minutes`` and ``fit_budget``) in one small class.

Two ways to spend a budget:

* ``fit_budget=False``: train the planned epochs, but do not *start* an epoch that the mean epoch time says would
  not fit, and stop inside an epoch when the budget runs out.
* ``fit_budget=True``: after every epoch, re-plan the run's length from the measured epoch time so that the cosine
  schedule *ends* when the budget does (:meth:`TimeBudget.refit`); the learning rate continues smoothly through a
  re-plan (``WarmupCosineSchedule.replan``). The budget covers the whole run: a resumed process gets what the
  earlier processes left (``spent_s``).
"""

from __future__ import annotations

import math
import time

import torch

from fer_lib.train import distributed as D
from fer_lib.train.schedule import WarmupCosineSchedule

#: Share of the budget held back for checkpoint writes and timing noise when a plan is fitted.
RESERVE = 0.03


class TimeBudget:
    """Tracks elapsed time against ``max_minutes`` and fits the schedule to it.

    Args:
        max_minutes: the budget (``None``: unlimited).
        fit: ``TrainConfig.fit_budget``.
        spent_s: seconds that earlier processes of this run already used (the history's epoch seconds).
        start: ``time.perf_counter()`` when this process started (default: now).
    """

    def __init__(self, max_minutes: float | None, fit: bool = False, spent_s: float = 0.0,
                 start: float | None = None) -> None:
        self.max_minutes = max_minutes
        self.fit = fit
        self.start = time.perf_counter() if start is None else start
        self.seconds = max_minutes * 60 if max_minutes else math.inf
        if fit:
            self.seconds -= spent_s
        self._recent: list[float] = []  # training seconds of this process's epochs (refit uses the last 3)

    @property
    def limited(self) -> bool:
        return self.seconds < math.inf

    def elapsed(self) -> float:
        """Seconds since this process started."""
        return time.perf_counter() - self.start

    def over(self) -> bool:
        """Whether this process has used up the budget."""
        return self.elapsed() > self.seconds

    def next_epoch_fits(self, epoch_seconds: list[float]) -> bool:
        """Without ``fit``: whether another epoch of the mean measured length ends inside the budget."""
        if self.fit or not epoch_seconds:
            return True
        return self.elapsed() + sum(epoch_seconds) / len(epoch_seconds) <= self.seconds

    def record_epoch(self, train_s: float) -> None:
        """Remember one epoch's training time (without validation) for :meth:`refit`."""
        self._recent.append(train_s)

    def should_refit(self, first_epoch: bool, schedule: WarmupCosineSchedule, steps_per_epoch: int,
                     partial: bool) -> bool:
        """Re-fit after this process's first epoch and then while more than one epoch of the plan is left (a
        re-fit inside the last epoch would squeeze the end of the cosine into a few steps; :meth:`over` guards
        that epoch)."""
        if not self.fit or partial:
            return False
        return first_epoch or schedule.total_steps - schedule.step_count > steps_per_epoch

    def refit(self, schedule: WarmupCosineSchedule, steps_per_epoch: int, val_s: float, info,
              device: torch.device) -> None:
        """Re-plan ``schedule`` so that the run ends within the budget.

        Each later step is assumed to cost the mean step time of the last three epochs plus its share of one
        validation pass (``val_s``) per epoch; :data:`RESERVE` of the budget is held back. A machine that slows
        down (or speeds up) mid-run shortens (or lengthens) the rest of the plan. Ranks agree on the mean plan.
        """
        recent = self._recent[-3:]
        step_s = sum(recent) / len(recent) / steps_per_epoch
        val_s = max(0.0, val_s)
        remaining = self.seconds * (1 - RESERVE) - self.elapsed() - val_s  # the last epoch validates too
        extra = max(0, int(remaining / (step_s + val_s / steps_per_epoch)))
        plan = torch.tensor([float(schedule.step_count + extra)], dtype=torch.float64, device=device)
        D.all_reduce_sum(plan, info)
        schedule.replan(int(plan.item() / info.world_size))
