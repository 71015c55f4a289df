"""The decode cache: decode FER2013 once, then load the tensors in well under a second.

A cache file is keyed by the *source's content as seen by the file system*: for folders every image's relative
path, size and mtime; for a CSV its size, mtime and a SHA-256 of its first and last MiB. Any change gives a
new key, so the next load decodes again and replaces the stale file. Cache files live in
``fer_lib.paths.cache_dir()`` (``FER_CACHE_DIR`` or ``~/.cache/fer_lib``) or ``cache_dir=``, never in the data
folder (which may be read-only). They are written atomically (temporary file + ``os.replace``) and read with
``torch.load(weights_only=True)`` (tensors, strings and lists only: no pickled code).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path

import torch

__all__ = ["CACHE_VERSION", "key_for_files", "key_for_csv", "cache_file", "read_cache", "write_cache"]

CACHE_VERSION = 1
"""Bump when the decoded format or the loading rules change: old cache files are then ignored."""
_MIB = 1 << 20


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(repr(p).encode())
        h.update(b"\0")
    return h.hexdigest()


def key_for_files(root: Path, entries: list[tuple[str, int, int]], *extra) -> str:
    """Key for a folder source from ``(relative path, size, mtime_ns)`` of every file it loads."""
    h = hashlib.sha256(_digest(CACHE_VERSION, "folders", str(root), *extra).encode())
    for rel, size, mtime in entries:
        h.update(f"{rel}\0{size}\0{mtime}\n".encode())
    return h.hexdigest()


def key_for_csv(path: Path, *extra) -> str:
    """Key for a CSV: its size, mtime and a SHA-256 of its first and last MiB."""
    st = path.stat()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(_MIB))
        if st.st_size > _MIB:
            f.seek(max(_MIB, st.st_size - _MIB))
            h.update(f.read(_MIB))
    return _digest(CACHE_VERSION, "csv", str(path), st.st_size, st.st_mtime_ns, h.hexdigest(), *extra)


def cache_file(cache_dir: Path, source: Path, key: str) -> Path:
    """``<cache_dir>/fer2013-<hash of the source path>-<key>.pt``: one live file per source path."""
    return Path(cache_dir) / f"fer2013-{_digest(str(source))[:10]}-{key[:16]}.pt"


def read_cache(path: Path) -> dict | None:
    """The cached payload, or ``None`` when absent; a corrupt file warns and is treated as absent."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or foreign file: rebuild rather than fail
        warnings.warn(f"ignoring unreadable cache file {path} ({type(e).__name__}: {e}); decoding again",
                      stacklevel=3)
        return None
    if not isinstance(payload, dict) or payload.get("version") != CACHE_VERSION:
        return None
    return payload


def write_cache(path: Path, payload: dict) -> bool:
    """Write ``payload`` atomically and delete older cache files of the same source.

    Returns False (after a warning) when the cache folder cannot be created or written: loading still works,
    it just decodes again next time.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            torch.save({**payload, "version": CACHE_VERSION}, f)
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        warnings.warn(
            f"cannot write the decode cache in {path.parent} ({e.strerror or e}); loading without a cache, so "
            "every load decodes again. Set FER_CACHE_DIR or pass cache_dir= to a writable folder.",
            stacklevel=3,
        )
        return False
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    prefix = path.name.rsplit("-", 1)[0] + "-"
    for old in path.parent.glob(prefix + "*.pt"):
        if old != path:
            try:
                old.unlink()
            except OSError:
                pass
    return True
