"""The model's *own* attention drawn on the face (as opposed to post-hoc Grad-CAM).

``model.attention_maps(x)`` (see ``docs/DESIGN.md``) returns, for the modules that are switched on:

* ``"cbam"``: CBAM spatial gates ``[B, 1, h, w]`` in (0, 1) (Woo et al. 2018, https://arxiv.org/abs/1807.06521);
* ``"regions"`` ``[B, R, h, w]`` + ``"region_names"``: one spatial softmax per facial region;
* ``"anchors"`` ``[K, 2]`` (x, y) in ``[0, 1]`` + ``"anchor_names"``: the learned landmark positions;
* ``"transformer"``: per layer ``[B, heads, T, T]``; token 0 is the class token, then the ``h*w`` map cells
  (when the model has map tokens), the regions and the anchors.

Raw attention of the last layer says little about which *input* cells the class token used, because each
layer mixes tokens again. Attention rollout (Abnar & Zuidema 2020, https://arxiv.org/abs/2005.00928) follows
the flow through the layers: with ``A_l`` the head-averaged attention of layer ``l`` and the residual path
modelled as ``0.5 I``, ``Â_l = rownorm(0.5 A_l + 0.5 I)`` and ``R = Â_L ... Â_2 Â_1``; row 0 of ``R`` over
the map-cell columns is the class token's attention on the ``h x w`` grid. The course's ``sota_resemote_small`` has
no map tokens (only region and anchor tokens): :func:`token_rollout` then spreads each token's share over that
token's own spatial map.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from fer_lib import EMOTIONS
from fer_lib.explain.plots import DISPLAY_SIZE, overlay_cam, upsample_face
from fer_lib.inference.models import eval_mode, to_model_input, to_uint8_faces


def attention_rollout(attentions, head_fusion: str = "mean", residual: bool = True) -> torch.Tensor:
    """Attention rollout over layers (Abnar & Zuidema 2020).

    Args:
        attentions: per layer, attention weights ``[B, heads, T, T]`` (rows sum to 1), first layer first.
        head_fusion: ``"mean"``, ``"max"`` or ``"min"`` over heads.
        residual: model the skip connection as ``0.5 A + 0.5 I`` (the paper's choice).

    Returns:
        ``[B, T, T]``; row ``i`` is how much token ``i`` of the last layer draws on each input token.
    """
    if not attentions:
        raise ValueError("attention_rollout needs at least one layer of attention weights")
    fuse = {"mean": lambda a: a.mean(1), "max": lambda a: a.amax(1), "min": lambda a: a.amin(1)}.get(head_fusion)
    if fuse is None:
        raise ValueError(f"head_fusion={head_fusion!r}: choose 'mean', 'max' or 'min'")
    result = None
    for layer, a in enumerate(attentions):
        if a.ndim != 4 or a.shape[-1] != a.shape[-2]:
            raise ValueError(f"attention layer {layer} has shape {tuple(a.shape)}: expected [B, heads, T, T]")
        a = fuse(a.detach().float())
        if residual:
            a = 0.5 * a + 0.5 * torch.eye(a.shape[-1], device=a.device)
        a = a / a.sum(-1, keepdim=True).clamp_min(1e-12)
        result = a if result is None else a @ result
    return result


def class_token_map(attentions, token_grid: tuple[int, int], **kwargs) -> np.ndarray:
    """Class-token rollout on the map grid: ``float32 [B, h, w]`` (token 0 = class, tokens 1..h*w = cells)."""
    h, w = token_grid
    roll = attention_rollout(attentions, **kwargs)
    if roll.shape[-1] < 1 + h * w:
        raise ValueError(f"{roll.shape[-1]} tokens cannot hold a class token and a {h}x{w} grid")
    return roll[:, 0, 1:1 + h * w].reshape(-1, h, w).cpu().numpy().astype(np.float32)


@torch.no_grad()
def get_attention(model, images) -> dict:
    """``model.attention_maps`` on faces (uint8 or preprocessed), as numpy, with the rollout added.

    Returns a dict with ``"faces"`` (uint8 ``[B,48,48]``), ``"probs"`` ``[B, classes]`` and, when present,
    ``"cbam"`` ``[B, h, w]`` (last CBAM), ``"regions"`` ``[B, R, h, w]``, ``"region_names"``, ``"anchors"``
    ``[K, 2]``, ``"anchor_names"``, ``"rollout"`` ``[B, h, w]``, ``"token_grid"``. Mode is restored.
    """
    if not hasattr(model, "attention_maps"):
        raise TypeError(f"{type(model).__name__} has no attention_maps(x); use a fer_lib SOTAResEmote model")
    with eval_mode(model):
        maps = model.attention_maps(to_model_input(images, model))
    is_float = torch.is_tensor(images) and images.is_floating_point()  # preprocessed input: no pixels to show
    out: dict = {"faces": None if is_float else to_uint8_faces(images), "token_grid": tuple(maps.get("token_grid", ()))}
    if "logits" in maps:
        out["probs"] = torch.softmax(maps["logits"].float(), 1).cpu().numpy()
    if maps.get("cbam"):
        out["cbam"] = maps["cbam"][-1][:, 0].float().cpu().numpy()
    if "regions" in maps:
        out["regions"] = maps["regions"].float().cpu().numpy()
        out["region_names"] = list(maps["region_names"])
    if "anchors" in maps:
        out["anchors"] = maps["anchors"].float().cpu().numpy()
        out["anchor_names"] = list(maps["anchor_names"])
    if maps.get("transformer"):
        if getattr(getattr(model, "transformer", None), "map_tokens", True):
            out["rollout"] = class_token_map(maps["transformer"], out["token_grid"])
        else:  # only region and anchor tokens: spread each token's share over its own map
            out.update(token_rollout(maps))
    return out


def token_rollout(maps: dict) -> dict:
    """The class token's rollout when the transformer sees only region and anchor tokens (no map cells).

    Row 0 of the rollout, without the class token's own column and renormalised, gives each region / anchor token
    its share ``w_t``; each token's spatial map ``M_t`` (a softmax over the grid) says where that token looks, so
    ``sum_t w_t M_t`` is where the class token looks on the grid.

    Args:
        maps: ``model.attention_maps(x)`` with ``"transformer"``, ``"regions"`` and / or ``"anchor_maps"``.

    Returns:
        ``"rollout_tokens"`` ``float32 [B, T]`` (rows sum to 1), ``"rollout_token_names"`` and ``"rollout"``
        ``float32 [B, h, w]``.
    """
    spatial, names = [], []
    if "regions" in maps:
        spatial.append(maps["regions"])
        names += [f"region:{n}" for n in maps["region_names"]]
    if "anchor_maps" in maps:
        spatial.append(maps["anchor_maps"])
        names += [f"anchor:{n}" for n in maps["anchor_names"]]
    roll = attention_rollout(maps["transformer"])[:, 0, 1:]  # [B, T]: the class token's draw on the other tokens
    if not spatial or roll.shape[-1] != len(names):
        raise ValueError(f"the transformer has {roll.shape[-1]} non-class tokens but the model returned maps for "
                         f"{len(names)} region / anchor tokens")
    share = roll / roll.sum(-1, keepdim=True).clamp_min(1e-12)
    where = torch.einsum("bt,bthw->bhw", share, torch.cat(spatial, dim=1).float())
    return {"rollout_tokens": share.cpu().numpy().astype(np.float32), "rollout_token_names": names,
            "rollout": where.cpu().numpy().astype(np.float32)}


def plot_anchors(ax, face, anchors: np.ndarray, names, size: int = DISPLAY_SIZE) -> None:
    """Scatter the anchors (``[K, 2]`` (x, y) in ``[0, 1]``) with their names on the face."""
    ax.imshow(upsample_face(face, size), cmap="gray", vmin=0, vmax=255)
    xy = np.asarray(anchors) * size
    ax.scatter(xy[:, 0], xy[:, 1], s=22, c="tab:red", edgecolors="white", linewidths=0.6)
    for (x, y), name in zip(xy, names):
        ax.annotate(str(name), (x, y), xytext=(3, -3), textcoords="offset points", fontsize=6, color="yellow")


def plot_attention(model, images, n: int = 3, *, size: int = 128, cmap: str = "jet") -> Figure:
    """One row per face: the face, CBAM's spatial gate, one panel per facial region, the anchors and the
    class token's attention rollout -- whichever the model has switched on.

    Args:
        model: a fer_lib ``SOTAResEmote`` (any mode; restored afterwards).
        images: uint8 faces ``[B, 48, 48]``; the first ``n`` are drawn.
        n: faces (rows).
        size: pixels per panel; cmap: colormap of the maps.
    """
    faces = to_uint8_faces(images)[:n]
    att = get_attention(model, faces)
    cols = [("face", None)]
    if "cbam" in att:
        cols.append(("CBAM spatial", "cbam"))
    for r, name in enumerate(att.get("region_names", [])):
        cols.append((f"region: {name}", ("regions", r)))
    if "anchors" in att:
        cols.append(("anchors", "anchors"))
    if "rollout" in att:
        cols.append(("class-token rollout", "rollout"))
    fig = Figure(figsize=(1.7 * len(cols), 1.85 * len(faces)), layout="constrained")
    axes = fig.subplots(len(faces), len(cols), squeeze=False)
    for i, face in enumerate(faces):
        for j, (title, key) in enumerate(cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=8)
            if key is None:
                ax.imshow(upsample_face(face, size), cmap="gray", vmin=0, vmax=255)
                if "probs" in att:
                    p = att["probs"][i]
                    ax.set_xlabel(f"{EMOTIONS[int(p.argmax())]} {p.max():.2f}", fontsize=8)
            elif key == "anchors":
                plot_anchors(ax, face, att["anchors"], att["anchor_names"], size)
            else:
                heat = att[key[0]][i, key[1]] if isinstance(key, tuple) else att[key][i]
                # CBAM gates are absolute (0..1); softmax maps and rollout are relative, so scale them.
                ax.imshow(overlay_cam(face, heat, size=size, cmap=cmap, normalize=key != "cbam"))
    return fig
