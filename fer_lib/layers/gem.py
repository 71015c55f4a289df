"""Generalized-mean (GeM) pooling with a learnable exponent.

Radenovic, Tolias, Chum, "Fine-tuning CNN Image Retrieval with No Human Annotation", TPAMI 2018,
https://arxiv.org/abs/1711.02512 .

``GeM(x)_c = ( mean_{i,j} max(x_{c,i,j}, eps)^p )^(1/p)``. With ``p = 1`` it is average pooling; as ``p``
grows it approaches max pooling, so learning ``p`` lets the network choose how peaky its pooling is.
"""

from __future__ import annotations

import torch
from torch import nn


class GeM(nn.Module):
    """GeM pooling over the spatial dimensions.

    Args:
        p: initial exponent (3 in the paper), learned with the network (an ``nn.Parameter``).
        eps: inputs are clamped to ``>= eps`` so that fractional powers are defined (maps after ReLU are
            non-negative anyway).

    Shapes:
        ``x``: ``[B, C, h, w]`` -> ``[B, C]``.
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        if p <= 0:
            raise ValueError(f"GeM: p must be > 0, got {p}; p=1 is average pooling, p=3 is the paper's default")
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p.clamp(min=1.0)  # p < 1 would make it softer than the mean and unstable near 0
        return x.clamp(min=self.eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)

    def extra_repr(self) -> str:
        return f"p={float(self.p.detach()):.3f}, eps={self.eps}"
