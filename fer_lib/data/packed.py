"""FER2013 packed into one small file that can travel with the checkout to a machine with a GPU.

The Kaggle folders are ~35,000 JPEG files; decoded, Training + PublicTest are 32,298 faces of 48x48 ``uint8``
(71 MiB). FER2013's faces are noisy, so lossless coding gains little: zlib on the raw array gives 68 MiB, PNG
60 MiB, WebP-lossless 57 MiB, and the coding used here (the LOCO-I / JPEG-LS median predictor, then LZMA on the
residuals) about 52 MiB. The pixels are kept exactly; to fit a size budget (a lent GPU machine takes a working tree
of at most 64 MiB, of which the repository itself is ~24 MiB), :func:`pack_fer2013` keeps every validation image
and a stratified subset of the training split (:meth:`FERSplit.subset`), and says so in the file and in the
loaded ``FERData.notes``.

The file is an uncompressed ``.npz`` of plain arrays, loaded with ``np.load(allow_pickle=False)``::

    format       "fer_lib.packed/1"
    residuals    uint8 [bytes]        LZMA stream of the median-predictor residuals of images [N, 48, 48]
    shape        int64 [3]            N, 48, 48
    labels       uint8 [N]            (fer_lib.EMOTIONS order)
    split        uint8 [N]            index into split_names
    split_names  str [S]              e.g. ["Training", "PublicTest"]
    full_sizes   int64 [S]            each split's size before subsetting
    ids          uint8 [bytes]        the items' ids (file paths or CSV rows), UTF-8, joined by newlines
    source_form  str                  the form it was packed from ("folders", "csv", ...)

:func:`fer_lib.data.load_fer2013` accepts such a file (or a folder holding one) as its root and returns
``FERData(form="packed")``; its ``fingerprint`` is the content hash of the packed splits, as for any other form
(a subset therefore has another fingerprint than the full folder).
"""

from __future__ import annotations

import io
import lzma
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from .dataset import FERData, FERSplit, split_by_name
from .labels import FERDataError

__all__ = ["PACKED_FORMAT", "pack_fer2013", "load_packed", "is_packed", "encode_images", "decode_images"]

PACKED_FORMAT = "fer_lib.packed/1"
_KEYS = ("format", "residuals", "shape", "labels", "split", "split_names", "full_sizes", "ids", "source_form")
_LZMA_PRESET = 9 | lzma.PRESET_EXTREME


def _median_prediction(west: np.ndarray, north: np.ndarray, north_west: np.ndarray) -> np.ndarray:
    """LOCO-I's median edge detector (JPEG-LS): min(W, N) above an edge, max(W, N) below, else W + N - NW."""
    lo, hi = np.minimum(west, north), np.maximum(west, north)
    return np.where(north_west >= hi, lo, np.where(north_west <= lo, hi, west + north - north_west))


def encode_images(images: np.ndarray) -> bytes:
    """``uint8 [N, H, W]`` -> LZMA stream of the residuals ``(pixel - median prediction) mod 256`` (lossless)."""
    a = images.astype(np.int16)
    west, north, north_west = np.zeros_like(a), np.zeros_like(a), np.zeros_like(a)
    west[:, :, 1:], north[:, 1:, :], north_west[:, 1:, 1:] = a[:, :, :-1], a[:, :-1, :], a[:, :-1, :-1]
    residuals = (a - _median_prediction(west, north, north_west)).astype(np.uint8)  # wraps mod 256
    return lzma.compress(residuals.tobytes(), preset=_LZMA_PRESET)


def decode_images(stream: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    """Inverse of :func:`encode_images`: pixel by pixel in raster order, vectorised over the ``N`` images."""
    n, h, w = shape
    residuals = np.frombuffer(lzma.decompress(stream), dtype=np.uint8).reshape(n, h, w).astype(np.int16)
    out = np.zeros((n, h, w), dtype=np.int16)
    zero = np.zeros(n, dtype=np.int16)
    for y in range(h):
        for x in range(w):
            west = out[:, y, x - 1] if x else zero
            north = out[:, y - 1, x] if y else zero
            north_west = out[:, y - 1, x - 1] if x and y else zero
            out[:, y, x] = (residuals[:, y, x] + _median_prediction(west, north, north_west)) & 255
    return out.astype(np.uint8)


def _arrays(chosen: list[FERSplit], full_sizes: list[int], source_form: str) -> dict[str, np.ndarray]:
    images = np.concatenate([sp.images.numpy() for sp in chosen])
    ids = "\n".join(i.replace("\n", " ") for sp in chosen for i in sp.ids)
    return {
        "format": np.array(PACKED_FORMAT),
        "residuals": np.frombuffer(encode_images(images), dtype=np.uint8),
        "shape": np.array(images.shape, dtype=np.int64),
        "labels": np.concatenate([sp.labels.numpy() for sp in chosen]).astype(np.uint8),
        "split": np.concatenate([np.full(len(sp), k, dtype=np.uint8) for k, sp in enumerate(chosen)]),
        "split_names": np.array([sp.name for sp in chosen]),
        "full_sizes": np.array(full_sizes, dtype=np.int64),
        "ids": np.frombuffer(ids.encode("utf-8"), dtype=np.uint8),
        "source_form": np.array(source_form),
    }


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # uncompressed: the residuals are LZMA already
    return buf.getvalue()


def pack_fer2013(data: FERData, path: str | os.PathLike, splits=("Training", "PublicTest"), *,
                 max_mib: float | None = None, seed: int = 0) -> Path:
    """Write ``splits`` of ``data`` to ``path`` (see the module docstring), within ``max_mib`` if given.

    Args:
        data: a loaded :class:`FERData` (e.g. ``load_fer2013("../shared/fer2013")``).
        path: the ``.npz`` file to write (its folder is created; written to a temporary file, then renamed).
        splits: split names (aliases accepted), in the order they are stored; the first is the training split.
        max_mib: the file's size limit in MiB (``None``: no limit). When everything does not fit, the first split
            is cut to a stratified subset (``FERSplit.subset(n, seed)``) so that the file fits; the others are kept
            whole. Each try compresses everything again (~20 s for FER2013).
        seed: the subset's seed.

    Returns:
        The path written.

    Raises:
        KeyError: a split ``data`` does not have.
        ValueError: ``data`` is synthetic (only FER2013 is packed), or ``max_mib`` is too small even for the
            other splits alone.
    """
    if data.synthetic:
        raise ValueError("pack_fer2013 packs FER2013, not the synthetic faces")
    chosen = [split_by_name(data, s) for s in splits]
    full_sizes = [len(sp) for sp in chosen]
    limit = None if max_mib is None else int(max_mib * 2**20)
    n = len(chosen[0])
    for _ in range(6):
        blob = _npz_bytes(_arrays([chosen[0].subset(n, seed), *chosen[1:]], full_sizes, data.form))
        if limit is None or len(blob) <= limit:
            break
        rest = len(_npz_bytes(_arrays([chosen[0].subset(0, seed), *chosen[1:]], full_sizes, data.form)))
        if rest >= limit:
            raise ValueError(f"pack_fer2013: {', '.join(splits[1:])} alone take {rest / 2**20:.1f} MiB, over "
                             f"max_mib={max_mib}")
        n = int(n * (limit - rest) / (len(blob) - rest) * 0.995)  # size is close to linear in the image count
    else:
        raise ValueError(f"pack_fer2013: could not fit {splits[0]} into max_mib={max_mib}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(blob)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def is_packed(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a ``.npz`` written by :func:`pack_fer2013` (reads only its ``format`` entry)."""
    path = Path(path)
    if not path.is_file() or path.suffix.lower() != ".npz":
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            return "format" in z.files and str(z["format"]) == PACKED_FORMAT
    except (OSError, ValueError, zipfile.BadZipFile):
        return False


def load_packed(path: str | os.PathLike) -> FERData:
    """Read a file written by :func:`pack_fer2013` into :class:`FERData` (``form="packed"``; ~2 s for FER2013).

    Raises:
        FERDataError: not such a file, or one whose arrays do not fit together.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in _KEYS if k not in z.files]
            if missing:
                raise FERDataError(f"{path} is not a packed FER2013 file of fer_lib ({PACKED_FORMAT}): it lacks "
                                   f"{missing}; pack it again with scripts/pack_fer2013.py")
            if str(z["format"]) != PACKED_FORMAT:
                raise FERDataError(f"{path}: unknown packed format {z['format']} (this fer_lib reads "
                                   f"{PACKED_FORMAT}); pack it again with scripts/pack_fer2013.py")
            arr = {k: z[k] for k in _KEYS}
        images = decode_images(arr["residuals"].tobytes(), tuple(int(s) for s in arr["shape"]))
    except (OSError, ValueError, EOFError, lzma.LZMAError, zipfile.BadZipFile) as e:
        raise FERDataError(f"{path} is not a readable packed FER2013 file ({type(e).__name__}: {e}); "
                           "pack it again with scripts/pack_fer2013.py") from e
    labels, split = arr["labels"], arr["split"]
    ids = bytes(arr["ids"]).decode("utf-8").split("\n") if arr["ids"].size else []
    n = len(images)
    if len(labels) != n or len(split) != n or len(ids) != n:
        raise FERDataError(f"{path}: the packed arrays do not fit together ({n} images, {len(labels)} labels, "
                           f"{len(split)} split entries, {len(ids)} ids); pack it again with scripts/pack_fer2013.py")
    names = [str(s) for s in arr["split_names"]]
    splits, subset_notes = {}, []
    for k, name in enumerate(names):
        sel = np.flatnonzero(split == k)
        splits[name] = FERSplit(name, torch.from_numpy(images[sel]),
                                torch.from_numpy(labels[sel].astype(np.int64)), [ids[i] for i in sel])
        if len(sel) < int(arr["full_sizes"][k]):
            subset_notes.append(f"{name}: a stratified subset of {len(sel)} of its {int(arr['full_sizes'][k])} "
                                "images (packed to fit a size limit)")
    return FERData(splits, form="packed", synthetic=False, source=str(path),
                   notes=[f"packed FER2013 ({', '.join(names)}; packed from its {arr['source_form']} form)",
                          *subset_notes])
