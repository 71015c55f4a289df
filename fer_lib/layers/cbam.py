"""CBAM: Convolutional Block Attention Module.

Woo, Park, Lee, Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018,
https://arxiv.org/abs/1807.06521 .

CBAM refines a conv map in two steps, each a multiplicative gate in ``(0, 1)``:

1. **Channel attention** ("what"): average- and max-pool the map over space, send both ``[B, C, 1, 1]``
   descriptors through one shared MLP (``C -> C/r -> C``), add, sigmoid: ``x <- x * sigma(MLP(avg) + MLP(max))``.
2. **Spatial attention** ("where"): take the mean and the max over channels (``[B, 2, h, w]``), a ``k x k``
   conv + BatchNorm gives one logit per position, sigmoid: ``x <- x * sigma(conv([mean; max]))``.

The layout follows timm's ``timm/layers/cbam.py`` (``channels`` first, ``forward`` returns ``x * gate``), and the
conv + BN of the spatial branch follows the authors' code. ``forward_with_map`` also returns the spatial gate
``[B, 1, h, w]`` so that notebooks can plot *where* the module looks; nothing is kept on the module.
"""

from __future__ import annotations

import torch
from torch import nn


class ChannelAttention(nn.Module):
    """CBAM channel gate: shared MLP over the avg- and max-pooled descriptors.

    Args:
        channels: ``C``, channels of the input map.
        reduction: ``r``; the hidden width is ``max(C // r, 8)``.

    Shapes:
        ``x``: ``[B, C, h, w]`` -> ``[B, C, h, w]`` (``x`` times a gate ``[B, C, 1, 1]``).
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=True)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The channel gate ``sigma(MLP(avgpool x) + MLP(maxpool x))``, shape ``[B, C, 1, 1]``."""
        avg = self.fc2(self.act(self.fc1(x.mean(dim=(2, 3), keepdim=True))))
        mx = self.fc2(self.act(self.fc1(x.amax(dim=(2, 3), keepdim=True))))
        return torch.sigmoid(avg + mx)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class SpatialAttention(nn.Module):
    """CBAM spatial gate: ``k x k`` conv + BN over the channel-mean and channel-max maps.

    Args:
        kernel_size: odd conv size (7 in the paper); padding keeps ``h x w``.

    Shapes:
        ``x``: ``[B, C, h, w]`` -> ``[B, C, h, w]`` (``x`` times a gate ``[B, 1, h, w]``).
    """

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"SpatialAttention: kernel_size must be odd, got {kernel_size}; use e.g. 3 or 7")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The spatial gate ``sigma(BN(conv([mean_c x; max_c x])))``, shape ``[B, 1, h, w]``."""
        desc = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.bn(self.conv(desc)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class CBAM(nn.Module):
    """Channel attention followed by spatial attention (the sequential order the paper found best).

    Args:
        channels: ``C``, channels of the input map.
        reduction: channel-MLP reduction ratio ``r`` (16 in the paper).
        kernel_size: spatial conv size (7 in the paper).

    Shapes:
        ``forward``: ``[B, C, h, w]`` -> ``[B, C, h, w]``.
        ``forward_with_map``: ``[B, C, h, w]`` -> ``([B, C, h, w], spatial gate [B, 1, h, w])``.

    Example:
        >>> cbam = CBAM(64)
        >>> y, where = cbam.forward_with_map(torch.randn(2, 64, 6, 6))
        >>> y.shape, where.shape
        (torch.Size([2, 64, 6, 6]), torch.Size([2, 1, 6, 6]))
    """

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward_with_map(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Refine ``x`` and return ``(refined [B, C, h, w], spatial gate [B, 1, h, w] in (0, 1))``."""
        x = self.channel(x)
        where = self.spatial.gate(x)
        return x * where, where

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_map(x)[0]
