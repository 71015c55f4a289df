"""An ensemble of trained models that behaves like one model: the average of the members' probabilities.

>>> import fer_lib
>>> model = fer_lib.pretrained("ensemble")      # every bundled model, averaged
>>> probs = fer_lib.inference.predict_proba(model, faces_uint8, tta="flip")

Averaging probabilities (not logits) is the usual way to combine classifiers trained apart (Lakshminarayanan et
al. 2017, https://arxiv.org/abs/1612.01474): each member keeps its own calibration, and a member that is sure
cannot drown out the others through a large logit. :class:`EnsembleModel` returns ``log(mean_m softmax(z_m))``
as its "logits": a softmax of that gives back exactly the averaged probabilities (they already sum to 1), so
everything written for one model -- :func:`fer_lib.inference.predict_proba` with its TTA views, evaluation,
photo inference, export -- works on the ensemble unchanged, and TTA averages the ensemble's probabilities over
the views, the same as averaging every member over every view.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from fer_lib.inference.models import logits_of, model_in_chans, model_num_classes


class EnsembleModel(nn.Module):
    """The average of several classifiers' probabilities, as one ``nn.Module``.

    Args:
        members: trained classifiers on the same input (``[B, C, 48, 48]``) and the same classes.
        name: what :func:`fer_lib.inference.describe_model` and reports call it.

    ``forward(x [B, C, 48, 48])`` returns ``log(mean_m softmax(member_m(x)))`` ``[B, classes]`` (float32): log
    probabilities that a softmax turns back into the averaged probabilities. ``members`` are run in the ensemble's
    own mode (``eval()`` for inference). ``model_name`` is ``"ensemble"``; ``member_names`` names the members.
    """

    def __init__(self, members: Sequence[nn.Module], name: str = "ensemble"):
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two models, got {len(members)}")
        chans = {model_in_chans(m) for m in members}
        classes = {model_num_classes(m) for m in members}
        if len(chans) != 1 or len(classes) != 1:
            raise ValueError(f"ensemble members disagree on input channels {sorted(chans)} or classes "
                             f"{sorted(classes)}; combine models trained on the same input and classes")
        self.members = nn.ModuleList(members)
        self.model_name = name
        self.in_chans = chans.pop()
        self.num_classes = classes.pop()
        self.member_names = [str(getattr(m, "weights_info", {}).get("name") or getattr(m, "model_name", "?"))
                             for m in members]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, C, 48, 48]`` -> log of the members' mean probabilities ``[B, classes]`` (float32)."""
        log_probs = torch.stack([torch.log_softmax(logits_of(m(x)).float(), dim=-1) for m in self.members])
        return torch.logsumexp(log_probs, dim=0) - math.log(len(self.members))


__all__ = ["EnsembleModel"]
