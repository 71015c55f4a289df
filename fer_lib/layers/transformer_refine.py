"""Transformer refinement over conv-map tokens, facial-region tokens and anchor tokens.

A few pre-norm transformer encoder layers (Vaswani et al., https://arxiv.org/abs/1706.03762; pre-norm as in
ViT, Dosovitskiy et al., https://arxiv.org/abs/2010.11929) let the map cells, the facial regions and the anchors
exchange information before classification. The sequence is

    [CLS] + h*w map tokens (+ R region tokens) (+ K anchor tokens)

each projected to width ``E``, plus a learned embedding per position (map cells) or per identity (each region,
each anchor). The class token's output summarises everything. Attention is written out by hand (not
``nn.MultiheadAttention``) so that students can read it and so that the weights ``[B, heads, T, T]`` come back.
"""

from __future__ import annotations

import torch
from torch import nn


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention that can return its weights.

    Args:
        dim: token width ``E``; must be divisible by ``heads``.
        heads: number of heads.

    Shapes:
        ``x [B, T, E]`` -> ``(y [B, T, E], weights [B, heads, T, T])`` (rows sum to 1).
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"SelfAttention: dim={dim} is not divisible by heads={heads}; pick e.g. heads=4")
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        # No bias on q, k, v: a key bias cannot change a softmax over keys (its gradient is exactly zero).
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, e = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, e // self.heads).permute(2, 0, 3, 1, 4)  # 3x[B,H,T,d]
        weights = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)  # [B, H, T, T]
        y = (weights @ v).transpose(1, 2).reshape(b, t, e)
        return self.proj(y), weights


class EncoderLayer(nn.Module):
    """Pre-norm encoder layer: ``x + Attn(LN(x))`` then ``x + MLP(LN(x))`` (GELU MLP, ratio ``mlp_ratio``)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, weights = self.attn(self.norm1(x))
        x = x + y
        x = x + self.mlp(self.norm2(x))
        return x, weights


class TransformerRefine(nn.Module):
    """Class token + learned embeddings + ``depth`` pre-norm encoder layers.

    Args:
        in_channels: ``C`` of the map tokens (and of region / anchor tokens).
        grid: ``(h, w)`` of the map; fixes the number of learned positional embeddings.
        dim: token width ``E``.
        depth: number of encoder layers.
        heads: attention heads per layer.
        num_extra: number of extra tokens (regions + anchors), each with its own learned embedding.
        mlp_ratio: hidden width of each MLP as a multiple of ``E``.

    Shapes:
        ``forward(x [B, C, h, w], extra [B, num_extra, C] or None)`` ->
        ``(cls [B, E], attention weights: list of depth x [B, heads, T, T])`` with ``T = 1 + h*w + num_extra``.
    """

    def __init__(
        self,
        in_channels: int,
        grid: tuple[int, int],
        dim: int = 256,
        depth: int = 2,
        heads: int = 4,
        num_extra: int = 0,
        mlp_ratio: float = 2.0,
        map_tokens: bool = True,
    ):
        super().__init__()
        if not map_tokens and num_extra == 0:
            raise ValueError("TransformerRefine: map_tokens=False needs extra (region / anchor) tokens to attend over")
        self.grid = tuple(grid)
        self.num_extra = num_extra
        self.map_tokens = map_tokens
        self.proj = nn.Linear(in_channels, dim) if in_channels != dim else nn.Identity()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        n_map = grid[0] * grid[1] if map_tokens else 0
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + n_map + num_extra, dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.layers = nn.ModuleList(EncoderLayer(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(
        self, x: torch.Tensor, extra: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, _, h, w = x.shape
        if (h, w) != self.grid:
            raise ValueError(
                f"TransformerRefine: built for a {self.grid} map but got {(h, w)}; the model's input must be "
                "48x48 (it resizes internally) -- rebuild the model for another input_size"
            )
        tokens = [self.cls_token.expand(b, -1, -1)] + ([x.flatten(2).transpose(1, 2)] if self.map_tokens else [])
        n_extra = 0 if extra is None else extra.shape[1]
        if n_extra != self.num_extra:
            raise ValueError(f"TransformerRefine: expected {self.num_extra} extra tokens, got {n_extra}")
        if extra is not None:
            tokens.append(extra)
        t = torch.cat([tokens[0], self.proj(torch.cat(tokens[1:], dim=1))], dim=1) + self.pos_embed
        weights = []
        for layer in self.layers:
            t, wts = layer(t)
            weights.append(wts)
        return self.norm(t[:, 0]), weights
