"""Multi-stage feature fusion: the last three backbone stages on one grid, one width.

Early stages see small, sharp details (a wrinkle at the eye corner), late stages see large context (a smile).
Each stage ``s`` is projected by ``1x1 conv + BN + ReLU`` to width ``D``, resized to a common ``h x w`` grid
(bilinear up, area-average down), and summed with learned non-negative weights that add to one
(softmax of one logit per stage, in the spirit of BiFPN's weighted fusion, Tan et al.,
https://arxiv.org/abs/1911.09070; the per-stage projection is as in FPN, Lin et al.,
https://arxiv.org/abs/1612.03144):

    F = sum_s softmax(a)_s * resize(ReLU(BN(W_s x_s)))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def resize_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bring ``x [B, C, h, w]`` to ``size``: identity, adaptive average pooling (down) or bilinear (up)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class StageFusion(nn.Module):
    """Weighted sum of projected, resized stage maps.

    Args:
        in_channels: channels of each stage, e.g. ``(128, 256, 512)`` for resnet18's last three.
        out_channels: ``D``, the common width.
        target_index: which input's grid the output takes (``-1``: the last stage's; ``-2``: the one before).

    Shapes:
        ``forward(list of [B, C_s, h_s, w_s])`` -> ``[B, D, h_t, w_t]`` (non-negative).
    """

    def __init__(self, in_channels: tuple[int, ...], out_channels: int = 256, target_index: int = -1):
        super().__init__()
        self.target_index = target_index
        self.proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU())
            for c in in_channels
        )
        self.weight_logits = nn.Parameter(torch.zeros(len(in_channels)))

    def fusion_weights(self) -> torch.Tensor:
        """The stage weights ``softmax(a)``, shape ``[S]``, summing to 1."""
        return self.weight_logits.softmax(dim=0)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        if len(feats) != len(self.proj):
            raise ValueError(f"StageFusion: built for {len(self.proj)} stages, got {len(feats)}")
        size = tuple(feats[self.target_index].shape[-2:])
        wts = self.fusion_weights()
        return sum(wts[i] * resize_to(p(f), size) for i, (p, f) in enumerate(zip(self.proj, feats)))
