"""The trained FER2013 models that ship inside the package, by name, and the file format they ship in.

>>> import fer_lib
>>> model = fer_lib.pretrained()            # the most accurate single model: eval mode, CPU, no network, no pickle
>>> model = fer_lib.pretrained("fer2013_sota_resemote_small")   # the course's own model, trained
>>> model = fer_lib.pretrained("ensemble")  # the average of every bundled model's probabilities
>>> [m["name"] for m in fer_lib.inference.list_pretrained()]     # the names, with their measured accuracy
['fer2013_resnet18', 'fer2013_sota_resemote_small', 'ensemble']

A bundled name is the stem of a ``fer_lib/weights/<name>.safetensors`` file, or ``ensemble`` (when two or more
files ship; its measured figures are in ``fer_lib/weights/ensemble.json``). Each file (https://github.com/huggingface/safetensors:
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
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from fer_lib.inference.checkpoint import CheckpointError, build_named_model, load_checkpoint, load_state_into
from fer_lib.inference.ensemble import EnsembleModel
from fer_lib.paths import display_path

PRETRAINED_FORMAT = "fer_lib.pretrained/1"
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
ENSEMBLE = "ensemble"
"""The bundled name of the average of every bundled model's probabilities."""
COURSE_MODEL = "fer2013_sota_resemote_small"
"""The bundled name of the course's own model, ``sota_resemote_small`` trained on FER2013 (notebooks 09-11 use it)."""
ENSEMBLE_FILE = WEIGHTS_DIR / "ensemble.json"
"""The ensemble's measured figures (``scripts/bundle_model.py --ensemble`` writes them; no weights of its own)."""
#: Header fields stored as JSON text (safetensors headers hold strings only).
_JSON_FIELDS = ("model_config", "train_config", "metrics", "provenance")


def _weight_files() -> list[Path]:
    return sorted(WEIGHTS_DIR.glob("*.safetensors"))


def bundled_names() -> list[str]:
    """The names :func:`pretrained` accepts: every bundled file's stem, then ``"ensemble"`` when two or more ship."""
    stems = [f.stem for f in _weight_files()]
    return stems + ([ENSEMBLE] if len(stems) >= 2 else [])


def _publictest_accuracy(meta: dict, tta: str = "none") -> float | None:
    acc = meta.get("metrics", {}).get("PublicTest", {}).get(tta, {}).get("accuracy")
    return float(acc) if isinstance(acc, (int, float)) else None


def bundled_weights(name: str | None = None) -> Path:
    """Path of a bundled weights file (``name``: its stem; ``None``: the most accurate single model, by the
    PublicTest accuracy with one forward pass stored in each file's header).

    Raises:
        CheckpointError: no such file (the message lists the bundled names), i.e. a typo, or an installation of
            fer_lib that lacks its weights.
    """
    files = _weight_files()
    if name is None and files:
        return max(files, key=lambda f: (_publictest_accuracy(read_metadata(f)) or -1.0, f.stem))
    match = [f for f in files if f.stem == name]
    if not match:
        have = ", ".join(bundled_names()) or "none"
        want = f"no {name!r}" if name else "no weights file"
        raise CheckpointError(
            f"bundled weights: {want} in fer_lib/weights (bundled names: {have}); use one of those names or a "
            "checkpoint path, or reinstall fer_lib (`pip install .` from a full checkout ships the weights)"
        )
    return match[0]


def is_bundled_name(name) -> bool:
    """True when ``name`` is a string naming a bundled model (see :func:`bundled_names`) and no file or folder of
    that name exists (a path the user has always wins)."""
    return isinstance(name, str) and name in bundled_names() and not Path(name).exists()


def ensemble_info() -> dict[str, Any]:
    """The ensemble's header: its name, members and, when measured, ``metrics`` and ``provenance``
    (``fer_lib/weights/ensemble.json``); without that file, the members alone."""
    members = [f.stem for f in _weight_files()]
    info: dict[str, Any] = {}
    if ENSEMBLE_FILE.is_file():
        try:
            info = json.loads(ENSEMBLE_FILE.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{ENSEMBLE_FILE.name} in fer_lib/weights is not valid JSON ({e}); reinstall "
                                  "fer_lib or rewrite it with scripts/bundle_model.py --ensemble") from e
        if sorted(info.get("members", [])) != members:  # measured on other members: its figures do not apply
            info = {}
    return {"format": "fer_lib.ensemble/1", "name": ENSEMBLE, "model_name": ENSEMBLE, **info, "members": members}


def list_pretrained() -> list[dict[str, Any]]:
    """Every bundled name with what was measured on it (PublicTest, the model-selection split).

    Returns:
        One dict per name, in :func:`bundled_names` order: ``name``, ``model_name`` (the architecture, or
        ``"ensemble"``), ``accuracy`` / ``accuracy_flip`` / ``accuracy_tencrop`` (PublicTest, ``None`` when not
        measured), ``megabytes`` (0 for the ensemble, which has no weights of its own), ``members`` (ensemble)
        and ``default`` (what :func:`pretrained` loads without a name).
    """
    default = bundled_weights().stem if _weight_files() else None
    rows = []
    for name in bundled_names():
        if name == ENSEMBLE:
            meta, size = ensemble_info(), 0
        else:
            path = bundled_weights(name)
            meta, size = read_metadata(path), path.stat().st_size
        rows.append({
            "name": name, "model_name": meta.get("model_name"),
            "accuracy": _publictest_accuracy(meta), "accuracy_flip": _publictest_accuracy(meta, "flip"),
            "accuracy_tencrop": _publictest_accuracy(meta, "tencrop"), "megabytes": round(size / 2**20, 1),
            "members": meta.get("members") if name == ENSEMBLE else None, "default": name == default,
        })
    return rows


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The header of a fer_lib ``.safetensors`` file, JSON fields decoded (no tensors are read).

    Raises:
        CheckpointError: missing, unreadable, or not written by :func:`save_pretrained`.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic == b"PK\x03\x04":  # a zip archive: what torch.save writes
        raise CheckpointError(f"{path} is a torch checkpoint (torch.save), not a safetensors file, despite its "
                              "name; give it its .pt name back (fer_lib reads it with weights_only=True), or "
                              "convert it with fer_lib.inference.save_pretrained")
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
    for key in ("model_name", "model_config"):
        if key not in meta:
            raise CheckpointError(f"{path}: its header lacks {key!r}, so the model cannot be rebuilt; write the file "
                                  "again with fer_lib.inference.save_pretrained")
    for key in _JSON_FIELDS:
        if key in meta:
            try:
                meta[key] = json.loads(meta[key])
            except json.JSONDecodeError as e:
                raise CheckpointError(f"{path}: header field {key!r} is not valid JSON ({e}); the file was not "
                                      "written by fer_lib.inference.save_pretrained as it is") from e
    return meta


def save_pretrained(
    checkpoint: str | os.PathLike,
    path: str | os.PathLike,
    *,
    metrics: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    use_ema: bool = True,
    dtype: torch.dtype = torch.float16,
    model_name: str | None = None,
) -> Path:
    """Write a checkpoint's weights (EMA when present) as a ``.safetensors`` file that :func:`load_pretrained` reads.

    Args:
        checkpoint: a ``best.pt`` of a fer_lib run.
        path: the target file (its stem becomes the ``name``); written atomically.
        metrics, provenance: JSON-able dicts stored in the header (see the module docstring).
        use_ema: take the EMA weights when the checkpoint has them (what validation selected).
        dtype: storage type of floating-point tensors (fp16 halves the file; integer buffers keep their type).
        model_name: store the architecture under this registered name instead of the checkpoint's own (for a run
            made before its architecture was renamed); the weights must load into it from the checkpoint's config.

    Returns:
        The path written.
    """
    ckpt = load_checkpoint(checkpoint)
    ema = ckpt.get("ema")
    weights = ema["module"] if (use_ema and ema) else ckpt["model"]
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in weights.items()}
    if model_name is not None:  # the renamed architecture must hold exactly these weights
        load_state_into(build_named_model(model_name, ckpt["model_config"], f"checkpoint {checkpoint}"), weights,
                        checkpoint_model_name=str(ckpt["model_name"]), source=f"checkpoint {checkpoint}")
    path = Path(path)
    meta = {
        "format": PRETRAINED_FORMAT,
        "name": path.stem,
        "model_name": str(model_name or ckpt["model_name"]),
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
    path = Path(path)
    meta = read_metadata(path)
    tensors = load_file(str(path), device="cpu")
    model = build_named_model(meta["model_name"], meta["model_config"], f"weights file {path.name}")
    check_tensor_types(tensors, model.state_dict(), path)
    tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    load_state_into(model, tensors, checkpoint_model_name=meta["model_name"], source=f"weights file {path.name}")
    model.checkpoint_path = str(path)
    model.data_fingerprint = meta.get("data_fingerprint") or None
    model.weights_info = meta
    return model.to(device).eval()


def check_tensor_types(tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path) -> None:
    """Refuse weights that would load as nonsense: an integer tensor where the model holds floats (or the other
    way round), or a NaN / infinite value. The message names the file and the tensor.

    Raises:
        CheckpointError: the first such tensor.
    """
    for key, value in tensors.items():
        want = expected.get(key)
        if want is None:  # an unexpected key: load_state_into names it with the others
            continue
        if want.is_floating_point() != value.is_floating_point():
            kind = "floating-point" if want.is_floating_point() else "integer"
            raise CheckpointError(f"{path}: tensor {key!r} is stored as {value.dtype} where the model holds "
                                  f"{kind} values ({want.dtype}); the file is corrupt or was not written by "
                                  "fer_lib.inference.save_pretrained, so it would predict nonsense")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{path}: tensor {key!r} holds NaN or infinite values; the weights are broken "
                                  "(a diverged run or a damaged file): use another checkpoint")


def pretrained(name: str | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """A trained FER2013 model that ships with fer_lib, in eval mode (see ``fer_lib/weights/MODEL_CARD.md``).

    Args:
        name: a bundled name (:func:`bundled_names`; :func:`list_pretrained` shows each with its accuracy):
            a weights file's stem, or ``"ensemble"`` for the average of every bundled model's probabilities.
            ``None``: the most accurate single model.
        device: where to put the model.

    Works offline: the files are inside the installed package, and safetensors runs no code when it loads.

    Raises:
        CheckpointError: an unknown name (the message lists the bundled ones) or a damaged file.
    """
    if name == ENSEMBLE:
        files = _weight_files()
        if len(files) < 2:
            raise CheckpointError(f"bundled weights: 'ensemble' needs two or more bundled models, found "
                                  f"{len(files)}; use {bundled_names()} or a checkpoint path")
        model = EnsembleModel([load_pretrained(f) for f in files], name=ENSEMBLE)
        model.weights_info = ensemble_info()
        model.checkpoint_path = str(WEIGHTS_DIR / ENSEMBLE)
        model.data_fingerprint = None
        return model.to(device).eval()
    return load_pretrained(bundled_weights(name), device=device)


def is_bundled(model: nn.Module) -> bool:
    """True for a model that :func:`pretrained` loaded (it lives inside the installed package: never write there)."""
    return Path(getattr(model, "checkpoint_path", "") or "").parent == WEIGHTS_DIR


def describe_model(model: nn.Module) -> str:
    """One line naming the model a result comes from, with no machine-specific absolute paths."""
    arch = getattr(model, "model_name", type(model).__name__)
    info = getattr(model, "weights_info", None)
    if isinstance(model, EnsembleModel):
        acc = _publictest_accuracy(info or {})
        score = f"; PublicTest accuracy {acc:.4f} (one forward pass per member)" if acc is not None else ""
        where = "bundled ensemble" if is_bundled(model) else "ensemble"
        return f"{where} ({' + '.join(model.member_names)}: the average of their probabilities{score})"
    if info:
        acc = _publictest_accuracy(info)
        score = f"; PublicTest accuracy {acc:.4f} (one forward pass)" if acc is not None else ""
        where = "bundled model" if is_bundled(model) else "weights"
        if where == "weights":
            where = f"weights {display_path(model.checkpoint_path)}:"
        return f"{where} {info.get('name')} ({arch}, trained on FER2013 Training{score})"
    path = getattr(model, "checkpoint_path", None)
    if path:
        return f"checkpoint {display_path(Path(path).resolve())} ({arch})"
    return f"model {arch} (not loaded from a file)"
