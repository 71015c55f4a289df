"""Where things live: the FER2013 data, the decode cache and run outputs.

One place decides, so the CLI, the tests and the notebooks agree:

* FER2013 is looked for in ``FER2013_DIR``, then ``../shared/fer2013`` (beside the repository),
  then ``./data/fer2013`` and ``./data/fer2013.csv`` inside the repository.
* Decoded tensors are cached in ``FER_CACHE_DIR`` or ``~/.cache/fer_lib`` (never inside the data folder,
  which may be read-only).
* Quick mode (``CI`` or ``FER_QUICK`` set to a true value) shrinks data and epochs so that every
  notebook and the test-suite run in minutes on 2 CPU cores.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

_TRUE = {"1", "true", "yes", "on"}


def _candidates() -> list[Path]:
    cands = []
    env = os.environ.get("FER2013_DIR")
    if env:
        cands.append(Path(env).expanduser())
    cands += [
        Path.cwd() / ".." / "shared" / "fer2013",
        REPO_ROOT / ".." / "shared" / "fer2013",
        REPO_ROOT / "data" / "fer2013",
        REPO_ROOT / "data" / "fer2013.csv",
    ]
    return cands


def find_fer2013(explicit: str | os.PathLike | None = None) -> Path | None:
    """Return the FER2013 root to use, or ``None`` when none is found.

    Args:
        explicit: a path given by the user. When given it is returned as is (resolved) even if it does not
            exist, so that the loader can raise an error naming it instead of silently falling back.
    """
    if explicit is not None:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get("FER2013_DIR")
    if env:
        return Path(env).expanduser().resolve()
    for cand in _candidates():
        if cand.exists():
            return cand.resolve()
    return None


def display_path(path: str | os.PathLike) -> str:
    """``path`` as shown to people and stored in notebook outputs: relative to the working folder when it is near
    (``../../shared/fer2013``), else relative to the home folder (``~/...``), else only its last two parts -- never
    the absolute path of the machine it ran on."""
    if not os.path.isabs(os.path.expanduser(str(path))):
        return str(path)  # relative, or not a path at all (e.g. a description of synthetic data): as given
    p = Path(path).expanduser()
    try:
        rel = Path(os.path.relpath(p, Path.cwd()))
        if rel.parts.count("..") <= 3:
            return str(rel)
    except ValueError:  # another drive on Windows
        pass
    try:
        return str(Path("~") / p.relative_to(Path.home()))
    except ValueError:
        return str(Path("...", *p.parts[-2:]))


def file_in_the_way(folder: str | os.PathLike) -> Path | None:
    """The existing file, if any, that keeps ``folder`` from being created: ``folder`` itself or one of its parents."""
    for p in (Path(folder), *Path(folder).parents):
        if p.exists():
            return None if p.is_dir() else p
    return None


def unwritable(folder: str | os.PathLike) -> Path | None:
    """The existing folder at or above ``folder`` that this process may not write into (permissions, a read-only
    file system), so that ``folder`` or a file in it cannot be written; ``None`` when it can be (or when a file is
    in the way: :func:`file_in_the_way` names that). Checked with ``os.access``: nothing is written."""
    path = Path(folder).absolute()
    for p in (path, *path.parents):
        if p.is_dir():
            return None if os.access(p, os.W_OK | os.X_OK) else p
        if p.exists():
            return None
    return None


def cache_dir() -> Path:
    """Folder for decoded-data caches (``FER_CACHE_DIR`` or ``~/.cache/fer_lib``)."""
    env = os.environ.get("FER_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fer_lib"


def is_quick() -> bool:
    """True when ``FER_QUICK`` or ``CI`` is set to a true value: tiny data, one short epoch."""
    for var in ("FER_QUICK", "CI"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return True
    return False
