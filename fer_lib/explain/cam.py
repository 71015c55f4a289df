"""Class activation maps (Grad-CAM, Grad-CAM++, EigenCAM) for every fer_lib model, via ``pytorch_grad_cam``.

* Grad-CAM (Selvaraju et al. 2017, https://arxiv.org/abs/1610.02391): weight each channel of a target layer
  by the spatial mean of the class score's gradient, sum, ReLU.
* Grad-CAM++ (Chattopadhay et al. 2018, https://arxiv.org/abs/1710.11063): higher-order gradient weights,
  better when a class shows up in several places (e.g. both brows).
* EigenCAM (Muhammad & Yeasin 2020, https://arxiv.org/abs/2008.00299): first principal component of the
  activations; class-agnostic and gradient-free. The SVD's sign is arbitrary, so we use the package's sign
  correction (flip when ``|min| > |max|``; Chung & Ying 2025, https://doi.org/10.3390/app15137562).

What this wrapper adds to the package:

1. the right target layer for every variant (``fer_lib.models.gradcam_target_layer``), and a
   ``reshape_transform`` that turns transformer tokens ``[B, T, D]`` into a map ``[B, D, h, w]``; for an
   ensemble (``fer_lib.pretrained("ensemble")``), the mean of its members' maps for the ensemble's class;
2. the model wrapped so that CAM always sees one logits tensor (never a ``ModelOutput``);
3. the model's train/eval mode restored afterwards, also on exceptions; no hooks left behind;
4. an out-of-range class raises ``ValueError`` *before* the package runs (its ``__exit__`` swallows
   ``IndexError``, which would otherwise turn a typo into a silent empty result).

Example::

    with FERCam(model, method="gradcam") as cam:
        maps = cam(images_uint8)            # np.ndarray [B, 48, 48] in [0, 1], for the predicted class
        maps = cam(images_uint8, targets=3)  # for "happy"
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction
from torch import nn

from fer_lib.inference.models import LogitsOnly, eval_mode, model_num_classes, to_model_input
from fer_lib.inference.proba import predict_proba
from fer_lib.models import gradcam_target_layer


class _SignCorrectedEigenCAM(EigenCAM):
    """EigenCAM whose principal component is oriented so the salient part is positive."""

    def get_cam_image(self, input_tensor, target_layer, target_category, activations, grads, eigen_smooth):
        return get_2d_projection_with_sign_correction(activations)


METHODS: dict[str, type] = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "eigencam": _SignCorrectedEigenCAM}
"""CAM methods by name. Aliases: ``gradcampp``, ``gradcam_plusplus``, ``grad-cam`` ... (case and ``-``/``_``
are ignored)."""

_ALIASES = {"gradcam": "gradcam", "gradcampp": "gradcam++", "gradcam++": "gradcam++",
            "gradcamplusplus": "gradcam++", "eigencam": "eigencam", "eigen": "eigencam"}


def resolve_method(method: str) -> str:
    """Canonical method name (``"gradcam"``, ``"gradcam++"`` or ``"eigencam"``); raises naming the choices."""
    key = str(method).lower().replace("-", "").replace("_", "").replace(" ", "")
    if key not in _ALIASES:
        raise ValueError(f"unknown CAM method {method!r}; choose one of {sorted(METHODS)}")
    return _ALIASES[key]


def tokens_to_map(tensor: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """``reshape_transform`` for ``pytorch_grad_cam``: tokens ``[B, T, D]`` -> map ``[B, D, h, w]``.

    A 4-D tensor (a convolutional map) passes through unchanged, so the same transform serves every
    variant. With ``T = h*w + 1`` the first token is taken as the class token and dropped (it has no
    position). Without ``grid`` the token count must be a square (or a square plus one).
    """
    if isinstance(tensor, (tuple, list)):
        tensor = tensor[0]
    if tensor.ndim == 4:
        return tensor
    if tensor.ndim != 3:
        raise ValueError(f"CAM target layer output of shape {tuple(tensor.shape)}: expected [B, C, h, w] "
                         "or transformer tokens [B, T, D]")
    b, t, d = tensor.shape
    if grid is None:
        side = math.isqrt(t)
        grid = (side, side) if side * side == t else (math.isqrt(t - 1),) * 2
    h, w = grid
    if t == h * w + 1:
        tensor = tensor[:, 1:]
    elif t != h * w:
        raise ValueError(f"{t} tokens do not fit a {h}x{w} token grid (expected {h * w} or {h * w + 1} "
                         "with a class token); pass token_grid=(h, w)")
    return tensor.reshape(b, h, w, d).permute(0, 3, 1, 2)


def _normalise_targets(targets, n: int, num_classes: int) -> list[int] | None:
    if targets is None:
        return None
    if isinstance(targets, torch.Tensor):
        targets = targets.detach().cpu().reshape(-1).tolist()
    elif isinstance(targets, np.ndarray):
        targets = targets.reshape(-1).tolist()
    if isinstance(targets, (bool, np.bool_)):
        raise TypeError(f"targets={targets!r} is a bool, not a class index")
    if isinstance(targets, (int, np.integer)):
        targets = [int(targets)] * n
    if not isinstance(targets, Sequence):
        raise TypeError(f"targets must be None, an int or a sequence of ints, not {type(targets).__name__}")
    if len(targets) != n:
        raise ValueError(f"got {len(targets)} targets for {n} images; pass one class per image, one int, or None")
    out = []
    for i, t in enumerate(targets):
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
            raise TypeError(f"targets[{i}] = {t!r} is not a class index (int)")
        if not 0 <= int(t) < num_classes:
            raise ValueError(f"targets[{i}] = {int(t)} is out of range: the model has {num_classes} classes "
                             f"(valid: 0..{num_classes - 1})")
        out.append(int(t))
    return out


class FERCam:
    """Class activation maps for a fer_lib model, in the style of ``pytorch_grad_cam``.

    Args:
        model: any fer_lib classifier (``SOTAResEmote`` or baseline), in any mode. It is put in eval mode
            for each call and every submodule's mode is restored afterwards.
        method: ``"gradcam"``, ``"gradcam++"`` or ``"eigencam"``.
        target_layer: the layer to explain. Default: ``fer_lib.models.gradcam_target_layer(model)``.
        token_grid: ``(h, w)`` of a transformer token target layer, when the token count is ambiguous.
        batch_size: images per forward/backward pass.

    Call with faces (``uint8 [B,48,48]`` / ``[B,1,48,48]`` / ``[48,48]``, or an already preprocessed float
    tensor ``[B,C,48,48]``) and ``targets`` (``None`` = predicted class, an int, or one int per image).
    Returns ``np.ndarray float32 [B, 48, 48]``, each map min-max scaled to ``[0, 1]``. After a call,
    ``last_targets`` (``int64 [B]``) and ``last_probs`` (``float32 [B, classes]``) hold what was explained.
    """

    def __init__(self, model: nn.Module, method: str = "gradcam", *, target_layer: nn.Module | None = None,
                 token_grid: tuple[int, int] | None = None, batch_size: int = 64):
        self.model = model
        self.method = resolve_method(method)
        # an ensemble (fer_lib.inference.EnsembleModel) has no layer of its own: its map is the mean of its
        # members' maps, each for the ensemble's class
        members = getattr(model, "members", None) if target_layer is None else None
        self._members = [FERCam(m, method, token_grid=token_grid, batch_size=batch_size) for m in members] \
            if members is not None else None
        if target_layer is None and self._members is None:
            target_layer = gradcam_target_layer(model)
        self.target_layer = target_layer
        self.token_grid = token_grid
        self.batch_size = int(batch_size)
        self.num_classes = model_num_classes(model)
        self.last_targets: np.ndarray | None = None
        self.last_probs: np.ndarray | None = None
        self._in_block = False
        self._held = None  # inside ``with``: the package's CAM object, its hooks on target_layer

    def __enter__(self) -> FERCam:
        """Inside the block, the first call hooks the target layer and every later call reuses the hooks; they are
        removed when the block ends (outside a block, each call hooks and unhooks)."""
        self._in_block = True
        for member in self._members or ():
            member.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:  # never swallows errors
        self._in_block = False
        self.release()

    def release(self) -> None:
        """Remove the hooks held for the ``with`` block (``__exit__`` calls it; safe to call twice)."""
        if self._held is not None:
            self._held.activations_and_grads.release()
            self._held = None
        for member in self._members or ():
            member._in_block = False
            member.release()

    def _make_cam(self):
        return METHODS[self.method](LogitsOnly(self.model), [self.target_layer], reshape_transform=self._reshape())

    def _reshape(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda t: tokens_to_map(t, self.token_grid)

    def __call__(self, images, targets=None) -> np.ndarray:
        x = to_model_input(images, self.model)
        n = x.shape[0]
        wanted = _normalise_targets(targets, n, self.num_classes)  # raises before the package runs
        if self._members is not None:
            return self._ensemble_call(x, wanted)
        maps, used, probs = [], [], []
        saved_grads = [(p, p.grad) for p in self.model.parameters()]  # the package zeroes them; we restore
        with eval_mode(self.model), torch.enable_grad():
            cam = self._held if self._held is not None else self._make_cam()
            if self._in_block:
                self._held = cam
            try:
                for start in range(0, n, self.batch_size):
                    xb = x[start:start + self.batch_size].detach().clone().requires_grad_(True)
                    if wanted is None:
                        cam_targets = None
                    else:
                        cam_targets = [ClassifierOutputTarget(t) for t in wanted[start:start + len(xb)]]
                    maps.append(cam(input_tensor=xb, targets=cam_targets))
                    logits = cam.outputs.detach().float()
                    probs.append(torch.softmax(logits, dim=1).cpu().numpy())
                    chosen = logits.argmax(1).cpu().numpy() if wanted is None else \
                        np.asarray(wanted[start:start + len(xb)])
                    used.append(chosen)
            finally:
                if cam is not self._held:
                    cam.activations_and_grads.release()  # remove the hooks even when the call failed
                else:
                    cam.activations_and_grads.gradients, cam.activations_and_grads.activations = [], []
                for p, g in saved_grads:
                    p.grad = g
        self.last_targets = np.concatenate(used).astype(np.int64)
        self.last_probs = np.concatenate(probs).astype(np.float32)
        out = np.concatenate(maps).astype(np.float32)
        return np.nan_to_num(np.clip(out, 0.0, 1.0))


    def _ensemble_call(self, x: torch.Tensor, wanted: list[int] | None) -> np.ndarray:
        """The mean of the members' maps, each for the ensemble's class (or the ``wanted`` ones)."""
        probs = predict_proba(self.model, x, batch_size=self.batch_size).numpy()
        targets = probs.argmax(1).tolist() if wanted is None else wanted
        maps = np.mean([member(x, targets=targets) for member in self._members], axis=0)
        self.last_targets = np.asarray(targets, dtype=np.int64)
        self.last_probs = probs.astype(np.float32)
        return maps.astype(np.float32)


def compute_cam(model: nn.Module, images, target=None, method: str = "gradcam", **kwargs) -> np.ndarray:
    """One-shot :class:`FERCam`: CAMs ``float32 [B, 48, 48]`` in ``[0, 1]`` for ``images``.

    Args:
        model: a fer_lib classifier.
        images: ``uint8`` faces (``[48,48]``, ``[B,48,48]``, ``[B,1,48,48]``) or a preprocessed float tensor.
        target: ``None`` (predicted class), an int, or one int per image.
        method: ``"gradcam"``, ``"gradcam++"`` or ``"eigencam"``.
        **kwargs: passed to :class:`FERCam` (``target_layer``, ``token_grid``, ``batch_size``).
    """
    with FERCam(model, method=method, **kwargs) as cam:
        return cam(images, targets=target)
