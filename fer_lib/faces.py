"""Emotion on any photo: read it, find the faces, crop them like FER2013, classify, draw the result.

Pipeline:

1. :func:`load_image` reads a path, bytes, PIL image or array into ``uint8 RGB [H, W, 3]``: EXIF rotation
   applied (``ImageOps.exif_transpose``), alpha composited on white, 16-bit and float images scaled to 8 bit.
2. :func:`fer_lib.detect.detect_faces` finds the faces (MTCNN, whose weights ship with fer_lib, else dlib's HOG
   detector, else OpenCV's Haar cascades, else scikit-image's LBP cascade; retries on a padded and a rotated copy for
   tight crops and tilted heads; nothing is downloaded). When none is found, :class:`NoFaceError` says so, and says
   when the photo looks like it is itself a close-up of a face (:func:`fer_lib.detect.mostly_face`).
3. :func:`crop_face` cuts a square around each box with a margin (replicating the border where the square
   leaves the photo; a tilted face is turned upright), converts to grayscale and resizes to 48x48 -- FER2013's
   format.
4. :func:`predict_faces` normalises with :func:`fer_lib.data.preprocess` (as in training) and returns one
   :class:`FacePrediction` per face; :func:`annotate` draws boxes and labels.

A photo without a detectable face raises :class:`NoFaceError`; we never guess a face.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from fer_lib import EMOTIONS
from fer_lib.detect import (  # noqa: F401 - FaceBox, available_backends and MIN_FACE are re-exported
    MIN_FACE,
    FaceBox,
    available_backends,
    detect_faces,
    mostly_face,
    smallest_face,
    to_gray,
)
from fer_lib.inference.proba import predict_proba

FACE_SIZE = 48


class NoFaceError(LookupError):
    """No face was detected in a photo. ``where`` names the photo; ``mostly_face`` is True when the photo looks like it
    is itself a close crop of a face (:func:`fer_lib.detect.mostly_face`), so a widget can word its own hint."""

    def __init__(self, message: str, *, where: str = "the photo", mostly_face: bool = False):
        super().__init__(message)
        self.where = where
        self.mostly_face = mostly_face


class ImageReadError(ValueError):
    """A file or buffer could not be decoded as an image."""


# ----------------------------------------------------------------------------------------------- reading
def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale any numeric image to ``uint8``: 16-bit by 1/257, floats in [0, 1] by 255, others clipped."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        a = np.nan_to_num(arr.astype(np.float64))
        return np.clip(np.rint(a * 255.0 if a.max(initial=0) <= 1.0 else a), 0, 255).astype(np.uint8)
    a = arr.astype(np.int64)
    if a.max(initial=0) > 255:  # 16-bit (PIL gives 16-bit PNG/TIFF as mode "I" or "I;16")
        a = a / 257.0 if a.max() <= 65535 else (a - a.min()) * 255.0 / max(a.max() - a.min(), 1)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _array_to_rgb(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.size == 0:
        raise ImageReadError(f"image array of shape {arr.shape} is empty (no pixels); pass a photo of at least 1x1 "
                             "pixels, [H, W] grayscale, [H, W, 3] RGB or [H, W, 4] RGBA (did a crop or a slice "
                             "select nothing?)")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        g = _to_uint8(arr)
        return np.repeat(g[:, :, None], 3, axis=2)
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        rgb = _to_uint8(arr[:, :, :3]).astype(np.float32)
        if arr.shape[2] == 4:  # composite on white so a transparent background does not turn black
            alpha = _to_uint8(arr[:, :, 3]).astype(np.float32)[:, :, None] / 255.0
            rgb = rgb * alpha + 255.0 * (1.0 - alpha)
        return np.ascontiguousarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))
    batch = ("; a batch of cropped faces [N, 48, 48] goes to fer_lib.inference.predict_proba(model, faces) instead"
             if arr.ndim == 3 else "")
    raise ImageReadError(f"image array of shape {arr.shape}: expected [H, W] grayscale, [H, W, 3] RGB "
                         f"or [H, W, 4] RGBA{batch}")


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
    if img.width == 0 or img.height == 0:
        raise ImageReadError(f"image of {img.width}x{img.height} pixels is empty (no pixels); pass a photo of at "
                             "least 1x1 pixels (did a crop select nothing?)")
    img = ImageOps.exif_transpose(img)  # phones store portraits as landscape + an EXIF orientation tag
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _array_to_rgb(np.array(img))
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        return _array_to_rgb(np.array(img))
    if img.mode != "RGB":
        img = img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV
    return np.ascontiguousarray(np.array(img))


def load_image(source) -> np.ndarray:
    """Read a photo into ``uint8 RGB [H, W, 3]``.

    Args:
        source: a path, raw file bytes, a ``PIL.Image`` or a numpy array (``[H,W]``, ``[H,W,3]`` RGB or
            ``[H,W,4]`` RGBA; uint8, uint16 or float in ``[0, 1]``).

    Raises:
        FileNotFoundError: the path does not exist.
        ImageReadError: the file or bytes are not a decodable image (names the file), an image without pixels, or a
            file above twice ``PIL.Image.MAX_IMAGE_PIXELS``, which PIL refuses as a possible decompression bomb.

    Warns:
        PIL.Image.DecompressionBombWarning: a file above ``PIL.Image.MAX_IMAGE_PIXELS`` (about 89 megapixels by
            default); it is read all the same, and the one-line message names the file as given.
    """
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source)
    if isinstance(source, Image.Image):
        return _pil_to_rgb(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageReadError("cannot read image <uploaded bytes>: empty (0 bytes); upload the photo again")
        name, fp = "<uploaded bytes>", io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            raise ImageReadError(f"{path} is a directory, not an image; pass the image files in it (e.g. {path}/*.jpg)")
        if not path.is_file():
            raise FileNotFoundError(f"no such image file: {path}")
        if path.stat().st_size == 0:
            raise ImageReadError(f"cannot read image {path}: empty file (0 bytes); the download or copy did not "
                                 "finish, so copy the photo again")
        name, fp = str(path), path
    else:
        raise TypeError(f"cannot read an image from {type(source).__name__}; pass a path, bytes, "
                        "a PIL image or a numpy array")
    try:
        with warnings.catch_warnings():
            # PIL's own warning is printed with the path of PIL's source file and says nothing of the photo: it is
            # silenced here and said again below, in one line naming the photo as the caller named it
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(fp) as img:
                img.load()
                rgb = _pil_to_rgb(img)
    except Image.DecompressionBombError as e:
        limit = Image.MAX_IMAGE_PIXELS or 0
        raise ImageReadError(f"cannot read image {name}: it has more than {2 * limit:,} pixels, which PIL refuses "
                             "to decode (a possible decompression bomb); scale the photo down (by default faces are "
                             "searched on a copy of at most 1024 pixels a side), or, for a file you trust, raise "
                             "PIL.Image.MAX_IMAGE_PIXELS in Python") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        if isinstance(e, ImageReadError):  # an image without pixels: already says so
            raise
        raise ImageReadError(f"cannot read image {name}: {type(e).__name__}: {e}. Expected a JPEG, PNG, "
                             "BMP, TIFF or WebP photo; re-save it with an image editor if it is damaged") from e
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and rgb.shape[0] * rgb.shape[1] > limit:
        warnings.warn(f"photo {name} is large ({rgb.shape[1]}x{rgb.shape[0]} pixels, above PIL's "
                      f"decompression-bomb limit of {limit:,}); it was read all the same as a file you chose. "
                      "Scale it down to save time and memory (by default faces are searched on a copy of at most "
                      "1024 pixels a side)", Image.DecompressionBombWarning, stacklevel=2)
    return rgb


def sample_photos() -> dict[str, np.ndarray]:
    """Real photos of faces that ship inside fer_lib's dependencies (nothing is downloaded): name -> uint8 RGB.

    ``astronaut``: scikit-image's ``data.astronaut()`` (Eileen Collins, NASA, public domain; a clear smile), when
    scikit-image is installed; ``grace_hopper``: matplotlib's sample ``grace_hopper.jpg`` (Rear Admiral Grace
    Hopper, US Navy, public domain; a formal portrait), always (matplotlib is a dependency).
    """
    photos = {}
    try:
        from skimage import data as skdata  # optional (scikit-image)

        photos["astronaut"] = skdata.astronaut()
    except ImportError:
        pass
    try:
        from matplotlib import cbook  # deferred: only for the sample photo

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            photos["grace_hopper"] = load_image(f.read())
    except (OSError, ValueError):  # a matplotlib installed without its sample data
        pass
    return photos


def crop_face(gray: np.ndarray, box: tuple[int, int, int, int], *, margin: float = 0.15,
              size: int = FACE_SIZE) -> np.ndarray:
    """Square crop around ``box`` enlarged by ``margin`` (fraction of the box side on every side), resized
    to ``uint8 [size, size]``. Parts outside the photo are filled by replicating its border. A
    :class:`~fer_lib.detect.FaceBox` with an ``angle`` is cropped upright (the photo turned about the face centre).

    Raises:
        ValueError: a negative ``margin`` (it would crop inside the face, down to one pixel).
    """
    if not margin >= 0:
        raise ValueError(f"margin={margin}: must be >= 0 (a fraction of the face box added on every side)")
    x, y, bw, bh = box
    side = max(bw, bh) * (1.0 + 2.0 * margin)
    cx, cy = x + bw / 2.0, y + bh / 2.0
    angle = getattr(box, "angle", 0.0)
    if angle:  # a tilted face (found by detect_faces' rotated retry): turn the photo about the face centre
        m = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
        gray = cv2.warpAffine(gray, m, gray.shape[::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    x0, y0 = round(cx - side / 2.0), round(cy - side / 2.0)
    s = max(1, round(side))
    h, w = gray.shape
    pad = max(0, -x0, -y0, x0 + s - w, y0 + s - h)
    src = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else gray
    crop = src[y0 + pad:y0 + pad + s, x0 + pad:x0 + pad + s]
    interp = cv2.INTER_AREA if s > size else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interp)


# -------------------------------------------------------------------------------------------- prediction
@dataclass
class FacePrediction:
    """One face in a photo and the model's answer.

    Attributes:
        index: 0-based face number in the photo (largest face first).
        box: ``(x, y, w, h)`` in the original photo's pixels (after EXIF rotation).
        probs: softmax probability per emotion, in ``fer_lib.EMOTIONS`` order.
        top_k: the ``k`` most likely ``(emotion, probability)`` pairs, most likely first.
        face: the 48x48 ``uint8`` crop the model saw (for Grad-CAM and display; not in :meth:`to_dict`).
    """

    index: int
    box: tuple[int, int, int, int]
    probs: dict[str, float]
    top_k: list[tuple[str, float]]
    face: np.ndarray = field(repr=False)

    @property
    def label(self) -> str:
        """The most likely emotion."""
        return self.top_k[0][0]

    def to_dict(self) -> dict:
        """JSON-ready record: index, box, top_k and probs."""
        return {"face": self.index, "box": [int(v) for v in self.box],
                "top_k": [{"emotion": e, "prob": round(float(p), 6)} for e, p in self.top_k],
                "probs": {e: round(float(p), 6) for e, p in self.probs.items()}}


def _no_face_message(where: str, shape: tuple[int, int], *, max_side: int, min_face, backend: str,
                     close_up: bool = False) -> str:
    """What :class:`NoFaceError` says: where, and the way on that can help this photo. An image that is itself mostly
    a face (:func:`fer_lib.detect.mostly_face`) is told so, with ``detect=False``; when smaller faces than those looked
    for could be in it (a group photo), that is ``min_face`` (``--min-face``), not "a larger photo"."""
    if close_up:
        return (f"no face found in {where}, though it looks like it is itself mostly a face (a close crop, where the "
                "detector sees no whole face); if it is, classify it as it is: detect=False (--no-detect; in the "
                "notebook widget, untick 'detect faces'). Nothing was guessed")
    smallest = smallest_face(shape, max_side=max_side, min_face=min_face, backend=backend)
    if MIN_FACE < smallest < min(shape):
        suggest = max(MIN_FACE, smallest // 2)
        return (f"no face found in {where} (faces of {smallest} pixels and more were looked for); for smaller faces, "
                f"e.g. in a group photo, pass min_face={suggest} (--min-face {suggest}); for an already cropped face, "
                "detect=False (--no-detect); else try a frontal, well-lit photo")
    return (f"no face found in {where}; try detect=False (--no-detect) for an already cropped face, or a larger, "
            "frontal, well-lit photo")


def face_crops(image, *, detect: bool = True, select: str = "all", margin: float = 0.15,
               max_side: int = 1024, min_face: float | None = None, backend: str = "auto",
               source: str | None = None):
    """Boxes and 48x48 crops of the faces in ``image`` (``uint8 [N, 48, 48]``), largest first.

    With ``detect=False`` the photo is taken as one already-cropped face (its central square).
    Raises :class:`NoFaceError` when detection finds nothing; its message says which face size was looked for and,
    when smaller faces could be in the photo, names ``min_face`` (:func:`fer_lib.detect.detect_faces`).
    """
    if select not in ("all", "largest"):
        raise ValueError(f"select={select!r}: choose 'all' or 'largest'")
    rgb = load_image(image)
    gray = to_gray(rgb)
    if detect:
        boxes = detect_faces(rgb, max_side=max_side, min_face=min_face, backend=backend)
        if not boxes:
            where = source or (str(image) if isinstance(image, (str, os.PathLike)) else "the image")
            close_up = mostly_face(gray, backend=backend)
            raise NoFaceError(_no_face_message(where, gray.shape, max_side=max_side, min_face=min_face,
                                               backend=backend, close_up=close_up),
                              where=where, mostly_face=close_up)
        boxes = boxes[:1] if select == "largest" else boxes
        crops = [crop_face(gray, b, margin=margin) for b in boxes]
    else:
        h, w = gray.shape
        s = min(h, w)
        boxes = [((w - s) // 2, (h - s) // 2, s, s)]
        crops = [crop_face(gray, boxes[0], margin=0.0)]
    return rgb, boxes, np.stack(crops)


def classify_faces(model: torch.nn.Module, faces_uint8: np.ndarray, tta: str = "none") -> np.ndarray:
    """Softmax probabilities ``float32 [N, 7]`` for ``uint8 [N, 48, 48]`` faces (the model's mode is restored).

    Raises:
        ValueError: no faces (``N = 0``), or faces without pixels.
    """
    if len(faces_uint8) == 0:
        raise ValueError(f"classify_faces: no faces given (an array of shape {tuple(np.shape(faces_uint8))}); pass "
                         "uint8 faces [N, 48, 48] with N >= 1, e.g. the crops of fer_lib.faces.face_crops")
    return predict_proba(model, faces_uint8, tta).numpy()


def predict_faces(model: torch.nn.Module, image, *, detect: bool = True, select: str = "all", top_k: int = 3,
                  margin: float = 0.15, max_side: int = 1024, min_face: float | None = None, backend: str = "auto",
                  source: str | None = None) -> list[FacePrediction]:
    """Emotion of every face (or the largest) in a photo.

    Args:
        model: a fer_lib classifier (``fer_lib.pretrained()`` or ``fer_lib.load_model(path)``).
        image: a path, bytes, PIL image or array (see :func:`load_image`).
        detect: ``False`` for a photo that is already a cropped face.
        select: ``"all"`` faces or only the ``"largest"``.
        top_k: how many emotions to list in ``FacePrediction.top_k`` (1..7).
        margin, max_side, backend: see :func:`crop_face` and :func:`detect_faces`.
        min_face: the smallest face side to look for, in the photo's pixels (at least
            :data:`fer_lib.detect.MIN_FACE`); ``None``: 6% of the photo's shorter side. Lower it for the small faces
            of a group photo (see :func:`detect_faces`).
        source: the name used in error messages (defaults to the path).

    Raises:
        NoFaceError: detection found no face (never a guess).
        FileNotFoundError, ImageReadError: the photo cannot be read, or has no pixels (an empty array).
        ValueError: a ``min_face`` below :data:`fer_lib.detect.MIN_FACE`, or too small for this photo (the message
            names the smallest that works).
    """
    if not 1 <= int(top_k) <= len(EMOTIONS):
        raise ValueError(f"top_k={top_k}: must be between 1 and {len(EMOTIONS)}")
    _, boxes, crops = face_crops(image, detect=detect, select=select, margin=margin, max_side=max_side,
                                 min_face=min_face, backend=backend, source=source)
    probs = classify_faces(model, crops)
    out = []
    for i, (box, p, face) in enumerate(zip(boxes, probs, crops)):
        order = np.argsort(-p)[: int(top_k)]
        out.append(FacePrediction(index=i, box=tuple(int(v) for v in box),
                                  probs={e: float(v) for e, v in zip(EMOTIONS, p)},
                                  top_k=[(EMOTIONS[j], float(p[j])) for j in order], face=face))
    return out


EMOTION_COLORS = {"angry": (220, 40, 40), "disgust": (120, 160, 30), "fear": (150, 60, 200),
                  "happy": (250, 190, 0), "sad": (40, 100, 220), "surprise": (250, 120, 0),
                  "neutral": (140, 140, 140)}
"""RGB colour per emotion used by :func:`annotate` and the widget."""


def annotate(image, predictions: list[FacePrediction]) -> np.ndarray:
    """Copy of the photo (``uint8 RGB [H, W, 3]``) with a box and ``"#i emotion prob"`` per face."""
    out = load_image(image).copy()
    h, w = out.shape[:2]
    thick = max(2, round(max(h, w) / 400))
    font = max(0.5, max(h, w) / 900)
    for pred in predictions:
        x, y, bw, bh = pred.box
        color = EMOTION_COLORS.get(pred.label, (255, 255, 255))
        cv2.rectangle(out, (x, y), (x + bw, y + bh), color, thick)
        text = f"#{pred.index} {pred.label} {pred.top_k[0][1]:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, thick)
        ty = y - base - 2 if y - th - base - 4 >= 0 else min(h - base - 2, y + bh + th + 2)
        cv2.rectangle(out, (x, ty - th - 2), (x + tw + 2, ty + base), color, -1)
        cv2.putText(out, text, (x + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), thick, cv2.LINE_AA)
    return out


def save_png(image_rgb: np.ndarray, path) -> Path:
    """Write ``uint8 RGB`` as PNG (creating parent folders); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image_rgb).save(path)
    return path
