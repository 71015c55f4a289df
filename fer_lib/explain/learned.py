"""What a trained SOTAResEmote learned, module by module: the numbers behind notebook 10's figures.

Notebooks 02-06 show each attention module on an untrained network, where every gate sits near 0.5 and every
anchor where it was put. These functions read the same quantities from any SOTAResEmote (trained or not) on a batch
of faces, so a notebook can put the bundled course model (``fer_lib.pretrained("fer2013_sota_resemote_small")``)
beside an untrained copy and show what training changed:

* :func:`cbam_gates`: every CBAM's channel gate ``[B, C]`` and spatial gate ``[B, h, w]`` (Woo et al. 2018,
  https://arxiv.org/abs/1807.06521), the residual blocks' first in depth order, then the fused map's;
* :func:`region_maps_by_class`: the facial-region attention maps averaged per predicted class;
* :func:`anchor_shift`: where each anchor started, where training moved it, and its width before and after;
* :func:`learned_scalars`: GeM's exponent ``p`` (1 = average pooling) and the stage-fusion weights.

Attention rollout of the transformer is :func:`fer_lib.explain.attention.get_attention`'s ``"rollout"``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fer_lib.explain.attention import get_attention
from fer_lib.inference.models import eval_mode, to_model_input
from fer_lib.layers import CBAM


def _cbams(model: nn.Module) -> list[tuple[str, CBAM]]:
    """``(name, module)`` of every CBAM: the residual blocks' (``layer2.0`` ...) in depth order, then the map's."""
    found = [(name.removeprefix("backbone.").removesuffix(".se"), m) for name, m in model.named_modules()
             if isinstance(m, CBAM) and name.endswith(".se")]
    if isinstance(getattr(model, "cbam", None), CBAM):
        found.append(("fused map", model.cbam))
    return found


@torch.no_grad()
def cbam_gates(model: nn.Module, images) -> list[dict]:
    """Each CBAM's gates on ``images`` (uint8 faces ``[B, 48, 48]`` or preprocessed input).

    Returns:
        One dict per CBAM, in the order of :func:`_cbams`: ``name``, ``channel`` ``float32 [B, C]`` (the channel
        gate of each face) and ``spatial`` ``float32 [B, h, w]`` (the spatial gate, computed on the channel-gated
        map as in the module). Empty when the model has no CBAM.
    """
    found = _cbams(model)
    seen: dict[int, dict] = {}

    def hook(module, inputs, output, key):
        x = inputs[0]
        channel = module.channel.gate(x)
        seen[key] = {"channel": channel[:, :, 0, 0].float().cpu().numpy(),
                     "spatial": module.spatial.gate(x * channel)[:, 0].float().cpu().numpy()}

    handles = [m.register_forward_hook(lambda mod, i, o, key=k: hook(mod, i, o, key)) for k, (_, m) in enumerate(found)]
    try:
        with eval_mode(model):
            model(to_model_input(images, model))
    finally:
        for h in handles:
            h.remove()
    return [{"name": name, **seen[k]} for k, (name, _) in enumerate(found)]


def region_maps_by_class(model: nn.Module, images, num_classes: int = 7) -> dict:
    """The region attention maps averaged over the faces the model assigns to each class.

    Returns:
        ``region_names``, ``maps`` ``float32 [classes, R, h, w]`` (zeros for a class no face was assigned to),
        ``counts`` ``int64 [classes]`` (faces per predicted class) and ``predicted`` ``int64 [B]``.

    Raises:
        ValueError: the model has no region attention.
    """
    att = get_attention(model, images)
    if "regions" not in att:
        raise ValueError(f"{getattr(model, 'model_name', type(model).__name__)} has no region attention")
    pred = att["probs"].argmax(1)
    regions = att["regions"]
    maps = np.zeros((num_classes, *regions.shape[1:]), np.float32)
    counts = np.bincount(pred, minlength=num_classes).astype(np.int64)
    for c in range(num_classes):
        if counts[c]:
            maps[c] = regions[pred == c].mean(0)
    return {"region_names": att["region_names"], "maps": maps, "counts": counts, "predicted": pred.astype(np.int64)}


@torch.no_grad()
def anchor_shift(model: nn.Module, face_size: int = 48) -> dict:
    """Where training moved the anchors.

    Returns:
        ``names``, ``initial`` and ``learned`` ``float32 [K, 2]`` ((x, y) in ``[0, 1]``), ``moved_px``
        ``float32 [K]`` (the distance in pixels of a ``face_size`` face), ``sigma_initial`` (the config's
        width) and ``sigma_learned`` ``float32 [K]``, both in image units.

    Raises:
        ValueError: the model has no anchor attention.
    """
    anchor = getattr(model, "anchor", None)
    if anchor is None:
        raise ValueError(f"{getattr(model, 'model_name', type(model).__name__)} has no anchor attention")
    initial = anchor.initial_positions.float().cpu().numpy()
    learned = anchor.anchor_positions().float().cpu().numpy()
    return {"names": list(anchor.anchor_names), "initial": initial, "learned": learned,
            "moved_px": (np.linalg.norm(learned - initial, axis=1) * face_size).astype(np.float32),
            "sigma_initial": float(model.config.anchor_sigma),
            "sigma_learned": anchor.log_sigma.exp()[:, 0].float().cpu().numpy()}


@torch.no_grad()
def learned_scalars(model: nn.Module) -> dict:
    """GeM's exponent and the stage-fusion weights.

    Returns:
        ``gem_p`` (the exponent the forward uses, ``p`` clamped at 1; ``None`` without GeM) and ``fusion``
        (``{"layer2 8x8": weight, ...}`` summing to 1; ``None`` without fusion), stage names with their grids.
    """
    pool = getattr(model, "pool", None)
    gem_p = float(pool.p.detach().clamp(min=1.0)) if pool is not None and hasattr(pool, "p") else None
    fusion = getattr(model, "fusion", None)
    weights = None
    if fusion is not None:
        grids = model._stage_grids()
        stages = [f"layer{i + 2} {h}x{w}" for i, (h, w) in enumerate(grids[-len(grids):])]
        weights = {s: float(v) for s, v in zip(stages, fusion.fusion_weights().float().cpu())}
    return {"gem_p": gem_p, "fusion": weights}


__all__ = ["anchor_shift", "cbam_gates", "learned_scalars", "region_maps_by_class"]
