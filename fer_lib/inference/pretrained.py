"""The trained FER2013 model that ships inside the package, and the file format it ships in.

>>> import fer_lib
>>> model = fer_lib.pretrained()            # eval mode, CPU, no network, no pickle
>>> fer_lib.inference.describe_model(model)
'bundled model fer2013_resnet18 (baseline_resnet18, trained on FER2013 Training; PublicTest accuracy ...)'

The weights are one ``fer_lib/weights/<name>.safetensors`` file (https://github.com/huggingface/safetensors:
tensors and a string-to-string header only, so loading it runs no code), stored in fp16 to halve its size. Its
header carries everything needed to rebuild and judge the model::

    format        "fer_lib.pretrained/1"
    name          the file's stem, e.g. "fer2013_resnet18"
    model_name    e.g. "baseline_resnet18"    (fer_lib.models.build_model rebuilds it)
    model_config  JSON: the model's config
    train_config  JSON: the TrainConfig of the run that trained it
    data_fingerprint, epoch
    metrics       JSON: {split: {tta: {accuracy, macro_f1, ece, nll, per_class_f1, n}}}, measured on the fp16
                  weights exactly as shipped (``scripts/bundle_model.py`` writes them)
    provenance    JSON: command, commit, hardware, wall time

The model card beside the file (``fer_lib/weights/MODEL_CARD.md``) says what the model is for and what not.
:func:`load_pretrained` reads any such file (your own, written by :func:`save_pretrained`); the weights are
converted back to fp32 on load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fer_lib.inference.checkpoint import CheckpointError, build_named_model, load_checkpoint, load_state_into

PRETRAINED_FORMAT = "fer_lib.pretrained/1"
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
#: Header fields stored as JSON text (safetensors headers hold strings only).
_JSON_FIELDS = ("model_config", "train_config", "metrics", "provenance")


def bundled_weights(name: str | None = None) -> Path:
    """Path of the bundled weights file (``name``: its stem; ``None``: the one file in ``fer_lib/weights``).

    Raises:
        CheckpointError: no such file, i.e. this installation of fer_lib lacks its weights.
    """
    files = sorted(WEIGHTS_DIR.glob("*.safetensors"))
    if name is not None:
        files = [f for f in files if f.stem == name]
    if len(files) != 1:
        have = ", ".join(f.stem for f in sorted(WEIGHTS_DIR.glob("*.safetensors"))) or "none"
        want = f"{name!r}" if name else "exactly one file"
        raise CheckpointError(
            f"bundled weights: expected {want} in fer_lib/weights, found {have}; reinstall fer_lib "
            "(`pip install .` from a full checkout ships them) or pass a checkpoint path"
        )
    return files[0]


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The header of a fer_lib ``.safetensors`` file, JSON fields decoded (no tensors are read).

    Raises:
        CheckpointError: missing, unreadable, or not written by :func:`save_pretrained`.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except Exception as e:  # noqa: BLE001 - a junk file can fail anywhere in the header parser
        raise CheckpointError(f"{path} is not a readable safetensors file ({type(e).__name__}: {e})") from e
    if meta.get("format") != PRETRAINED_FORMAT:
        raise CheckpointError(
            f"{path} is a safetensors file but not fer_lib weights (header format {meta.get('format')!r}, "
            f"expected {PRETRAINED_FORMAT!r}); write one with fer_lib.inference.save_pretrained"
        )
    for key in _JSON_FIELDS:
        if key in meta:
            meta[key] = json.loads(meta[key])
    return meta


def save_pretrained(
    checkpoint: str | os.PathLike,
    path: str | os.PathLike,
    *,
    metrics: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    use_ema: bool = True,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Write a checkpoint's weights (EMA when present) as a ``.safetensors`` file that :func:`load_pretrained` reads.

    Args:
        checkpoint: a ``best.pt`` of a fer_lib run.
        path: the target file (its stem becomes the ``name``); written atomically.
        metrics, provenance: JSON-able dicts stored in the header (see the module docstring).
        use_ema: take the EMA weights when the checkpoint has them (what validation selected).
        dtype: storage type of floating-point tensors (fp16 halves the file; integer buffers keep their type).

    Returns:
        The path written.
    """
    from safetensors.torch import save_file

    ckpt = load_checkpoint(checkpoint)
    ema = ckpt.get("ema")
    weights = ema["module"] if (use_ema and ema) else ckpt["model"]
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in weights.items()}
    path = Path(path)
    meta = {
        "format": PRETRAINED_FORMAT,
        "name": path.stem,
        "model_name": str(ckpt["model_name"]),
        "model_config": ckpt["model_config"],
        "train_config": ckpt.get("train_config") or {},
        "data_fingerprint": str(ckpt.get("data_fingerprint") or ""),
        "epoch": str(ckpt.get("epoch", "")),
        "metrics": metrics or {},
        "provenance": provenance or {},
    }
    header = {k: json.dumps(v) if k in _JSON_FIELDS else v for k, v in meta.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata=header)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_pretrained(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model stored in a fer_lib ``.safetensors`` file, in eval mode with fp32 weights.

    Returns:
        The model; ``model.weights_info`` holds the decoded header, ``model.checkpoint_path`` the file and
        ``model.data_fingerprint`` the fingerprint of its training data.

    Raises:
        CheckpointError: unreadable file, foreign header, unknown architecture or weights that do not fit.
    """
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_metadata(path)
    tensors = load_file(str(path), device="cpu")
    tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    model = build_named_model(meta["model_name"], meta["model_config"], f"weights file {path.name}")
    load_state_into(model, tensors, checkpoint_model_name=meta["model_name"], source=f"weights file {path.name}")
    model.checkpoint_path = str(path)
    model.data_fingerprint = meta.get("data_fingerprint") or None
    model.weights_info = meta
    return model.to(device).eval()


def pretrained(name: str | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """The trained FER2013 model that ships with fer_lib, in eval mode (see ``fer_lib/weights/MODEL_CARD.md``).

    Args:
        name: the weights' stem (default: the one bundled file).
        device: where to put the model.

    Works offline: the file is inside the installed package, and safetensors runs no code when it loads.
    """
    return load_pretrained(bundled_weights(name), device=device)


def describe_model(model: nn.Module) -> str:
    """One line naming the model a result comes from, with no machine-specific absolute paths."""
    arch = getattr(model, "model_name", type(model).__name__)
    info = getattr(model, "weights_info", None)
    if info:
        acc = info.get("metrics", {}).get("PublicTest", {}).get("none", {}).get("accuracy")
        score = f"; PublicTest accuracy {acc:.4f} (one forward pass)" if acc is not None else ""
        where = "bundled model" if Path(getattr(model, "checkpoint_path", "")).parent == WEIGHTS_DIR else "weights"
        if where == "weights":
            from fer_lib.paths import display_path

            where = f"weights {display_path(model.checkpoint_path)}:"
        return f"{where} {info.get('name')} ({arch}, trained on FER2013 Training{score})"
    path = getattr(model, "checkpoint_path", None)
    if path:
        from fer_lib.paths import display_path

        return f"checkpoint {display_path(Path(path).resolve())} ({arch})"
    return f"model {arch} (not loaded from a file)"
