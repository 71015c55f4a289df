"""Facial-region attention: soft masks for eyes+brows, nose, mouth and the whole face.

Idea: FER2013 faces are roughly aligned (48x48 crops, eyes about a third down, mouth about three quarters
down), so *where* each facial region sits is known a priori. Each region ``r`` gets a fixed Gaussian prior
``log P_r(x, y) = -((x - cx_r)^2 / (2 sx_r^2) + (y - cy_r)^2 / (2 sy_r^2))`` in normalised image coordinates,
and a learnable 1x1 conv adds content-based logits, so the map can follow a face that is a little off:

    A_r = softmax_over_space( log P_r + conv_r(x) ),     f_r = sum_{i,j} A_r[i, j] x[:, i, j]

This is in the spirit of region-based FER attention (e.g. Wang et al., "Region Attention Networks for Pose and
Occlusion Robust Facial Expression Recognition", https://arxiv.org/abs/1905.04075), but with priors instead of
crops, which suits small, aligned images. The refinement conv starts at zero, so an untrained module pools with
the priors alone. It has no bias: a constant added to all positions cannot change a softmax over space.
"""

from __future__ import annotations

import torch
from torch import nn

# (name, centre x, centre y, sigma x, sigma y) in [0, 1] image coordinates of an aligned 48x48 FER2013 face;
# checked against the mean of 3,000 FER2013 training faces (dark eye band at y ~ 0.37 with eye centres at
# x ~ 0.32 and 0.68, brows at y ~ 0.28, bright nose ridge peaking at y ~ 0.53, dark mouth at y ~ 0.79; see
# docs/results/models.md).
FER_REGIONS: tuple[tuple[str, float, float, float, float], ...] = (
    ("eyes_brows", 0.50, 0.33, 0.30, 0.11),
    ("nose", 0.50, 0.56, 0.10, 0.10),
    ("mouth", 0.50, 0.78, 0.18, 0.08),
    ("face", 0.50, 0.52, 0.32, 0.36),
)


def grid_coords(h: int, w: int, device=None, dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres of the cells of an ``h x w`` map in ``[0, 1]`` image coordinates.

    Cell ``(i, j)`` covers ``[j/w, (j+1)/w] x [i/h, (i+1)/h]`` of the image, so its centre is
    ``((j + 0.5) / w, (i + 0.5) / h)`` (the ``align_corners=False`` convention). Returns ``(xs [w], ys [h])``.
    """
    xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) / w
    ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) / h
    return xs, ys


def gaussian_log_prior(
    centres: torch.Tensor, sigmas: torch.Tensor, h: int, w: int
) -> torch.Tensor:
    """Log of an axis-aligned Gaussian (unnormalised) at each cell centre.

    Args:
        centres: ``[R, 2]`` (x, y) in ``[0, 1]``.
        sigmas: ``[R, 2]`` (sx, sy) in image units (> 0), or ``[R, 1]`` for an isotropic one.

    Returns:
        ``[R, h, w]`` log-prior, ``0`` at the centre and negative elsewhere.
    """
    xs, ys = grid_coords(h, w, device=centres.device, dtype=centres.dtype)
    dx = (xs[None, None, :] - centres[:, 0, None, None]) / sigmas[:, 0, None, None]
    dy = (ys[None, :, None] - centres[:, 1, None, None]) / sigmas[:, -1, None, None]
    return -0.5 * (dx**2 + dy**2)


class RegionAttention(nn.Module):
    """Attention restricted (softly) to facial regions, one spatial softmax per region.

    Args:
        channels: ``C``, channels of the input map.
        regions: ``(name, cx, cy, sx, sy)`` tuples; defaults to :data:`FER_REGIONS`.

    Shapes:
        ``forward``: ``x [B, C, h, w]`` -> ``(features [B, R, C], maps [B, R, h, w])``; each map sums to 1.

    Attributes:
        region_names: tuple of the ``R`` region names, in output order.
    """

    def __init__(self, channels: int, regions=FER_REGIONS):
        super().__init__()
        if len(regions) == 0:
            raise ValueError("RegionAttention: give at least one region (name, cx, cy, sx, sy)")
        self.region_names = tuple(r[0] for r in regions)
        self.register_buffer("centres", torch.tensor([[r[1], r[2]] for r in regions], dtype=torch.float32))
        self.register_buffer("sigmas", torch.tensor([[r[3], r[4]] for r in regions], dtype=torch.float32))
        self.refine = nn.Conv2d(channels, len(regions), 1, bias=False)
        nn.init.zeros_(self.refine.weight)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = x.shape
        log_prior = gaussian_log_prior(self.centres, self.sigmas, h, w).to(x.dtype)  # [R, h, w]
        logits = log_prior.unsqueeze(0) + self.refine(x)  # [B, R, h, w]
        maps = logits.flatten(2).softmax(dim=-1)  # [B, R, h*w]
        feats = torch.einsum("brn,bcn->brc", maps, x.flatten(2))  # [B, R, C]
        return feats, maps.view(b, -1, h, w)
