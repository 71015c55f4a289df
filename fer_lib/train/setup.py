"""Everything :func:`fer_lib.train.train` builds before the first step: data, model, optimiser, loss, precision.

Kept apart from the loop (``engine.py``) so each piece can be read, tested and reused on its own
(the notebooks call :func:`load_training_data` and :func:`build_optimizer` directly);
:func:`fer_lib.train.run.build_run` assembles them into one run.
"""

from __future__ import annotations

import os
import random
import warnings
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fer_lib import NUM_CLASSES
from fer_lib.data import load_fer2013, load_synthetic, split_by_name
from fer_lib.models import create_model
from fer_lib.paths import find_fer2013
from fer_lib.train.config import TrainConfig


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and all CUDA devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A distinct, reproducible seed for ``(seed, epoch, rank)``: the loop re-seeds with it every epoch, so an
    epoch's augmentation, mixing and dropout never depend on what ran before (exact ``resume``)."""
    return (int(seed) * 1_000_003 + int(epoch) * 1_009 + int(rank) * 7 + 1) % 2**31


def load_training_data(cfg: TrainConfig):
    """The :class:`fer_lib.data.FERData` that ``cfg.data`` / ``cfg.data_root`` ask for.

    ``"auto"`` uses FER2013 when ``fer_lib.paths.find_fer2013`` finds it and the synthetic faces otherwise;
    an explicit ``data_root`` that does not exist is an error, never a silent fallback.
    """
    if cfg.data == "synthetic":
        return load_synthetic(n_train=cfg.synthetic_train, n_val=cfg.synthetic_val, seed=0)
    root = find_fer2013(cfg.data_root)
    if cfg.data == "auto" and cfg.data_root is None and (root is None or not root.exists()):
        return load_synthetic(n_train=cfg.synthetic_train, n_val=cfg.synthetic_val, seed=0)
    return load_fer2013(root, on_error=cfg.on_error)


def select_splits(cfg: TrainConfig, data):
    """``(train_split, val_split)`` by name, each cut to its stratified subset size when one is set."""
    train_split = split_by_name(data, cfg.train_split)
    val_split = split_by_name(data, cfg.val_split)
    if cfg.subset_train is not None and cfg.subset_train < len(train_split):
        train_split = train_split.subset(cfg.subset_train, seed=cfg.seed)
    if cfg.subset_val is not None and cfg.subset_val < len(val_split):
        val_split = val_split.subset(cfg.subset_val, seed=cfg.seed)
    return train_split, val_split


def class_weights(labels: torch.Tensor, power: float, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Per-class weights ``(N / (K * n_k)) ** power``, rescaled so that the average weight per *sample* is 1.

    ``power=1`` is full inverse frequency (every class counts equally), ``0.5`` its square root (milder; the rare
    FER2013 class 'disgust' has 436 of 28,709 training images), ``0`` gives all ones. Classes absent from
    ``labels`` get weight 0.

    Returns:
        ``float32 [num_classes]``.
    """
    counts = torch.bincount(labels.long().cpu(), minlength=num_classes).double()
    n = counts.sum()
    w = torch.where(counts > 0, (n / (num_classes * counts.clamp(min=1))) ** power, torch.zeros_like(counts))
    w = w * n / (w * counts).sum()
    return w.float()


def balanced_indices(labels: torch.Tensor, power: float, seed: int) -> torch.Tensor:
    """``len(labels)`` indices drawn with replacement, class ``k`` with probability ``∝ n_k * w_k``.

    With ``power=1`` every class is drawn equally often. Deterministic for ``seed`` (the loop passes the epoch seed).
    """
    w = class_weights(labels, power)[labels.long().cpu()].double()
    g = torch.Generator().manual_seed(seed)
    return torch.multinomial(w, len(labels), replacement=True, generator=g)


def build_model(cfg: TrainConfig) -> nn.Module:
    """``fer_lib.models.create_model(cfg.model, in_chans=cfg.in_chans, **cfg.model_overrides)``."""
    return create_model(cfg.model, num_classes=NUM_CLASSES, in_chans=cfg.in_chans, **cfg.model_overrides)


def build_optimizer(model: nn.Module, cfg: TrainConfig, *, fused: bool | None = None) -> torch.optim.Optimizer:
    """AdamW or SGD (Nesterov); no weight decay on biases and normalisation weights (1-d parameters),
    as in Goyal et al. 2017 (https://arxiv.org/abs/1706.02677).

    Args:
        model: its trainable parameters are optimised (move it to its device first).
        cfg: ``optimizer``, ``lr``, ``weight_decay``, ``momentum``.
        fused: AdamW's fused kernel (one launch for all parameters; a GradScaler then steps it without reading
            ``found_inf`` back to the host). ``None``: on when every parameter is on a CUDA device, off elsewhere,
            so CPU training keeps torch's default (for-loop) AdamW and its exact numbers. SGD ignores it.
    """
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "adamw":
        if fused is None:
            params = decay + no_decay
            fused = bool(params) and all(p.device.type == "cuda" for p in params)
        extra = {"fused": True} if fused else {}
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999), **extra)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)


#: cuBLAS's reproducible workspace setting (https://docs.nvidia.com/cuda/cublas/#results-reproducibility).
CUBLAS_WORKSPACE = ":4096:8"


def configure_determinism(deterministic: bool, device: torch.device) -> None:
    """Set torch's global determinism switches for a run on ``device`` (what ``TrainConfig.deterministic`` means).

    ``deterministic=True``: ``torch.use_deterministic_algorithms(True)`` (strict: an operation without a
    deterministic implementation raises ``RuntimeError`` naming it, at the first step that uses it, instead of
    a warning), ``torch.backends.cudnn.deterministic = True``, ``torch.backends.cudnn.benchmark = False`` and,
    on CUDA, ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` when it is not set (cuBLAS reads it when it first starts in the
    process, so on CUDA this must run before any CUDA work; a warning says when CUDA was already initialised).
    ``deterministic=False``: cuDNN autotuning on (``benchmark = True``) on CUDA, torch's defaults otherwise.

    What is reproducible with ``True``: the same code, seed, data, world size, torch/CUDA/cuDNN versions and GPU
    model give bit-identical runs (on a CPU runs are bit-identical anyway). Not covered: another GPU model or
    library version (different kernels), ``torch.compile`` (its generated kernels may differ between
    compilations), and models using operations torch has no deterministic CUDA kernel for: the backward of
    adaptive average pooling to more than 1x1 and of bilinear ``F.interpolate``, which the multi-stage fusion of
    ``sota_resemote_*`` uses (``fer_lib/layers/fusion.py``; ``baseline_resnet*`` uses neither), raises
    ``RuntimeError`` at the first backward on CUDA instead of training irreproducibly; train such a model with
    ``deterministic=False`` or with the fusion off (``model_overrides={"fusion": False}``). TF32 matmuls stay
    on: they are deterministic.

    The switches are process-wide and stay set after training.
    """
    if deterministic:
        if device.type == "cuda" and "CUBLAS_WORKSPACE_CONFIG" not in os.environ:
            if torch.cuda.is_initialized():
                warnings.warn("deterministic=True: CUDA was initialised before training started, so setting "
                              f"CUBLAS_WORKSPACE_CONFIG={CUBLAS_WORKSPACE} now may come too late for cuBLAS; set it "
                              "in the environment before starting Python", stacklevel=2)
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True


@dataclass(frozen=True)
class Precision:
    """Mixed-precision policy: ``dtype`` for autocast (``None``: full fp32) and whether fp16 needs a GradScaler."""

    dtype: torch.dtype | None
    device_type: str

    @property
    def use_scaler(self) -> bool:
        return self.dtype == torch.float16

    def autocast(self):
        """``torch.autocast`` context (a no-op context when off)."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def __str__(self) -> str:
        return "fp32" if self.dtype is None else str(self.dtype).replace("torch.", "")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX tiles), which makes bf16 autocast fast."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def precision_for(amp: str, device: torch.device) -> Precision:
    """Resolve ``cfg.amp`` for ``device``.

    ``"auto"``: bf16 on CUDA GPUs with native bf16 (compute capability >= 8: A100, H100, RTX 30xx+), fp16 with a
    GradScaler on older ones (T4, V100), fp32 elsewhere. ``"bf16"`` on an older GPU falls back to fp16 with a
    GradScaler and one warning (so the ``cpu`` preset also runs on a T4); on a CPU without native bf16 it falls back
    to fp32 with one warning (emulated bf16 is about 13x slower there). bf16 has fp32's exponent range, so it needs no loss
    scaling (Kalamkar et al. 2019, https://arxiv.org/abs/1905.12322); fp16 does (Micikevicius et al. 2018,
    https://arxiv.org/abs/1710.03740).

    Raises:
        ValueError: ``"fp16"`` off CUDA.
    """
    if amp == "off":
        return Precision(None, device.type)
    if device.type != "cuda":
        if amp == "fp16":
            raise ValueError(f"amp='fp16' needs a CUDA device, got {device}; use amp='off' or 'bf16'")
        if amp == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
            # emulated bf16 is no saving: 0.08x fp32's training images/s for the cpu preset's model on an AVX2-only
            # CPU (docs/results/training.md); fp32 computes the same recipe, only without the rounding
            warnings.warn("amp='bf16' on a CPU without native bf16 instructions (AVX512-BF16 or AMX): bf16 would "
                          "be emulated, about 13x slower; training in fp32 instead (pass --amp off to silence this)",
                          stacklevel=2)
            return Precision(None, device.type)
        return Precision(torch.bfloat16 if amp == "bf16" else None, device.type)
    major, minor = torch.cuda.get_device_capability(device)
    native_bf16 = major >= 8
    if amp == "auto":
        return Precision(torch.bfloat16 if native_bf16 else torch.float16, "cuda")
    if amp == "bf16" and not native_bf16:  # e.g. a T4 (7.5) or V100 (7.0): bf16 would be emulated, or fail
        warnings.warn(f"amp='bf16' on {torch.cuda.get_device_name(device)} (compute capability {major}.{minor}) "
                      "without native bf16: training in fp16 with a GradScaler instead", stacklevel=2)
        return Precision(torch.float16, "cuda")
    return Precision(torch.bfloat16 if amp == "bf16" else torch.float16, "cuda")


def has_idle_parameters(model: nn.Module, cfg) -> bool:
    """Whether some parameters get no gradient in this recipe: auxiliary heads with ``cfg.aux_weight == 0`` are
    not run (``fer_lib.train.steps.wants_aux``), so DDP must be told (``find_unused_parameters``)."""
    return getattr(model, "aux_heads", None) is not None and cfg.aux_weight == 0


def model_identity(model: nn.Module) -> tuple[str, dict]:
    """``(model_name, config dict)`` stored in checkpoints (a custom module gets its class name and ``{}``)."""
    name = getattr(model, "model_name", None) or type(model).__name__
    config = getattr(model, "config", None)
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    return str(name), dict(config) if isinstance(config, dict) else {}
