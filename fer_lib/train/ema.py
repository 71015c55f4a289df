"""Exponential moving average (EMA) of a model's weights.

After every optimiser step: ``ema = d * ema + (1 - d) * weights`` for floating-point parameters *and* buffers
(BatchNorm running statistics follow the same average; integer buffers such as ``num_batches_tracked`` are
copied). This is Polyak-Ruppert averaging in its exponential form (Polyak & Juditsky 1992,
https://doi.org/10.1137/0330046), used by e.g. EfficientNet and timm (``ModelEmaV2``).
The averaged weights usually generalise a little better and make validation curves much smoother.

Warmup: the decay used at update ``n`` is ``min(decay, (1 + n) / (10 + n))``, so early averages are not dominated
by the random initialisation (TensorFlow's ``ExponentialMovingAverage(num_updates=...)`` rule).
"""

from __future__ import annotations

import copy
import weakref

import torch
from torch import nn


class ModelEMA:
    """Keeps ``module``, an eval-mode deep copy of the model whose weights are the running average.

    Args:
        model: the model being trained (unwrapped: not DDP / ``torch.compile``); it is copied, not referenced.
        decay: the target decay ``d`` (0.999 averages over roughly the last 1,000 steps).
        warmup: use the ``(1 + n) / (10 + n)`` warmup rule.

    Example:
        >>> ema = ModelEMA(model, decay=0.999)
        >>> loss.backward(); optimizer.step(); ema.update(model)
        >>> ema.module(x)  # evaluate with the averaged weights
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = float(decay)
        self.warmup = warmup
        self.updates = 0
        self._cache: tuple | None = None  # (weak reference to the source model, the lists of _pairs)

    def current_decay(self) -> float:
        """The decay the next :meth:`update` will use."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    def _pairs(self, model: nn.Module) -> tuple[list, list, list, list]:
        """The tensor lists :meth:`update` works on, built on the first call for ``model`` and then reused.

        Returns ``(float targets, float sources, int targets, int sources)``: the floating-point parameters and
        buffers of the average and of ``model``, walked in the same order (``parameters()`` then ``buffers()``,
        which :meth:`__init__`'s deep copy guarantees), and the integer buffers likewise. The lists hold the
        parameter and buffer objects themselves, so ``model.to(...)`` (which swaps their ``.data``) is followed; a
        module that *replaces* a parameter or buffer object after the first update is not (call :meth:`update` with
        the model the EMA was made from, as the training loop does).
        """
        if self._cache is not None and self._cache[0]() is model:
            return self._cache[1]
        mine = [*self.module.parameters(), *self.module.buffers()]
        theirs = [*model.parameters(), *model.buffers()]
        if len(mine) != len(theirs):
            raise ValueError(f"ModelEMA.update: the model has {len(theirs)} tensors, its average {len(mine)}; "
                             "pass the same (unwrapped) model the EMA was created from")
        floats = [(a, b) for a, b in zip(mine, theirs) if a.dtype.is_floating_point]
        ints = [(a, b) for a, b in zip(mine, theirs) if not a.dtype.is_floating_point]
        lists = ([a for a, _ in floats], [b for _, b in floats], [a for a, _ in ints], [b for _, b in ints])
        self._cache = (weakref.ref(model), lists)
        return lists

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend ``model``'s current weights into the average (call after each optimiser step).

        One fused ``torch._foreach_lerp_`` over all floating-point parameters and buffers and one
        ``torch._foreach_copy_`` over the integer buffers (a handful of kernel launches instead of one per
        tensor), over tensor lists built on the first call for this ``model`` object and reused after
        (see :meth:`_pairs`); no ``state_dict()`` is built.
        """
        d = self.current_decay()
        targets, sources, int_targets, int_sources = self._pairs(model)
        if targets:
            torch._foreach_lerp_(targets, sources, 1.0 - d)
        if int_targets:
            torch._foreach_copy_(int_targets, int_sources)
        self.updates += 1

    def state_dict(self) -> dict:
        """``{"module": state_dict, "updates": int, "decay": float}`` (tensors and plain types only)."""
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`."""
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
        self.decay = float(state["decay"])
