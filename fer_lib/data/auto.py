"""``load_dataset``: FER2013 when it is found, otherwise the clearly labelled synthetic faces.

This is what the CLI, ``make demo`` and the notebooks call, so they run anywhere: on a machine with FER2013
they use it, elsewhere they still run end to end on :func:`fer_lib.data.load_synthetic` (``data.synthetic`` is
then True, ``data.summary()`` says so, and a warning is given).
"""

from __future__ import annotations

import warnings

from fer_lib import paths

from .dataset import FERData
from .labels import FER2013_HELP, FERDataError
from .loaders import load_fer2013
from .synthetic import load_synthetic

__all__ = ["load_dataset", "QUICK_SIZES", "SYNTHETIC_SIZES"]

QUICK_SIZES = {"Training": 2100, "PublicTest": 700, "PrivateTest": 700, "Test": 700}
"""Quick mode (``FER_QUICK``/``CI``): stratified subsets of at most these many images per split."""
SYNTHETIC_SIZES = {"full": (7000, 1400), "quick": (2100, 700)}
"""``(n_train, n_val)`` of the synthetic fallback, normal and quick mode."""


def load_dataset(root=None, *, synthetic_fallback: bool = True, quick: bool | None = None, cache_dir=None,
                 seed: int = 0) -> FERData:
    """FER2013 when found, else synthetic faces; in quick mode a small stratified subset.

    Args:
        root: FER2013 location; None searches ``FER2013_DIR``, ``../shared/fer2013``, ``data/fer2013``. An
            explicit ``root`` (or ``FER2013_DIR``) that does not exist raises instead of falling back.
        synthetic_fallback: when FER2013 is not found, return :func:`load_synthetic` (True) or raise (False).
        quick: shrink every split to :data:`QUICK_SIZES` (default: :func:`fer_lib.paths.is_quick`).
        cache_dir: decode cache folder for :func:`load_fer2013`.
        seed: seed of the quick-mode subsets and of the synthetic faces.

    Raises:
        FERDataError: FER2013 not found and ``synthetic_fallback=False``, or a given root is bad.
    """
    quick = paths.is_quick() if quick is None else quick
    found = paths.find_fer2013(root)
    if found is None:
        if not synthetic_fallback:
            raise FERDataError(FER2013_HELP)
        n_train, n_val = SYNTHETIC_SIZES["quick" if quick else "full"]
        warnings.warn("FER2013 not found: using SYNTHETIC cartoon faces instead (see fer_lib.data.fer2013_help())",
                      stacklevel=2)
        data = load_synthetic(n_train, n_val, seed=seed)
        data.notes.append("FER2013 was not found, so this is the synthetic fallback. " + FER2013_HELP.splitlines()[0])
        return data
    data = load_fer2013(found, cache_dir=cache_dir)
    if quick:
        full = {k: len(v) for k, v in data.splits.items()}
        data = FERData({k: v.subset(QUICK_SIZES.get(k, 700), seed) for k, v in data.splits.items()}, form=data.form,
                       synthetic=False, source=data.source, skipped=data.skipped, from_cache=data.from_cache,
                       notes=[*data.notes, "quick mode: stratified subsets " + ", ".join(
                           f"{k} {min(n, QUICK_SIZES.get(k, 700))}/{n}" for k, n in full.items())])
    return data
