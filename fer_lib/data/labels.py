"""Labels, the error type and the how-to-get-FER2013 text shared by every loader.

FER2013 (Goodfellow et al., "Challenges in Representation Learning", ICML 2013 workshop,
https://arxiv.org/abs/1307.0414) numbers its classes 0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise,
6 neutral. That order is ``fer_lib.EMOTIONS`` and is used everywhere. Kaggle's folder copy names its class
folders ``angry/ disgust/ ...``; alphabetical folder order (angry, disgust, fear, happy, neutral, sad, surprise)
is *not* the label order, so folders are always mapped **by name** with :func:`label_from_name`.
"""

from __future__ import annotations

from fer_lib import EMOTIONS, NUM_CLASSES

__all__ = [
    "EMOTIONS",
    "NUM_CLASSES",
    "SPLITS",
    "FERDataError",
    "FER2013_HELP",
    "fer2013_help",
    "label_from_name",
]

SPLITS = ("Training", "PublicTest", "PrivateTest")
"""FER2013's three splits, as named in the challenge CSV's ``Usage`` column and in Kaggle file-name prefixes."""

# Folder names seen in the wild for each class (all compared in lower case). Digits "0".."6" are the
# label numbers themselves (some re-exports use them as folder names).
_CLASS_ALIASES: dict[str, int] = {}
for _i, _names in enumerate(
    [
        ("angry", "anger", "mad"),
        ("disgust", "disgusted", "disgusting"),
        ("fear", "fearful", "afraid", "scared"),
        ("happy", "happiness", "joy"),
        ("sad", "sadness"),
        ("surprise", "surprised"),
        ("neutral", "calm"),
    ]
):
    for _n in (*_names, str(_i)):
        _CLASS_ALIASES[_n] = _i

FER2013_HELP = """\
FER2013 was not found. To get it (free, needs a Kaggle account for the first download):
  * Kaggle folder layout (train/<class>/*.jpg, test/<class>/*.jpg), dataset "msambare/fer2013":
        pip install kagglehub
        python -c "import kagglehub; print(kagglehub.dataset_download('msambare/fer2013'))"
  * or the original challenge CSV fer2013.csv (columns emotion,pixels,Usage) from the Kaggle competition
    "challenges-in-representation-learning-facial-expression-recognition-challenge"
    (icml_face_data.csv, with header "emotion, Usage, pixels", works too).
Then point fer_lib at it, in this order of precedence:
  1. the environment variable FER2013_DIR=/path/to/fer2013 (the folder, or the CSV file itself),
  2. ../shared/fer2013 beside the repository,
  3. data/fer2013/ (or data/fer2013.csv) inside the repository.
More: data/README.md."""
"""How to obtain FER2013 and where to put it; reused by error messages, the CLI and the README."""


def fer2013_help() -> str:
    """Return :data:`FER2013_HELP`, the instructions for downloading FER2013 and where to place it."""
    return FER2013_HELP


class FERDataError(ValueError):
    """Bad or missing FER2013 data. The message names the file/row/argument at fault and the fix."""


def label_from_name(name: str, *, where: str = "") -> int:
    """Map a class-folder name (any case, common synonyms, or a digit 0-6) to its FER2013 label.

    Args:
        name: the folder name, e.g. ``"Happy"``, ``"SAD"``, ``"surprised"`` or ``"3"``.
        where: the path shown in the error message.

    Returns:
        The label ``i`` with ``EMOTIONS[i]`` the class.

    Raises:
        FERDataError: for an unknown name; the message lists the accepted names.
    """
    key = name.strip().lower()
    if key in _CLASS_ALIASES:
        return _CLASS_ALIASES[key]
    raise FERDataError(
        f"unknown class folder {name!r}{f' in {where}' if where else ''}: class folders must be named after "
        f"FER2013's emotions {', '.join(EMOTIONS)} (any case; digits 0-{NUM_CLASSES - 1} also work). "
        "Rename or remove that folder."
    )
