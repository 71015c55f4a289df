"""Anchor attention: learnable landmark points that gather features around themselves.

Idea: expressions are made by a few facial points moving (brows raise, mouth corners pull, lips part). Give the
network ``K`` learnable *anchors*, initialised at canonical landmark positions of an aligned 48x48 FER2013 face,
each with a learnable centre ``c_k = sigmoid(u_k)`` in ``[0, 1]^2`` and a learnable isotropic width
``s_k = exp(l_k)``. Anchor ``k`` attends with

    A_k = softmax_over_space( -|p - c_k|^2 / (2 s_k^2) + conv_k(x) ),      f_k = sum_p A_k[p] x[:, p]

The Gaussian term is differentiable in ``c_k`` and ``s_k``, so training moves the anchors (plot
``anchor_positions()`` before and after); the zero-initialised 1x1 conv adds content-based refinement. This is a
soft, landmark-free cousin of landmark-guided FER attention and of the learned sampling points of Deformable
DETR (Zhu et al., https://arxiv.org/abs/2010.04159): no landmark detector is needed at train or test time.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fer_lib.layers.region_attention import gaussian_log_prior

# (name, x, y) in [0, 1] image coordinates of an aligned 48x48 FER2013 face, checked against the mean of 3,000
# training faces (see FER_REGIONS and docs/results/models.md); "_l"/"_r" are the image's left and right (the
# subject's right and left).
FER_ANCHORS: tuple[tuple[str, float, float], ...] = (
    ("brow_l", 0.30, 0.27),
    ("brow_r", 0.70, 0.27),
    ("eye_outer_l", 0.22, 0.38),
    ("eye_inner_l", 0.40, 0.38),
    ("eye_inner_r", 0.60, 0.38),
    ("eye_outer_r", 0.78, 0.38),
    ("nose_tip", 0.50, 0.57),
    ("mouth_corner_l", 0.34, 0.78),
    ("mouth_corner_r", 0.66, 0.78),
    ("upper_lip", 0.50, 0.73),
    ("lower_lip", 0.50, 0.84),
    ("chin", 0.50, 0.94),
)


class AnchorAttention(nn.Module):
    """``K`` learnable Gaussian anchors with content refinement.

    Args:
        channels: ``C``, channels of the input map.
        anchors: ``(name, x, y)`` tuples; defaults to :data:`FER_ANCHORS` (12 points).
        sigma: initial width of every anchor, in image units (0.12 = about 6 pixels of a 48x48 face).

    Shapes:
        ``forward``: ``x [B, C, h, w]`` -> ``(features [B, K, C], maps [B, K, h, w])``; each map sums to 1.
        ``anchor_positions()``: ``[K, 2]`` (x, y) in ``[0, 1]`` image coordinates; ``initial_positions`` the same
        for where they started.

    Attributes:
        anchor_names: tuple of the ``K`` names, in output order.
    """

    def __init__(self, channels: int, anchors=FER_ANCHORS, sigma: float = 0.12):
        super().__init__()
        if len(anchors) == 0:
            raise ValueError("AnchorAttention: give at least one anchor (name, x, y)")
        if not 0 < sigma < 1:
            raise ValueError(f"AnchorAttention: sigma is in image units and must be in (0, 1), got {sigma}")
        self.anchor_names = tuple(a[0] for a in anchors)
        xy = torch.tensor([[a[1], a[2]] for a in anchors], dtype=torch.float32)
        if (xy <= 0).any() or (xy >= 1).any():
            raise ValueError("AnchorAttention: anchor coordinates must lie strictly inside (0, 1)")
        self.centre_logits = nn.Parameter(torch.logit(xy))  # [K, 2], centre = sigmoid(.)
        # where the anchors started (not saved with the weights: it is the constructor's input)
        self.register_buffer("initial_positions", xy.clone(), persistent=False)
        self.log_sigma = nn.Parameter(torch.full((len(anchors), 1), math.log(sigma)))  # [K, 1]
        self.refine = nn.Conv2d(channels, len(anchors), 1, bias=False)
        nn.init.zeros_(self.refine.weight)

    def anchor_positions(self) -> torch.Tensor:
        """Current anchor centres, ``[K, 2]`` (x, y) in ``[0, 1]`` image coordinates (differentiable)."""
        return torch.sigmoid(self.centre_logits)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = x.shape
        log_prior = gaussian_log_prior(self.anchor_positions(), self.log_sigma.exp(), h, w).to(x.dtype)
        maps = (log_prior.unsqueeze(0) + self.refine(x)).flatten(2).softmax(dim=-1)  # [B, K, h*w]
        feats = torch.einsum("bkn,bcn->bkc", maps, x.flatten(2))  # [B, K, C]
        return feats, maps.view(b, -1, h, w)
