"""Finding faces in photos, offline: MTCNN (its weights ship with fer_lib), else dlib's HOG detector, else OpenCV's
Haar cascades, else scikit-image's LBP cascade; with retries for the faces people actually photograph.

Backends (``backend="auto"`` takes the first available; none downloads anything):

* ``"mtcnn"``: the multi-task cascaded CNN of Zhang et al. 2016 (https://arxiv.org/abs/1604.02878), three small
  convolutional networks run by torch (:mod:`fer_lib.mtcnn`), with the original authors' weights as converted by
  facenet-pytorch (MIT licence), shipped inside fer_lib (``fer_lib/weights/detector/mtcnn.safetensors``, 1 MB):
  always available. Chosen as the default on the face-detection benchmark (``python -m fer_lib bench --faces``,
  docs/results/faces.md): it finds covered, tightly cropped and turned faces that the HOG detector misses.
* ``"dlib-hog"``: dlib's frontal face detector, a HOG + linear SVM sliding window with five filters (frontal, turned
  left/right, tilted left/right) compiled into dlib itself (Dalal & Triggs 2005, https://doi.org/10.1109/CVPR.2005.177;
  http://dlib.net/face_detector.py.html). Installed by ``pip install "fer_lib[faces]"`` (the ``dlib-bin`` wheel).
* ``"opencv-haar"``: Viola & Jones 2001 (https://doi.org/10.1109/CVPR.2001.990517), the cascades shipped in
  ``cv2.data.haarcascades`` (``frontalface_default``, then ``alt2``) by ``opencv-python(-headless) < 5``.
* ``"skimage-lbp"``: scikit-image's LBP frontal-face cascade (an OpenCV-trained model shipped in ``skimage.data``).

When the photo as given yields no face, :func:`detect_faces` retries (``retries=True``, the default):

1. on a copy padded by a quarter of its side (edges replicated): a tightly cropped face, whose box would touch the
   border, becomes a face inside a frame, which every sliding-window detector needs;
2. on that copy rotated by -20 and +20 degrees: a tilted head. A face found this way is returned as a
   :class:`FaceBox` with its ``angle``, and :func:`fer_lib.faces.crop_face` crops it upright, as FER2013's faces are.

Small faces (a group photo): by default a face is looked for only when its side is at least ``min_face_frac`` = 6% of
the photo's shorter side, and at least the detector's smallest window (:data:`WINDOW`: 24 pixels, 40 for dlib) in the
copy shrunk to ``max_side``. ``min_face=PIXELS`` looks for faces down to that size in the photo's own pixels instead:
the copy searched is scaled so that such a face fills the detector's smallest window (enlarged beyond the photo if
need be, and at most :data:`MAX_SEARCH_SIDE` pixels a side), which takes longer on a large photo.
:func:`smallest_face` says which size a call looks down to.

Then (``upright=True``) each face's remaining tilt is read from its eyes (OpenCV's Haar eye cascade, :func:`eye_roll`)
and added to its ``angle``, so that the 48x48 crop is upright like FER2013's faces; when the eyes are not found
clearly the box is kept as detected.

Measured, every backend side by side, under the conditions people meet (tight crops, covered mouths and eyes, turned
heads, dark photos, small and several faces, face-free images) by ``python -m fer_lib bench --faces``
(:mod:`fer_lib.bench.faces`): docs/results/faces.md.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from fer_lib import mtcnn

BACKENDS = ("mtcnn", "dlib-hog", "opencv-haar", "skimage-lbp")
PAD_FRACTION = 0.25
RETRY_ANGLES = (-20.0, 20.0)
DLIB_MIN_SCORE = 0.2  # dlib's detection score a face needs (its own threshold is 0)
HAAR_RETRY_NEIGHBOURS = 9  # Haar's minNeighbors on the padded and turned retries (5 on the photo as it is)
MTCNN_MIN_PROB = 0.9  # MTCNN's last-stage face probability a face needs (the paper's last threshold is 0.7)
EQUALIZE = {"mtcnn": False, "dlib-hog": True, "opencv-haar": True, "skimage-lbp": True}
"""Whether the photo's histogram is equalised before the backend sees it: the HOG and cascade detectors gain from the
stretched contrast; MTCNN, a CNN trained on natural photos, finds fewer faces in an equalised one (face-detection
benchmark, docs/results/faces.md)."""
CLIP_TO_PHOTO = ("mtcnn",)
"""Backends whose boxes are clipped to the photo: MTCNN extends a face cut by the photo's border (a close crop) far
beyond it, and the crop of such a box would show the face small, inside a wide replicated border."""
WINDOW = {"mtcnn": 20, "dlib-hog": 40, "opencv-haar": 24, "skimage-lbp": 24}
"""Smallest face side (pixels of the copy searched) each backend can find: MTCNN's first network sees 12x12 windows,
but below 20 pixels (the usual minimum) its boxes are unreliable; dlib's 80x80 HOG window on the copy it
doubles in size (one upsampling, see ``_detect_dlib``); the 24x24 windows of the Haar and LBP cascades."""
MIN_FACE = 12
"""The smallest ``min_face`` (pixels) accepted: a quarter of FER2013's 48-pixel side; the 48x48 crop of a smaller face
would be almost all interpolation."""
MAX_SEARCH_SIDE = 4096
"""Longest side (pixels) of the copy searched for ``min_face``: enlarging a large photo further would take more time
and memory than a face detector should; crop the photo around the faces instead."""


class FaceBox(tuple):
    """A face box ``(x, y, w, h)`` in the photo's pixels; ``angle`` (degrees, counter-clockwise) is the rotation
    that makes the face upright (0 for a face found as it is). Behaves as a plain 4-tuple everywhere else."""

    angle: float

    def __new__(cls, box, angle: float = 0.0):
        obj = super().__new__(cls, tuple(int(v) for v in box))
        obj.angle = float(angle)
        return obj

    def __reduce__(self):
        return (FaceBox, (tuple(self), self.angle))


def to_gray(image: np.ndarray) -> np.ndarray:
    """``uint8 [H, W]`` luminance (ITU-R BT.601, as PIL ``convert("L")`` and FER2013's grayscale)."""
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


# ------------------------------------------------------------------------------------------------- backends
def _mtcnn_available() -> bool:
    return mtcnn.WEIGHTS.is_file()  # shipped with fer_lib; missing only from a damaged install


def _dlib_available() -> bool:
    try:
        import dlib  # noqa: F401  # optional (the faces extra)
    except ImportError:
        return False
    return hasattr(dlib, "get_frontal_face_detector")


def _haar_available() -> bool:
    d = getattr(getattr(cv2, "data", None), "haarcascades", "")
    return hasattr(cv2, "CascadeClassifier") and Path(d, "haarcascade_frontalface_default.xml").is_file()


def _skimage_available() -> bool:
    try:
        import skimage.data  # noqa: F401  # optional (scikit-image)
        from skimage.feature import Cascade  # noqa: F401
    except ImportError:
        return False
    return True


def available_backends() -> list[str]:
    """Face detectors usable here, best first: ``"mtcnn"``, ``"dlib-hog"``, ``"opencv-haar"``, ``"skimage-lbp"``."""
    checks = (_mtcnn_available(), _dlib_available(), _haar_available(), _skimage_available())
    return [name for name, ok in zip(BACKENDS, checks) if ok]


_MTCNN: dict[int, mtcnn.MTCNN] = {}


def _detect_mtcnn(gray: np.ndarray, min_size: int) -> list[tuple[int, int, int, int]]:
    if min(gray.shape) < min_size:  # no scale of the pyramid to search at
        return []
    if min_size not in _MTCNN:
        _MTCNN[min_size] = mtcnn.MTCNN(min_face_size=min_size)
    boxes, probs = _MTCNN[min_size].detect(np.repeat(gray[:, :, None], 3, axis=2))
    out = []
    for (x1, y1, x2, y2), p in zip(boxes, probs):
        bw, bh = x2 - x1, y2 - y1
        if p >= MTCNN_MIN_PROB and min(bw, bh) >= 0.8 * min_size:  # its boxes hug the face a little tighter
            out.append((int(round(x1)), int(round(y1)), int(round(bw)), int(round(bh))))
    return out


_DLIB = None


def _dlib_detector():
    """dlib's HOG face detector, made once."""
    global _DLIB
    if _DLIB is None:
        import dlib  # optional (the faces extra)

        _DLIB = dlib.get_frontal_face_detector()
    return _DLIB


def _detect_dlib(gray: np.ndarray, min_size: int) -> list[tuple[int, int, int, int]]:
    upsample = 1 if min_size < 80 else 0  # the HOG window is 80x80; one upsampling finds faces from 40 px
    rects, scores, _ = _dlib_detector().run(np.ascontiguousarray(gray), upsample, 0.0)
    # dlib accepts any window scoring above 0; weak ones (e.g. the badge on scikit-image's astronaut, 0.08) are
    # mostly false alarms, real faces score about 1 or more
    return [(r.left(), r.top(), r.width(), r.height()) for r, s in zip(rects, scores)
            if s >= DLIB_MIN_SCORE and min(r.width(), r.height()) >= min_size]


def _detect_haar(gray: np.ndarray, min_size: int, neighbours: int = 5) -> list[tuple[int, int, int, int]]:
    for name in ("haarcascade_frontalface_default.xml", "haarcascade_frontalface_alt2.xml"):
        cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades, name)))
        if cascade.empty():
            raise RuntimeError(f"OpenCV could not load {name} from {cv2.data.haarcascades}")
        boxes = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=neighbours, minSize=(min_size, min_size))
        if len(boxes):
            return [tuple(int(v) for v in b) for b in boxes]
    return []


def _detect_skimage(gray: np.ndarray, min_size: int) -> list[tuple[int, int, int, int]]:
    from skimage import data as skdata  # optional (scikit-image)
    from skimage.feature import Cascade

    cascade = Cascade(skdata.lbp_frontal_face_cascade_filename())
    side = max(min(gray.shape), min_size)
    # The LBP cascade fires on background more often than Haar. On scikit-image's astronaut (PNG, JPEG q75-98,
    # 256 px, 4000x3000) the face gathers 16-19 neighbouring windows and spurious boxes up to 15, so we ask
    # for 16: a narrow margin, which is why the other detectors are preferred when present.
    found = cascade.detect_multi_scale(img=gray, scale_factor=1.1, step_ratio=1, min_size=(min_size, min_size),
                                       max_size=(side, side), min_neighbor_number=16)
    return [(d["c"], d["r"], d["width"], d["height"]) for d in found]


_DETECTORS = {"mtcnn": _detect_mtcnn, "dlib-hog": _detect_dlib, "opencv-haar": _detect_haar, "skimage-lbp": _detect_skimage}


def resolve_backend(backend: str = "auto") -> str:
    """The backend name to use for ``backend`` (``"auto"``: the best available); errors name the choices."""
    backends = available_backends()
    if backend == "auto":
        if not backends:
            raise RuntimeError("no face detector available: fer_lib/weights/detector/mtcnn.safetensors is missing (reinstall "
                               "fer_lib), and none of dlib-bin (pip install 'fer_lib[faces]'), "
                               "opencv-python-headless<5 (ships the Haar cascades) or scikit-image")
        return backends[0]
    if backend not in BACKENDS:
        raise ValueError(f"unknown face detector backend {backend!r}; choose 'auto' or one of {BACKENDS}")
    if backend not in backends:
        raise RuntimeError(f"face detector {backend!r} is not available here (available: {backends})")
    return backend


# ------------------------------------------------------------------------------------------------ detection
def _check_min_face(min_face) -> None:
    if min_face is None:
        return
    try:
        ok = not isinstance(min_face, bool) and math.isfinite(float(min_face)) and float(min_face) >= MIN_FACE
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"min_face={min_face!r} (--min-face): must be a number of pixels, at least {MIN_FACE} (the "
                         "smallest face side to look for in the photo); leave it unset (None) for the default, 6% "
                         "of the photo's shorter side")


def _search_size(shape: tuple[int, int], name: str, max_side: int, min_face_frac: float,
                 min_face: float | None) -> tuple[float, tuple[int, int], int]:
    """``(scale, (width, height), min_size)``: the factor the photo ``shape = (h, w)`` is resized by for detection, the
    size of that copy, and the smallest face side looked for in it (pixels of the copy)."""
    h, w = shape
    scale = min(1.0, max_side / max(h, w))
    if min_face is not None and WINDOW[name] / float(min_face) > scale:
        # a face of min_face pixels must fill the backend's smallest window in the copy searched: a larger copy
        scale = WINDOW[name] / float(min_face)
        if max(h, w) * scale > MAX_SEARCH_SIDE + 0.5:
            lowest = max(MIN_FACE, math.ceil(WINDOW[name] * max(h, w) / MAX_SEARCH_SIDE))
            raise ValueError(f"min_face={float(min_face):g} (--min-face): faces that small in this {w}x{h} photo "
                             f"would mean searching a {round(w * scale)}x{round(h * scale)} copy of it (at most "
                             f"{MAX_SEARCH_SIDE} pixels a side); pass min_face={lowest} (--min-face {lowest}) or "
                             "more, or crop the photo around the faces first")
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if min_face is None:
        min_size = max(24, int(min_face_frac * min(size)))
    else:
        min_size = max(WINDOW[name], int(min_face * scale + 1e-6))
    return scale, size, min_size


def smallest_face(shape, *, max_side: int = 1024, min_face_frac: float = 0.06, min_face: float | None = None,
                  backend: str = "auto") -> int:
    """The smallest face side, in the photo's own pixels, that :func:`detect_faces` looks for in a photo of this
    ``shape`` (``(h, w)`` or ``(h, w, channels)``) with these arguments; smaller faces are not found."""
    name = resolve_backend(backend)
    _check_min_face(min_face)
    scale, _, min_size = _search_size(tuple(shape[:2]), name, max_side, min_face_frac, min_face)
    return math.ceil(max(min_size, WINDOW[name]) / scale - 1e-6)


def _rotation(shape: tuple[int, int], angle: float) -> np.ndarray:
    h, w = shape
    return cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)


def _retry_views(gray: np.ndarray, retries: bool):
    """``(image, pad, angle, matrix)`` views to search, in order: as is, padded, padded and rotated."""
    yield gray, 0, 0.0, None
    if not retries:
        return
    pad = max(1, round(PAD_FRACTION * max(gray.shape)))
    padded = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    yield padded, pad, 0.0, None
    for angle in RETRY_ANGLES:
        m = _rotation(padded.shape, angle)
        rotated = cv2.warpAffine(padded, m, padded.shape[::-1], flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
        yield rotated, pad, angle, m


def detect_faces(image, *, max_side: int = 1024, min_face_frac: float = 0.06, min_face: float | None = None,
                 backend: str = "auto", retries: bool = True, upright: bool = True) -> list[FaceBox]:
    """Find faces: boxes (:class:`FaceBox`, ``(x, y, w, h)``) in the original image's pixels, largest first.

    Args:
        image: ``uint8`` RGB ``[H, W, 3]`` or grayscale ``[H, W]`` (see :func:`fer_lib.faces.load_image`).
        max_side: photos larger than this are downscaled for detection (speed) and the boxes mapped back.
        min_face_frac: smallest face side as a fraction of the (downscaled) photo's shorter side (min 24 px).
        min_face: instead, the smallest face side in the photo's own pixels (at least :data:`MIN_FACE`): for small
            faces in a group photo. The photo is searched at the scale where such a face fills the detector's
            smallest window (slower on a large photo); see the module docstring.
        backend: ``"auto"`` or one of :data:`BACKENDS`.
        retries: when nothing is found, retry on a padded copy (tight crops), then rotated by +-20 degrees (tilted
            heads); see the module docstring.
        upright: set each box's ``angle`` from the eyes (:func:`align`), so that the crop is upright like FER2013's.

    Raises:
        ValueError: an image without pixels; a ``min_face`` below :data:`MIN_FACE`, or one that would mean searching
            a copy larger than :data:`MAX_SEARCH_SIDE` (the message names the smallest that works for this photo).
    """
    name = resolve_backend(backend)
    _check_min_face(min_face)
    image = np.asarray(image)
    if image.size == 0:
        raise ValueError(f"detect_faces: an image of shape {image.shape} has no pixels; pass a photo, uint8 RGB "
                         "[H, W, 3] or grayscale [H, W] (fer_lib.faces.load_image reads one)")
    gray = to_gray(image)
    h, w = gray.shape
    scale, size, min_size = _search_size((h, w), name, max_side, min_face_frac, min_face)
    # shrunk for speed, or enlarged so that faces of min_face pixels fill the detector's smallest window
    small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR) \
        if scale != 1.0 else gray
    if EQUALIZE[name]:
        small = cv2.equalizeHist(small)
    if min(small.shape) < min_size:
        return []
    for k, (view, pad, angle, m) in enumerate(_retry_views(small, retries)):
        if k and name == "opencv-haar":  # the retries see more windows: ask the cascade for more agreement
            raw = _detect_haar(view, min_size, neighbours=HAAR_RETRY_NEIGHBOURS)
        else:
            raw = _DETECTORS[name](view, min_size)
        if not raw:
            continue
        back = cv2.invertAffineTransform(m) if m is not None else None
        boxes = []
        for x, y, bw, bh in raw:
            cx, cy = x + bw / 2.0, y + bh / 2.0
            if back is not None:  # the face centre in the padded, unrotated copy
                cx, cy = back @ np.array([cx, cy, 1.0])
            cx, cy = (cx - pad) / scale, (cy - pad) / scale
            bw, bh = bw / scale, bh / scale
            x0, y0, x1, y1 = cx - bw / 2.0, cy - bh / 2.0, cx + bw / 2.0, cy + bh / 2.0
            if name in CLIP_TO_PHOTO:
                x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)
            boxes.append(FaceBox((round(x0), round(y0), round(x1 - x0), round(y1 - y0)), angle=angle))
        boxes = align(gray, boxes) if upright else boxes
        return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)
    return []


MOSTLY_FACE = 0.25
""":func:`mostly_face`: the share of the image a weak face candidate must cover."""
MOSTLY_FACE_PROB = 0.3
""":func:`mostly_face` with MTCNN: the (lowered) probability a weak candidate needs at each of its three stages."""


def _weak_candidates(name: str, padded: np.ndarray, min_size: int) -> list:
    """Face candidates with the backend's acceptance lowered (for :func:`mostly_face` only)."""
    if name == "mtcnn":
        if min(padded.shape) < min_size:
            return []
        boxes, probs = mtcnn.MTCNN(min_face_size=min_size, thresholds=[MOSTLY_FACE_PROB] * 3).detect(
            np.repeat(padded[:, :, None], 3, axis=2))
        raw = [(x1, y1, x2 - x1, y2 - y1) for (x1, y1, x2, y2), p in zip(boxes, probs) if p >= MOSTLY_FACE_PROB]
    elif name == "dlib-hog":
        rects, _, _ = _dlib_detector().run(np.ascontiguousarray(padded), 0, -0.5)
        raw = [(r.left(), r.top(), r.width(), r.height()) for r in rects]
    elif name == "opencv-haar":
        raw = _detect_haar(cv2.equalizeHist(padded), min_size, neighbours=3)
    else:
        raw = _detect_skimage(cv2.equalizeHist(padded), min_size)
    return raw


def mostly_face(image, *, backend: str = "auto") -> bool:
    """Whether ``image``, in which :func:`detect_faces` found nothing, looks like it is itself mostly a face (a close
    crop): the backend, asked again on a padded copy with its acceptance lowered, sees a candidate covering at least
    :data:`MOSTLY_FACE` of the image. Used only to word the "no face found" message; nothing is classified on it."""
    name = resolve_backend(backend)
    gray = to_gray(np.asarray(image))
    scale = min(1.0, 512 / max(gray.shape))
    if scale < 1.0:
        gray = cv2.resize(gray, (round(gray.shape[1] * scale), round(gray.shape[0] * scale)),
                          interpolation=cv2.INTER_AREA)
    h, w = gray.shape
    pad = max(1, round(PAD_FRACTION * max(h, w)))
    padded = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    min_size = max(WINDOW[name], int(0.4 * min(h, w)))
    raw = _weak_candidates(name, padded, min_size)
    if name != "opencv-haar" and _haar_available():  # a second opinion, cheap: the cascade sees other cues
        raw += _weak_candidates("opencv-haar", padded, min_size)
    for x, y, bw, bh in raw:  # the part of the candidate inside the image as given
        ix = max(0.0, min(x + bw, pad + w) - max(x, pad))
        iy = max(0.0, min(y + bh, pad + h) - max(y, pad))
        if ix * iy >= MOSTLY_FACE * w * h:
            return True
    return False


# ------------------------------------------------------------------------------------------------ alignment
MAX_ROLL = 30.0  # degrees: a larger eye-line angle is more likely a false eye than a head that tilted


_EYES: list = []


def _eye_cascade():
    """OpenCV's Haar eye cascade, loaded once; ``None`` when this OpenCV does not ship it."""
    if not _EYES:
        path = Path(getattr(getattr(cv2, "data", None), "haarcascades", ""), "haarcascade_eye.xml")
        cascade = cv2.CascadeClassifier(str(path)) if path.is_file() and hasattr(cv2, "CascadeClassifier") else None
        _EYES.append(None if cascade is None or cascade.empty() else cascade)
    return _EYES[0]


def eye_roll(gray: np.ndarray, box) -> float | None:
    """The in-plane tilt of a face, from its eyes: the angle (degrees, counter-clockwise, as ``FaceBox.angle``) that
    makes the line between the eyes horizontal, measured on the face already turned by ``box.angle``.

    Uses OpenCV's Haar eye cascade on the upper half of the face; ``None`` when it is unavailable or does not find
    exactly one plausible pair (one eye on each side of the face's centre line, similar sizes, 25-65% of the face
    width apart, tilted at most :data:`MAX_ROLL`).
    """
    cascade = _eye_cascade()
    if cascade is None:
        return None
    x, y, w, h = box
    cx, cy = x + w / 2.0, y + h / 2.0
    angle = getattr(box, "angle", 0.0)
    if angle:
        gray = cv2.warpAffine(gray, cv2.getRotationMatrix2D((cx, cy), angle, 1.0), gray.shape[::-1],
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    x0, y0 = max(0, int(x)), max(0, int(y))
    top = gray[y0 : max(y0 + 1, int(y + 0.6 * h)), x0 : max(x0 + 1, int(x + w))]
    if min(top.shape) < 24:
        return None
    eyes = cascade.detectMultiScale(top, scaleFactor=1.1, minNeighbors=6, minSize=(max(8, int(0.12 * w)),) * 2,
                                    maxSize=(int(0.4 * w),) * 2)
    mid = cx - x0
    left = [e for e in eyes if e[0] + e[2] / 2 < mid]
    right = [e for e in eyes if e[0] + e[2] / 2 >= mid]
    if len(left) != 1 or len(right) != 1:
        return None
    (lx, ly, lw, lh), (rx, ry, rw, rh) = left[0], right[0]
    dx = (rx + rw / 2) - (lx + lw / 2)
    dy = (ry + rh / 2) - (ly + lh / 2)
    if not 0.25 * w <= dx <= 0.65 * w or max(lw, rw) > 1.6 * min(lw, rw):
        return None
    roll = float(np.degrees(np.arctan2(dy, dx)))
    return roll if abs(roll) <= MAX_ROLL else None


def align(gray: np.ndarray, boxes: list[FaceBox], min_roll: float = 4.0) -> list[FaceBox]:
    """Each box with its ``angle`` corrected by :func:`eye_roll` when the eyes are found and tilted by at least
    ``min_roll`` degrees; FER2013's faces are upright, so the crop is turned to match."""
    out = []
    for box in boxes:
        roll = eye_roll(gray, box)
        if roll is None:  # a strongly tilted head (found as it is by dlib's tilted filters): the eye cascade wants
            for extra in RETRY_ANGLES:  # its eyes nearly level, so look again on the face turned by +-20 degrees
                again = eye_roll(gray, FaceBox(box, angle=box.angle + extra))
                if again is not None:
                    roll = extra + again
                    break
        out.append(FaceBox(box, angle=box.angle + roll) if roll is not None and abs(roll) >= min_roll else box)
    return out
