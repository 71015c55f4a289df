"""The model registry: every model of ``fer_lib`` is created by name here.

Names: ``sota_resemote_small`` (the course's model: timm ``resnet18`` at 64 px, attention on the 8x8 grid),
``sota_resemote_small_v1|medium|large`` (timm ``resnet18|34|50``, the first design at 48 px) and
``baseline_resnet18|34|50`` (the same
backbone, stem and input size with a plain average-pooled linear head). All are :class:`SOTAResEmote`; one table,
:data:`MODELS`, holds each name's config overrides and its Grad-CAM target layer; a baseline is the SOTA config
with every module switched off.

Grad-CAM target (one column of :data:`MODELS`; :data:`GRADCAM_TARGETS` is that column as a dict): the module whose
output is the model's final conv map ``[B, C, h, w]``, the map every head reads, with gradients flowing to the
logits:

* SOTA variants: ``feature_map`` (an ``nn.Identity`` after fusion and CBAM; for ``sota_resemote_small`` 256
  channels on layer2's 8x8 grid of its 64 px input, for the 48 px designs 256 or 384 channels on 6x6). Whatever the
  switches, it is the last conv map; with fusion it is on the fusion grid.
* baselines: ``backbone.layer4`` (the last ResNet stage, 3x3 at 48x48 input; the same tensor as ``feature_map``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from torch import nn

import fer_lib
from fer_lib.models.sota_resemote import SOTAResEmote, SOTAResEmoteConfig


@dataclass(frozen=True)
class ModelSpec:
    """One registered model."""

    overrides: dict = field(default_factory=dict)  # SOTAResEmoteConfig fields, on top of the dataclass defaults
    gradcam_target: str = "feature_map"  # dotted path (model.get_submodule) of the Grad-CAM target layer


_ALL_OFF = {s: False for s in SOTAResEmoteConfig.SWITCHES}
_BASELINE = dict(_ALL_OFF, drop_path_rate=0.0, dropout=0.0)

MODELS: dict[str, ModelSpec] = {
    # the course's small model, designed for a CPU budget (64 px, stock stem): CBAM inside the residual blocks,
    # fusion and the region / anchor attention on layer2's 8x8 grid, a one-layer transformer over class, region and
    # anchor tokens only; training cost and the paired comparison with the baseline: docs/results/models.md
    # (sections 5-10 call it by its earlier name, sota_resemote_small_lean). Trained and bundled:
    # fer_lib.pretrained("fer2013_sota_resemote_small").
    "sota_resemote_small": ModelSpec(dict(
        backbone="resnet18", stem="default", input_size=64, cbam_where="blocks", fusion_grid="first",
        transformer_dim=128, transformer_depth=1, transformer_map_tokens=False, drop_path_rate=0.0, dropout=0.0)),
    # the first small design (48 px, every module on the fused 6x6 map): kept because the `ablation` preset and its
    # published 15-minute table (docs/results/training.md) measure it, and medium / large still follow it
    "sota_resemote_small_v1": ModelSpec(dict(backbone="resnet18", drop_path_rate=0.05, dropout=0.2)),
    "sota_resemote_medium": ModelSpec(dict(backbone="resnet34", drop_path_rate=0.1, dropout=0.3)),
    "sota_resemote_large": ModelSpec(dict(
        backbone="resnet50", fusion_dim=384, transformer_dim=384, transformer_depth=3, transformer_heads=6,
        drop_path_rate=0.1, dropout=0.3)),
    "baseline_resnet18": ModelSpec(dict(backbone="resnet18", **_BASELINE), "backbone.layer4"),
    "baseline_resnet34": ModelSpec(dict(backbone="resnet34", **_BASELINE), "backbone.layer4"),
    "baseline_resnet50": ModelSpec(dict(backbone="resnet50", **_BASELINE), "backbone.layer4"),
}
"""The registry: every model ``fer_lib`` builds by name, SOTA variants first."""

GRADCAM_TARGETS: dict[str, str] = {name: spec.gradcam_target for name, spec in MODELS.items()}
"""Registered name -> Grad-CAM target layer (a view of :data:`MODELS`)."""


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, SOTA variants first."""
    return list(MODELS)


def model_config(name: str, **overrides) -> SOTAResEmoteConfig:
    """The config of a registered name, with ``overrides`` (field names of :class:`SOTAResEmoteConfig`) applied."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {list_models()}")
    fields = {f.name for f in dataclasses.fields(SOTAResEmoteConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"create_model({name!r}): unknown option(s) {unknown}; valid options are {sorted(fields)}")
    return SOTAResEmoteConfig(**{**MODELS[name].overrides, **overrides})


def create_model(
    name: str, *, num_classes: int = fer_lib.NUM_CLASSES, in_chans: int = 1, pretrained: bool = False, **overrides
) -> nn.Module:
    """Create a registered model.

    Args:
        name: one of :func:`list_models`.
        num_classes: output logits (7 for FER2013).
        in_chans: 1 (grayscale) or 3 (the gray channel repeated).
        pretrained: load timm's ImageNet backbone weights; without network access (and no cached copy) this
            raises ``RuntimeError`` saying so.
        **overrides: any :class:`SOTAResEmoteConfig` field, e.g. ``cbam=False`` for an ablation.

    Returns:
        A :class:`SOTAResEmote` in training mode with ``.config`` and ``.model_name``.

    Example:
        >>> model = create_model("sota_resemote_small_v1", transformer=False).eval()
        >>> model(torch.zeros(2, 1, 48, 48)).shape
        torch.Size([2, 7])
    """
    cfg = model_config(name, num_classes=num_classes, in_chans=in_chans, **overrides)
    return SOTAResEmote(cfg, model_name=name, pretrained=pretrained)


def build_model(name: str, config_dict: dict) -> nn.Module:
    """Rebuild a model from a checkpoint's ``model_name`` and ``model_config`` (``cfg.to_dict()``), untrained.

    Load the weights afterwards with ``model.load_state_dict(ckpt["model"])``.

    Raises:
        ValueError: ``name`` is not a registered model (a checkpoint of another architecture).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: fer_lib builds only {list_models()}")
    if not isinstance(config_dict, dict):
        raise TypeError(f"build_model: config_dict must be a dict (cfg.to_dict()), got {type(config_dict).__name__}")
    return SOTAResEmote(SOTAResEmoteConfig.from_dict(config_dict), model_name=name)


def gradcam_target_layer(model: nn.Module) -> nn.Module:
    """The Grad-CAM target layer of a registered model (see :data:`GRADCAM_TARGETS`).

    Models with an unregistered ``model_name`` fall back to their ``feature_map`` module.
    """
    name = getattr(model, "model_name", None)
    path = MODELS[name].gradcam_target if name in MODELS else "feature_map"
    try:
        return model.get_submodule(path)
    except AttributeError as e:
        raise ValueError(
            f"gradcam_target_layer: model {name!r} has no submodule {path!r}; build it with "
            "fer_lib.models.create_model or register it in fer_lib.models.registry.MODELS"
        ) from e


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "GRADCAM_TARGETS", "MODELS", "ModelSpec", "build_model", "count_parameters", "create_model", "gradcam_target_layer", "list_models",
    "model_config",
]
