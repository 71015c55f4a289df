"""Training augmentation as batched tensor operations, on whatever device the batch lives on.

No per-image PIL work: every op draws per-sample parameters as one small random tensor and is applied to the
whole batch at once (random affine through a sampling grid, :func:`affine_grid`, and ``F.grid_sample``,
Jaderberg et al., "Spatial Transformer Networks", https://arxiv.org/abs/1506.02025). Ops, in order: horizontal flip, random affine
(rotation, scale, translation), brightness/contrast, random erasing (Zhong et al., https://arxiv.org/abs/1708.04896).
Batch-level mixing: :func:`mixup_cutmix` (mixup, Zhang et al., https://arxiv.org/abs/1710.09412; CutMix,
Yun et al., https://arxiv.org/abs/1905.04899) returning soft targets.

Randomness comes from a ``torch.Generator`` when one is given (same generator state -> same batch), else
from torch's global RNG (so ``torch.manual_seed`` makes runs repeatable). Without a generator the per-image
numbers and mixing's permutation are drawn on the batch's device, and nothing in either function reads a value
back from the device or has a data-dependent shape, so on a GPU a training step never waits for it: every image
goes through one bilinear warp whose matrix holds its flip and its affine (the identity where the affine is not
selected), colour jitter and erasing are per-image parameters of one pass each (neutral where not selected),
and nothing is selected by indexing. The few batch-level numbers of
:func:`mixup_cutmix` (whether to mix, mixup or CutMix, ``lam``, the box centre) are drawn on the host (CPU
generator, numpy), because they decide the shapes of the computation.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["AugmentConfig", "Augment", "mixup_cutmix"]


@dataclass
class AugmentConfig:
    """Probabilities and strengths of each augmentation; every op can be switched off (``p = 0``).

    Attributes:
        flip_p: probability of a horizontal flip (faces are roughly symmetric; FER2013 labels are not sided).
        affine_p: probability of a random affine; then rotation ~ U(-rotate_deg, rotate_deg), zoom ~ U(scale),
            shift ~ U(-translate, translate) x image size on each axis.
        color_p: probability of brightness/contrast jitter: ``(x - mean) * U(1 +- contrast) + mean + U(+-brightness)``.
        erase_p: probability of erasing one rectangle of area ``U(erase_area)`` x image, aspect ``U(erase_ratio)``
            (log-uniform), filled with ``erase_value`` or, when None, a random gray level per image.
        padding_mode: what the affine shows outside the image: ``"border"``, ``"zeros"`` or ``"reflection"``.
    """

    flip_p: float = 0.5
    affine_p: float = 0.8
    rotate_deg: float = 15.0
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = 0.08
    color_p: float = 0.5
    brightness: float = 0.15
    contrast: float = 0.25
    erase_p: float = 0.25
    erase_area: tuple[float, float] = (0.02, 0.15)
    erase_ratio: tuple[float, float] = (0.3, 3.3)
    erase_value: float | None = None
    padding_mode: str = "border"

    def __post_init__(self):
        for name in ("flip_p", "affine_p", "color_p", "erase_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"AugmentConfig.{name} must be a probability in [0, 1], got {getattr(self, name)}")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"AugmentConfig.scale must be (low, high) with 0 < low <= high, got {self.scale}")
        if not 0 < self.erase_area[0] <= self.erase_area[1] <= 1:
            raise ValueError(f"AugmentConfig.erase_area must satisfy 0 < low <= high <= 1, got {self.erase_area}")
        if not 0 < self.erase_ratio[0] <= self.erase_ratio[1]:
            raise ValueError(f"AugmentConfig.erase_ratio must satisfy 0 < low <= high, got {self.erase_ratio}")
        if self.padding_mode not in ("border", "zeros", "reflection"):
            raise ValueError(f"AugmentConfig.padding_mode must be border, zeros or reflection, got {self.padding_mode!r}")

    @classmethod
    def off(cls, **overrides) -> AugmentConfig:
        """Everything switched off (then turn single ops back on with ``overrides``, e.g. ``flip_p=1``)."""
        return cls(**{"flip_p": 0.0, "affine_p": 0.0, "color_p": 0.0, "erase_p": 0.0, **overrides})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AugmentConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown AugmentConfig keys {sorted(unknown)}; valid: {sorted(names)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@functools.lru_cache(maxsize=64)
def _pixel_centres(n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The centres of ``n`` pixels in ``[-1, 1]``, as ``F.affine_grid`` computes them (made once per size)."""
    return torch.linspace(-1, 1, n, device=device, dtype=dtype) * (n - 1) / n


@functools.lru_cache(maxsize=64)
def _arange(n: int, device: torch.device) -> torch.Tensor:
    return torch.arange(n, device=device)


def affine_grid(theta: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """``F.affine_grid(theta, [B, C, H, W], align_corners=False)`` computed elementwise.

    ``F.affine_grid`` multiplies the ``[H * W, 3]`` base grid by each ``theta`` with a batched matmul, which on a
    CPU costs ~6 ms for 256 images at 48x48 (256 tiny matrix products); the same sums, ``x * t0 + y * t1 + t2``,
    as two broadcast additions of per-column and per-row terms, cost about a millisecond. Same values up to float rounding (on the
    development CPU bit for bit, as the matmul there adds the three products in this order without FMA).

    Args:
        theta: ``[B, 2, 3]`` affine matrices (output pixel -> input location, normalised coordinates).
        H, W: the output size.

    Returns:
        ``[B, H, W, 2]`` sampling grid for ``F.grid_sample``.
    """
    B = theta.shape[0]
    # pixel centres in [-1, 1], computed as F.affine_grid computes them
    X = _pixel_centres(W, theta.device, theta.dtype).view(1, 1, 1, W)
    Y = _pixel_centres(H, theta.device, theta.dtype).view(1, 1, H, 1)
    t = theta.view(B, 2, 3, 1, 1)
    grid = ((X * t[:, :, 0]) + (Y * t[:, :, 1])).add_(t[:, :, 2])  # [B, 2, 1, W] + [B, 2, H, 1] -> [B, 2, H, W]
    return grid.permute(0, 2, 3, 1)


class Augment:
    """Batched augmentation: ``Augment(cfg)(x01)`` with ``x01 float [B, 1, H, W]`` (or ``[B, C, H, W]``) in [0, 1].

    Returns a new tensor of the same shape, dtype and device, in [0, 1]; the input is not modified.
    """

    _K = 15  # random numbers drawn per sample

    def __init__(self, cfg: AugmentConfig | None = None):
        self.cfg = cfg if cfg is not None else AugmentConfig()
        self._on_device: dict = {}  # (device, dtype, ranges) -> (lo, span) tensors: no host-to-device copy per call

    def _ranges(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Column ``k`` of the drawn numbers ``u [B, K]`` becomes ``lo[k] + span[k] * u[:, k]``, all in one op: the
        rotation in radians (2), zoom (3), shift in ``[-1, 1]`` coordinates (4, 5), brightness (7), contrast (8),
        erased area fraction (10), log aspect ratio (11); the other columns stay U(0, 1) (selections, box
        position, fill value). Read from ``self.cfg`` at every call, so a changed config takes effect."""
        c = self.cfg
        lo, span = [0.0] * self._K, [1.0] * self._K
        rad, t = math.radians(c.rotate_deg), 2 * c.translate
        log_r = (math.log(c.erase_ratio[0]), math.log(c.erase_ratio[1]))
        for k, (low, high) in {2: (-rad, rad), 3: c.scale, 4: (-t, t), 5: (-t, t), 7: (-c.brightness, c.brightness),
                               8: (1 - c.contrast, 1 + c.contrast), 10: c.erase_area, 11: log_r}.items():
            lo[k], span[k] = low, high - low
        return tuple(lo), tuple(span)

    def __repr__(self) -> str:
        return f"Augment({self.cfg})"

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.ndim != 4 or not x.is_floating_point():
            raise ValueError(f"Augment expects float [B, C, H, W] in [0, 1], got {x.dtype} {tuple(x.shape)}")
        cfg, (B, _, H, W) = self.cfg, x.shape
        if generator is not None:
            u = torch.rand(B, self._K, generator=generator, device=generator.device).to(x.device)
        else:  # drawn where the batch lives: no host-to-device copy (which would wait for the device)
            u = torch.rand(B, self._K, device=x.device)
        ranges = self._ranges()
        key = (u.device, u.dtype, ranges)
        if key not in self._on_device:
            self._on_device[key] = tuple(torch.tensor(v, device=u.device, dtype=u.dtype) for v in ranges)
        lo, span = self._on_device[key]
        p = torch.addcmul(lo, u, span)  # [B, K]: each column's parameter (see _ranges)
        flip = u[:, 0] < cfg.flip_p  # [B] bool

        if cfg.affine_p > 0:  # one bilinear warp of every image does the flip and the affine together
            out = F.grid_sample(x, affine_grid(self._theta(u, p, flip, x.dtype), H, W), mode="bilinear",
                                padding_mode=cfg.padding_mode, align_corners=False)
        else:  # in-place where the result is a fresh tensor (torch.where's out= included): fewer allocations
            flipped = x.flip(-1)
            out = torch.where(flip.view(B, 1, 1, 1), flipped, x, out=flipped)

        if cfg.color_p > 0:  # (out - mean) * c + mean + b == out * c + (mean * (1 - c) + b), with c = 1, b = 0 if off
            on = u[:, 6] < cfg.color_p
            c = torch.where(on, p[:, 8], 1.0)
            b = p[:, 7] * on
            shift = out.mean(dim=(1, 2, 3)).mul_(1 - c).add_(b)
            out.mul_(c.view(B, 1, 1, 1)).add_(shift.view(B, 1, 1, 1))

        if cfg.erase_p > 0:
            area = p[:, 10] * (H * W)
            ratio = torch.exp(p[:, 11])
            h = torch.sqrt(area * ratio).round().clamp(1, H)
            w = torch.sqrt(area / ratio).round().clamp(1, W)
            y0 = (u[:, 12] * (H - h + 1)).floor()
            x0 = (u[:, 13] * (W - w + 1)).floor()
            rows, cols = _arange(H, x.device).view(1, H), _arange(W, x.device).view(1, W)
            # the box is separable: rows [B, H] times columns [B, W], a 0/1 float mask [B, 1, H, W], and
            # lerp with a weight of exactly 0 or 1 returns exactly the image or the fill value
            in_rows = (rows >= y0.view(B, 1)) & (rows < (y0 + h).view(B, 1)) & (u[:, 9] < cfg.erase_p).view(B, 1)
            in_cols = (cols >= x0.view(B, 1)) & (cols < (x0 + w).view(B, 1))
            box = in_rows.to(out.dtype).view(B, 1, H, 1) * in_cols.to(out.dtype).view(B, 1, 1, W)
            value = u[:, 14] if cfg.erase_value is None else torch.full_like(u[:, 14], cfg.erase_value)
            out.lerp_(value.view(B, 1, 1, 1).to(out.dtype), box)
        return out.clamp_(0.0, 1.0)

    def _theta(self, u: torch.Tensor, p: torch.Tensor, flip: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``[B, 2, 3]`` matrices (output pixel -> input location) of the flip followed by the random affine.

        Images whose affine is not selected get the identity (rotation 0, zoom 1, shift 0); a flip negates the
        first row, so the output's ``x`` reads the input at ``-x``. Warping an image by the identity reproduces it
        up to float rounding (bilinear weights of 1 - 1e-6 at the pixel centres: at most ~4e-6 in [0, 1]).
        """
        cfg = self.cfg
        on = u[:, 1] < cfg.affine_p
        a = p[:, 2] * on
        s = torch.where(on, p[:, 3], 1.0)
        t = p[:, 4:6] * on[:, None]
        f = 1.0 - 2.0 * flip.to(u.dtype)  # -1: flipped
        cos, sin = torch.cos(a).div_(s), torch.sin(a).div_(s)
        return torch.stack([f * cos, -f * sin, f * t[:, 0], sin, cos, t[:, 1]], 1).view(-1, 2, 3).to(dtype)


def mixup_cutmix(x: torch.Tensor, y: torch.Tensor, num_classes: int, mixup_alpha: float = 0.2,
                 cutmix_alpha: float = 1.0, prob: float = 0.5, generator: torch.Generator | None = None):
    """Mix a batch with a shuffled copy of itself: mixup or CutMix (50/50 when both alphas are > 0).

    Args:
        x: ``float [B, C, H, W]``.
        y: ``int64 [B]`` labels or ``float [B, num_classes]`` soft targets.
        num_classes: number of classes K.
        mixup_alpha: Beta(alpha, alpha) parameter for mixup (0 = off).
        cutmix_alpha: Beta(alpha, alpha) parameter for CutMix (0 = off).
        prob: probability that the batch is mixed at all.
        generator: a ``torch.Generator`` for repeatable results (``None``: the global RNGs; the permutation is
            then drawn on ``x``'s device).

    Returns:
        ``(x_mixed [B, C, H, W], y_soft float [B, K])``; each row of ``y_soft`` sums to 1. For CutMix, ``lam`` is
        the exact fraction of pixels kept, after clipping the box to the image.
    """
    y_soft = F.one_hot(y, num_classes).to(x.dtype) if y.ndim == 1 else y.to(x.dtype)
    if y_soft.shape != (len(x), num_classes):
        raise ValueError(f"y must be [B] labels or [B, {num_classes}] soft targets for B={len(x)}, got {tuple(y.shape)}")
    gdev = generator.device if generator is not None else "cpu"
    r = torch.rand(4, generator=generator, device=gdev).tolist()
    if r[0] >= prob or (mixup_alpha <= 0 and cutmix_alpha <= 0):
        return x, y_soft
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or r[1] < 0.5)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=gdev))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    if generator is not None:
        perm = torch.randperm(len(x), generator=generator, device=gdev).to(x.device)
    else:  # drawn on the batch's device: no host-to-device copy
        perm = torch.randperm(len(x), device=x.device)
    if use_cutmix:
        H, W = x.shape[-2:]
        ch, cw = round(H * math.sqrt(1 - lam)), round(W * math.sqrt(1 - lam))
        cy, cx = int(r[2] * H), int(r[3] * W)
        y1, y2 = max(cy - ch // 2, 0), min(cy + (ch + 1) // 2, H)
        x1, x2 = max(cx - cw // 2, 0), min(cx + (cw + 1) // 2, W)
        mixed = x.clone()
        mixed[..., y1:y2, x1:x2] = x[perm, ..., y1:y2, x1:x2]
        lam = 1.0 - (y2 - y1) * (x2 - x1) / (H * W)
    else:
        mixed = torch.mul(x, lam).add_(x[perm].mul_(1 - lam))  # lam * x + (1 - lam) * x[perm]
    return mixed, lam * y_soft + (1 - lam) * y_soft[perm]
