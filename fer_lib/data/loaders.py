"""Load FER2013 in any of its common forms, with a decode cache.

Forms recognised by :func:`load_fer2013` (``FERData.form``):

* ``"csv"``: the challenge file ``fer2013.csv``, columns ``emotion,pixels,Usage`` (Usage is ``Training``,
  ``PublicTest`` or ``PrivateTest``; one row = one face, ``pixels`` = 2,304 space-separated values);
* ``"icml_csv"``: ``icml_face_data.csv``, the same data with header ``emotion, Usage, pixels``;
* ``"folders"``: Kaggle's ``train/<class>/*.jpg`` and ``test/<class>/*.jpg`` (dataset ``msambare/fer2013``).
  The split comes from the file-name prefix ``Training_`` / ``PublicTest_`` / ``PrivateTest_`` (a full Kaggle
  ``test/`` mixes PublicTest and PrivateTest); files without a prefix take their folder's split, and an
  un-prefixed ``test/`` becomes ``"Test"`` (``.notes`` says so). Class folders map to labels **by name**.
* ``"packed"``: a ``.npz`` written by :func:`fer_lib.data.packed.pack_fer2013` (``scripts/pack_fer2013.py``),
  read as it is (already decoded, so no decode cache).

``root`` may be the CSV or packed file, the folder holding it or ``train/``/``test/``, or a parent up to two levels
above (e.g. a folder with ``fer2013/fer2013.csv``). Decoded tensors are cached (see :mod:`fer_lib.data.cache`).

Error policy (``on_error``): malformed CSV rows (wrong number of pixels, non-numeric pixels, label outside 0-6,
unknown Usage) and unreadable images raise :class:`FERDataError` naming the first offenders, or with
``on_error="skip"`` are skipped, listed in ``FERData.skipped`` and announced by a warning. Structural problems
(missing or empty root, unknown class folder, CSV without ``emotion``/``pixels`` columns, two folders of one split
such as ``train/`` and ``Train/`` holding identical copies of the same files) always raise; two folders of one
split without such copies are read together, with a note.
Images that are not 48x48 are **resized** (``cv2.INTER_AREA``) with a warning and a note counting them: the
face is kept, and FER2013's own files are all 48x48, so this only touches re-exported copies.
"""

from __future__ import annotations

import csv
import filecmp
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch

from fer_lib import paths

from . import cache as _cache
from .dataset import FERData, FERSplit
from .labels import FER2013_HELP, NUM_CLASSES, SPLITS, FERDataError, label_from_name
from .packed import is_packed, load_packed

__all__ = ["load_fer2013", "detect_source", "IMAGE_EXTENSIONS"]

SIZE = 48
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}
_SPLIT_DIRS = {"train": "Training", "training": "Training", "val": "PublicTest", "valid": "PublicTest",
               "validation": "PublicTest", "publictest": "PublicTest", "privatetest": "PrivateTest",
               "test": None, "testing": None}  # None: split decided by file-name prefix, else "Test"
_CSV_NAMES = ("fer2013.csv", "icml_face_data.csv")
_SHOW = 5  # offenders named in an error message


def _csv_form(path: Path) -> str | None:
    """``"csv"`` / ``"icml_csv"`` when ``path``'s header has emotion and pixels columns, else None."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = f.readline()
    except (OSError, UnicodeDecodeError):
        return None
    cols = [c.strip().lower() for c in header.split(",")]
    if "emotion" not in cols or "pixels" not in cols:
        return None
    return "icml_csv" if (", " in header or path.name.lower().startswith("icml")) else "csv"


def _is_folder_layout(d: Path) -> bool:
    return any(s.is_dir() and s.name.lower() in _SPLIT_DIRS and any(c.is_dir() for c in s.iterdir())
               for s in d.iterdir())


def detect_source(root: str | os.PathLike) -> tuple[str, Path, list[str]]:
    """Find what ``root`` holds. Returns ``(form, path, notes)``: the CSV file or the folder with ``train/``.

    Raises:
        FERDataError: when ``root`` is missing, empty, or holds nothing FER2013-like (with download help).
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise FERDataError(f"FER2013 root {root} does not exist.\n{FER2013_HELP}")
    if root.is_file():
        if root.stat().st_size == 0:
            raise FERDataError(f"{root} is empty (0 bytes): the download or copy did not finish; get the file again "
                               "(see data/README.md)")
        if root.suffix.lower() == ".npz":
            if not is_packed(root):
                raise FERDataError(f"{root} is not a packed FER2013 file of fer_lib (pack one with "
                                   f"scripts/pack_fer2013.py).\n{FER2013_HELP}")
            return "packed", root, []
        form = _csv_form(root) if root.suffix.lower() == ".csv" else None
        if form is None:
            raise FERDataError(
                f"{root} is not a FER2013 CSV (need a header with 'emotion' and 'pixels' columns, as in "
                f"fer2013.csv or icml_face_data.csv){'; unzip archives first' if root.suffix == '.zip' else ''}."
                f"\n{FER2013_HELP}")
        return form, root, []
    level, seen, rejected = [root], [], []
    for _depth in range(3):  # root, its children, its grandchildren
        for d in level:
            found = [(f, d / n) for n in _CSV_NAMES if (d / n).is_file() and (f := _csv_form(d / n))]
            rejected += [d / n for n in _CSV_NAMES if (d / n).is_file() and not _csv_form(d / n)]
            found += [(f, p) for p in sorted(d.glob("*.csv")) if p.name not in _CSV_NAMES and (f := _csv_form(p))]
            if _is_folder_layout(d):
                found.append(("folders", d))
            found += [("packed", p) for p in sorted(d.glob("*.npz")) if is_packed(p)]
            if found:
                notes = [f"also found {f} at {p}; used {found[0][1]}" for f, p in found[1:]]
                return found[0][0], found[0][1], notes
            seen.append(d)
        level = [s for d in level for s in sorted(d.iterdir())
                 if s.is_dir() and not s.name.startswith(".") and s.name.lower() not in _SPLIT_DIRS]
    hint = (f"{root.name}/ looks like a split folder: pass its parent folder instead.\n"
            if root.name.lower() in _SPLIT_DIRS else "")
    why = "".join(f"; {p} is " + ("empty (0 bytes): the download or copy did not finish" if p.stat().st_size == 0
                                  else "not a FER2013 CSV (its header lacks 'emotion' and 'pixels' columns)")
                  for p in rejected[:2])
    raise FERDataError(
        f"no FER2013 data found in {root} (looked for fer2013.csv, icml_face_data.csv or any CSV with emotion and "
        f"pixels columns, train/ or test/ folders holding class folders, and packed .npz files, up to two levels "
        f"down){why}.\n"
        f"{hint}{FER2013_HELP}")


# ----------------------------------------------------------------------------------------------- CSV

def _parse_pixels(text: str) -> tuple[np.ndarray | None, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            px = np.fromstring(text, dtype=np.int32, sep=" ")
        except (ValueError, DeprecationWarning):
            px = None
    if px is None or px.size != SIZE * SIZE:  # name the token the integer parser stopped at, e.g. "12.7"
        tok = next((t for t in text.split() if not t.lstrip("-").isdigit()), None)
        if tok is not None:
            return None, f"pixel value {tok[:20]!r} is not an integer 0-255"
        if px is None:
            return None, "pixels contain something that is not a number"
        return None, f"pixels has {px.size} values, expected {SIZE * SIZE} (48x48)"
    if px.min() < 0 or px.max() > 255:
        return None, f"pixel values must be 0-255, found {px.min()}..{px.max()}"
    return px.astype(np.uint8).reshape(SIZE, SIZE), ""


def _read_csv(path: Path) -> tuple[dict, list[tuple[str, str]], list[str]]:
    """Returns ``({split: (images, labels, ids)}, bad [(id, reason)], notes)``."""
    out: dict[str, tuple[list, list, list]] = {}
    bad, notes = [], []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, skipinitialspace=True)
        header = [h.strip().lower() for h in next(reader, [])]
        if "emotion" not in header or "pixels" not in header:
            raise FERDataError(f"{path}: header {header} lacks 'emotion' and 'pixels' columns "
                               "(expected emotion,pixels,Usage as in fer2013.csv)")
        ie, ip = header.index("emotion"), header.index("pixels")
        iu = header.index("usage") if "usage" in header else None
        if iu is None:
            notes.append(f"{path.name} has no Usage column: all rows are put in 'Training'")
        usages = {s.lower(): s for s in SPLITS}
        for line, row in enumerate(reader, start=2):
            if not row:
                continue  # blank line
            rid = f"{path.name}:{line}"
            if len(row) != len(header):
                bad.append((rid, f"has {len(row)} fields, expected {len(header)} ({','.join(header)})"))
                continue
            try:
                label = int(row[ie])
            except ValueError:
                bad.append((rid, f"emotion {row[ie]!r} is not an integer 0-{NUM_CLASSES - 1}"))
                continue
            if not 0 <= label < NUM_CLASSES:
                bad.append((rid, f"emotion {label} is outside 0-{NUM_CLASSES - 1}"))
                continue
            split = "Training" if iu is None else usages.get(row[iu].strip().lower())
            if split is None:
                bad.append((rid, f"unknown Usage {row[iu]!r} (expected Training, PublicTest or PrivateTest)"))
                continue
            img, why = _parse_pixels(row[ip])
            if img is None:
                bad.append((rid, why))
                continue
            images, labels, ids = out.setdefault(split, ([], [], []))
            images.append(img)
            labels.append(label)
            ids.append(rid)
    return out, bad, notes


# --------------------------------------------------------------------------------------------- folders

def _list_folders(root: Path) -> tuple[list[tuple[str, int, int]], list[str]]:
    """Every image under ``root/<split>/<class>/`` as ``(relative path, size, mtime_ns)``, plus notes."""
    entries, ignored = [], []
    split_dirs = sorted(p for p in root.iterdir() if p.is_dir() and p.name.lower() in _SPLIT_DIRS)
    # two folders of one split (train/ and Training/, test/ and Test/): a copy counts every image twice
    groups: dict[str, list[str]] = {}
    for d in split_dirs:
        groups.setdefault(_SPLIT_DIRS[d.name.lower()] or "test", []).append(d.name)
    seen: dict[tuple, str] = {}  # (split group, class, file name, size) -> the first relative path (then: bytes)
    twice: list[tuple[str, str, str]] = []  # (split group, first path, the copy's path)
    for split_dir in split_dirs:
        group = _SPLIT_DIRS[split_dir.name.lower()] or "test"
        for cls in sorted(split_dir.iterdir()):
            if not cls.is_dir():
                ignored.append(f"{split_dir.name}/{cls.name}")
                continue
            label_from_name(cls.name, where=str(split_dir))  # unknown class folder: fail before decoding
            with os.scandir(cls) as it:
                for e in it:
                    rel = f"{split_dir.name}/{cls.name}/{e.name}"
                    if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS \
                            and not e.name.startswith("."):
                        st = e.stat()
                        entries.append((rel, st.st_size, st.st_mtime_ns))
                        if len(groups[group]) > 1:
                            first = seen.setdefault((group, cls.name.lower(), e.name, st.st_size), rel)
                            if not first.startswith(split_dir.name + "/") and \
                                    filecmp.cmp(root / first, root / rel, shallow=False):
                                twice.append((group, first, rel))
                    else:
                        ignored.append(rel)
    if twice:
        group, a, b = twice[0]
        folders = " and ".join(f"{n}/" for n in groups[group])
        raise FERDataError(
            f"{root} holds one split twice: folders {folders} share {len(twice)} identical image(s) of the same "
            f"class and name (e.g. {a} and {b}), which would each be counted twice; remove the copy or move it out, "
            "keeping one folder per split")
    if not entries:
        raise FERDataError(f"no images found under {root}/<split>/<class>/ (extensions "
                           f"{', '.join(sorted(IMAGE_EXTENSIONS))}).\n{FER2013_HELP}")
    entries.sort()
    notes = [f"ignored {len(ignored)} non-image file(s) or folder(s), e.g. {', '.join(ignored[:3])}"] if ignored else []
    notes += [f"folders {' and '.join(f'{n}/' for n in names)} hold the same split; their images are used together"
              for names in groups.values() if len(names) > 1]
    return entries, notes


_ALPHA_EXTENSIONS = (".png", ".webp", ".tif", ".tiff")


def _gray_on_white(img: np.ndarray) -> np.ndarray:
    """A ``cv2.IMREAD_UNCHANGED`` image with an alpha channel, composited on white and turned grayscale (BT.601):
    the rule ``fer_lib.faces.load_image`` applies to photos, so a transparent pixel is white in both."""
    if img.dtype != np.uint8:  # 16-bit PNG/TIFF
        img = (img.astype(np.float64) / 257.0).round().astype(np.uint8)
    if img.ndim == 2:
        return img
    if img.shape[2] == 4:
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        img = np.rint(img[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2GRAY)


def _decode(path: str) -> tuple[np.ndarray | None, str]:
    try:
        buf = np.fromfile(path, dtype=np.uint8)
        if buf.size == 0:
            return None, "empty file (0 bytes)"
        img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
        if img is not None and path.lower().endswith(_ALPHA_EXTENSIONS):
            full = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
            if full is not None and full.ndim == 3 and full.shape[2] == 4:
                img = _gray_on_white(full)
    except (OSError, cv2.error) as e:
        return None, f"unreadable ({' '.join(str(e).split())[:120]})"
    if img is None:
        return None, "unreadable (not a valid image file)"
    return img, ""


def _split_of(rel: str) -> str:
    split_dir, _, name = rel.split("/")
    for s in SPLITS:
        if name.lower().startswith(s.lower() + "_"):
            return s
    return _SPLIT_DIRS[split_dir.lower()] or "Test"


def _read_folders(root: Path, entries) -> tuple[dict, list[tuple[str, str]], list[str]]:
    out: dict[str, tuple[list, list, list]] = {}
    bad, resized, notes = [], [], []
    workers = min(8, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:  # cv2 releases the GIL while reading and decoding
        results = pool.map(_decode, [str(root / rel) for rel, _, _ in entries], chunksize=256)
        for (rel, _, _), (img, why) in zip(entries, results):
            if img is None:
                bad.append((rel, why))
                continue
            if img.shape != (SIZE, SIZE):
                resized.append(f"{rel} ({img.shape[1]}x{img.shape[0]})")
                img = cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
            split = _split_of(rel)
            images, labels, ids = out.setdefault(split, ([], [], []))
            images.append(img)
            labels.append(label_from_name(rel.split("/")[1]))
            ids.append(rel)
    if resized:
        msg = f"resized {len(resized)} image(s) that were not 48x48 to 48x48, e.g. {', '.join(resized[:3])}"
        warnings.warn(msg, stacklevel=3)
        notes.append(msg)
    if "Test" in out:
        notes.append(f"{len(out['Test'][0])} file(s) in test/ have no PublicTest_/PrivateTest_ prefix, so they form "
                     "one split named 'Test' (it cannot be split into FER2013's PublicTest and PrivateTest)")
    moved = sum(1 for rel, _, _ in entries if _SPLIT_DIRS[rel.split("/")[0].lower()] not in (None, _split_of(rel)))
    if moved:
        notes.append(f"{moved} file(s) were put in the split named by their file-name prefix, not their folder")
    return out, bad, notes


# ------------------------------------------------------------------------------------------------ main

def load_fer2013(root=None, *, cache_dir=None, use_cache: bool = True, on_error: str = "raise") -> FERData:
    """Load FER2013 from a CSV, the ICML CSV, Kaggle folders, or a folder above one of them.

    Args:
        root: path to the data (any form above); ``None`` uses :func:`fer_lib.paths.find_fer2013`
            (``FER2013_DIR``, ``../shared/fer2013``, ``data/fer2013``).
        cache_dir: where decoded tensors are cached (default :func:`fer_lib.paths.cache_dir`). If it cannot be
            written, a warning is given and loading goes on without a cache. Nothing is ever written to ``root``.
        use_cache: False decodes from scratch and neither reads nor writes a cache.
        on_error: ``"raise"`` (default) or ``"skip"`` malformed rows / unreadable images (see module docs).

    Returns:
        :class:`FERData` with splits among ``Training``, ``PublicTest``, ``PrivateTest`` (or ``Test``), images
        ``uint8 [N, 48, 48]``, labels ``int64 [N]``; ``from_cache`` tells whether decoding was skipped.

    Raises:
        FERDataError: missing/empty root (with download instructions), unknown class folder, malformed input.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if root is None:
        root = paths.find_fer2013()
        if root is None:
            raise FERDataError(FER2013_HELP)
    form, src, notes = detect_source(root)
    src = src.resolve()
    if form == "packed":
        data = load_packed(src)
        data.notes[:0] = notes
        return data
    if form == "folders":
        entries, list_notes = _list_folders(src)
        notes += list_notes
        key = _cache.key_for_files(src, entries, on_error)
    else:
        key = _cache.key_for_csv(src, on_error)
    cfile = _cache.cache_file(Path(cache_dir) if cache_dir is not None else paths.cache_dir(), src, key)
    payload = _cache.read_cache(cfile) if use_cache else None
    if payload is not None:
        if payload["skipped"]:
            warnings.warn(f"{len(payload['skipped'])} malformed item(s) in {src} were skipped when it was decoded, "
                          f"e.g. {payload['skipped'][0]} (all listed in FERData.skipped)", stacklevel=2)
        splits = {name: FERSplit(name, d["images"], d["labels"], d["ids"].split("\n") if d["ids"] else [])
                  for name, d in payload["splits"].items()}
        return FERData(splits, form=payload["form"], synthetic=False, source=str(src),
                       fingerprint=payload["fingerprint"], skipped=list(payload["skipped"]),
                       notes=list(payload["notes"]), from_cache=True)

    raw, bad, more_notes = _read_folders(src, entries) if form == "folders" else _read_csv(src)
    notes += more_notes
    if bad and on_error == "raise":
        shown = "; ".join(f"{i}: {why}" for i, why in bad[:_SHOW])
        more = f" (and {len(bad) - _SHOW} more)" if len(bad) > _SHOW else ""
        raise FERDataError(
            f"{len(bad)} malformed item(s) in {src}: {shown}{more}. Fix or delete them, or skip them with "
            "--on-error skip (train, evaluate; on_error='skip' in Python): they are then listed with their reason in "
            "FERData.skipped, the run's skipped.json and the report's 'skipped'.")
    skipped = [f"{i}: {why}" for i, why in bad]
    if skipped:
        warnings.warn(f"skipped {len(skipped)} malformed item(s) in {src}, e.g. {skipped[0]} "
                      "(all listed in FERData.skipped)", stacklevel=2)
    order = [s for s in (*SPLITS, "Test") if s in raw]
    splits = {s: FERSplit(s, torch.from_numpy(np.stack(raw[s][0])), torch.tensor(raw[s][1], dtype=torch.int64),
                          raw[s][2]) for s in order}
    if not splits and not bad:
        raise FERDataError(f"{src} holds no data rows, only a header: the download or copy did not finish; get "
                           "the file again (see data/README.md)")
    if not splits:
        raise FERDataError(f"{src} holds no usable images: all {len(bad)} items are malformed and were skipped, "
                           f"e.g. {skipped[0]}")
    data = FERData(splits, form=form, synthetic=False, source=str(src), skipped=skipped, notes=notes)
    if use_cache:
        _cache.write_cache(cfile, {
            "form": form, "fingerprint": data.fingerprint, "skipped": skipped, "notes": notes,
            "splits": {n: {"images": s.images, "labels": s.labels, "ids": "\n".join(s.ids)} for n, s in splits.items()},
        })
    return data
