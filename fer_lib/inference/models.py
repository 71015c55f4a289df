"""What every caller of a trained model needs to know about it, whatever model it is.

Three questions: how many input channels does it want (:func:`model_in_chans`), how do faces become its input
(:func:`to_model_input`, the one normalisation shared with training), and how do I get logits from it
(:func:`logits_of`, :class:`LogitsOnly`) -- without changing the model's ``train()`` / ``eval()`` state behind
the caller's back (:func:`eval_mode`). Used by evaluation, explanation, photo inference, export and the widget.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from fer_lib import NUM_CLASSES
from fer_lib.data import preprocess


def model_in_chans(model: nn.Module) -> int:
    """Number of input channels the model expects (1 = grayscale, 3 = gray repeated).

    Looks at ``model.config.in_chans`` / ``model.in_chans`` first, then at the first ``Conv2d``.
    """
    for obj in (getattr(model, "config", None), model):
        chans = getattr(obj, "in_chans", None)
        if isinstance(chans, int) and chans > 0:
            return chans
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    return 1


def resolve_device(device: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """``"auto"``: CUDA (``cuda:local_rank``), then Apple MPS, then CPU; otherwise ``torch.device(device)``.

    Raises:
        ValueError: not a device name, or CUDA (or that CUDA device) or MPS asked for but not available (names
            the fix).
    """
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {device!r} is not a device name; use --device auto, cpu, cuda, cuda:N or "
                         "mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available here; use --device cpu or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r} asked for, but this machine has {torch.cuda.device_count()} CUDA "
                         f"device(s) (cuda:0 to cuda:{torch.cuda.device_count() - 1}); use --device cuda or auto")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) is not None
                                  and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r} asked for, but MPS (Apple silicon's GPU) is not available in this torch "
                         "build or on this machine; use --device cpu or auto")
    return dev


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def model_num_classes(model: nn.Module) -> int:
    """Number of output classes: ``model.num_classes`` / ``model.config.num_classes``, else 7 (FER2013)."""
    for obj in (model, getattr(model, "config", None)):
        n = getattr(obj, "num_classes", None)
        if isinstance(n, int) and n > 0:
            return n
    return NUM_CLASSES


def logits_of(output) -> torch.Tensor:
    """Return the logits tensor from a model output (a Tensor, a ``ModelOutput`` or a tuple)."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"cannot find logits in a model output of type {type(output).__name__}; "
                    "expected a Tensor [B, classes] or an object with a .logits Tensor")


class LogitsOnly(nn.Module):
    """Wrap a model so that ``forward`` always returns one logits tensor ``[B, classes]``.

    ``pytorch_grad_cam`` indexes the model output directly, so a ``ModelOutput`` (train mode) or a
    tuple would break it. The wrapper shares the wrapped model's parameters (no copy).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return logits_of(self.model(x))


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put the model (and every submodule) in eval mode; restore each module's own mode afterwards.

    Restoration happens on exceptions too, and per module, so a model whose BatchNorm layers were
    deliberately frozen in eval mode while the rest trains comes back exactly as it was.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def to_uint8_faces(images) -> np.ndarray:
    """Faces as ``uint8 [B, 48, 48]`` from a uint8/float array or tensor of ``[48,48]``, ``[B,48,48]`` or
    ``[B,1,48,48]`` (floats in ``[0, 1]`` or ``[0, 255]``). Used for display, never for the model input."""
    arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim == 4:
        if arr.shape[1] not in (1, 3):
            raise ValueError(f"faces of shape {tuple(arr.shape)}: expected [B, C, 48, 48] with C = 1 or 3")
        arr = arr[:, 0]
    if arr.ndim != 3:
        raise ValueError(f"faces of shape {tuple(arr.shape)}: expected [48,48], [B,48,48] or [B,1,48,48]")
    if arr.dtype == np.uint8:
        return arr
    arr = arr.astype(np.float32)
    if arr.max(initial=0.0) <= 1.0 + 1e-6:
        arr = arr * 255.0
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def to_model_input(images, model: nn.Module) -> torch.Tensor:
    """Turn faces into the model's input ``float32 [B, C, 48, 48]`` on the model's device.

    ``uint8`` images (array or tensor, ``[48,48]``, ``[B,48,48]`` or ``[B,1,48,48]``) go through
    :func:`fer_lib.data.preprocess`, the one normalisation shared with training. A float tensor is taken
    as already preprocessed (only the channel count is fixed up: 1 -> C by repetition).
    """
    device = model_device(model)
    chans = model_in_chans(model)
    is_uint8 = (images.dtype == torch.uint8) if isinstance(images, torch.Tensor) else \
        (np.asarray(images).dtype == np.uint8)
    if is_uint8:
        tensor = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
        return preprocess(tensor, channels=chans, device=device)
    x = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images), dtype=torch.float32)
    x = x.float()
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"model input of shape {tuple(x.shape)}: expected [B, C, 48, 48]")
    if x.shape[1] == 1 and chans == 3:
        x = x.repeat(1, 3, 1, 1)
    if x.shape[1] != chans:
        raise ValueError(f"model input has {x.shape[1]} channels but the model expects {chans}")
    return x.to(device)
