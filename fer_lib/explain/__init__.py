"""Explaining fer_lib models: Grad-CAM / Grad-CAM++ / EigenCAM, the model's own attention, and whether the
maps are faithful (deletion curves).

* :mod:`fer_lib.explain.cam`: :class:`FERCam`, :func:`compute_cam` (``float32 [B, 48, 48]`` in ``[0, 1]``).
* :mod:`fer_lib.explain.plots`: :func:`overlay_cam` (maps on faces at a readable size), :func:`cam_grid`.
* :mod:`fer_lib.explain.attention`: :func:`attention_rollout`, :func:`get_attention`, :func:`plot_attention`.
* :mod:`fer_lib.explain.learned`: what each module of a trained SOTAResEmote learned (:func:`cbam_gates`,
  :func:`region_maps_by_class`, :func:`anchor_shift`, :func:`learned_scalars`).
* :mod:`fer_lib.explain.faithfulness`: :func:`deletion_curve`, :func:`plot_deletion`.

Figures are ``matplotlib.figure.Figure`` objects made without pyplot (no global state, no leaks in loops);
in a notebook they show when they are a cell's last expression or with ``display(fig)``; ``fig.savefig(path)``
writes them.
"""

from fer_lib.explain.attention import (
    attention_rollout,
    class_token_map,
    get_attention,
    plot_attention,
    token_rollout,
)
from fer_lib.explain.cam import METHODS, FERCam, compute_cam, resolve_method, tokens_to_map
from fer_lib.explain.faithfulness import DeletionResult, delete_pixels, deletion_curve, plot_deletion
from fer_lib.explain.learned import anchor_shift, cbam_gates, learned_scalars, region_maps_by_class
from fer_lib.explain.plots import cam_grid, colorize, overlay_cam, upsample_face, upsample_map

__all__ = [
    "METHODS", "DeletionResult", "FERCam", "anchor_shift", "attention_rollout", "cam_grid", "cbam_gates",
    "class_token_map", "colorize", "compute_cam", "delete_pixels", "deletion_curve", "get_attention",
    "learned_scalars", "overlay_cam", "plot_attention", "plot_deletion", "region_maps_by_class", "resolve_method",
    "token_rollout", "tokens_to_map", "upsample_face", "upsample_map",
]
