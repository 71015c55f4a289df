"""Emotion on any photo: read it, find the faces, crop them like FER2013, classify, draw the result.

Pipeline (Viola & Jones 2001, "Rapid object detection using a boosted cascade of simple features",
https://doi.org/10.1109/CVPR.2001.990517, for the detector):

1. :func:`load_image` reads a path, bytes, PIL image or array into ``uint8 RGB [H, W, 3]``: EXIF rotation
   applied (``ImageOps.exif_transpose``), alpha composited on white, 16-bit and float images scaled to 8 bit.
2. :func:`detect_faces` runs a frontal-face cascade on a copy downscaled to at most ``max_side`` pixels
   and maps the boxes back to the original pixels. Backends (``backend="auto"`` takes the first available):
   OpenCV's Haar cascades shipped in ``cv2.data.haarcascades`` (``frontalface_default``, then ``alt2`` when
   the first finds nothing) -- present in ``opencv-python(-headless) < 5``; OpenCV 5 no longer ships
   them, and then scikit-image's LBP frontal-face cascade (an OpenCV-trained model shipped in
   ``skimage.data``) is used. Nothing is downloaded.
3. :func:`crop_face` cuts a square around each box with a margin (replicating the border where the square
   leaves the photo), converts to grayscale and resizes to 48x48 -- FER2013's format.
4. :func:`predict_faces` normalises with :func:`fer_lib.data.preprocess` (as in training) and returns one
   :class:`FacePrediction` per face; :func:`annotate` draws boxes and labels.

A photo without a detectable face raises :class:`NoFaceError`; we never guess a face.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from fer_lib import EMOTIONS
from fer_lib.explain.utils import eval_mode, to_model_input

FACE_SIZE = 48


class NoFaceError(LookupError):
    """No face was detected in a photo."""


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
    raise ImageReadError(f"image array of shape {arr.shape}: expected [H, W] grayscale, [H, W, 3] RGB "
                         "or [H, W, 4] RGBA")


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
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
        ImageReadError: the file or bytes are not a decodable image (names the file).
    """
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source)
    if isinstance(source, Image.Image):
        return _pil_to_rgb(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        name, fp = "<uploaded bytes>", io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no such image file: {path}")
        name, fp = str(path), path
    else:
        raise TypeError(f"cannot read an image from {type(source).__name__}; pass a path, bytes, "
                        "a PIL image or a numpy array")
    try:
        with Image.open(fp) as img:
            img.load()
            return _pil_to_rgb(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageReadError(f"cannot read image {name}: {type(e).__name__}: {e}. Expected a JPEG, PNG, "
                             "BMP, TIFF or WebP photo; re-save it with an image editor if it is damaged") from e


def to_gray(image_rgb: np.ndarray) -> np.ndarray:
    """``uint8 [H, W]`` luminance (ITU-R BT.601, as PIL ``convert("L")`` and FER2013's grayscale)."""
    if image_rgb.ndim == 2:
        return image_rgb
    return cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)


# --------------------------------------------------------------------------------------------- detection
def _haar_available() -> bool:
    d = getattr(getattr(cv2, "data", None), "haarcascades", "")
    return hasattr(cv2, "CascadeClassifier") and Path(d, "haarcascade_frontalface_default.xml").is_file()


def _skimage_available() -> bool:
    try:
        import skimage.data  # noqa: F401
        from skimage.feature import Cascade  # noqa: F401
    except ImportError:
        return False
    return True


def available_backends() -> list[str]:
    """Face detectors usable here, best first: ``"opencv-haar"``, ``"skimage-lbp"``."""
    return [n for n, ok in (("opencv-haar", _haar_available()), ("skimage-lbp", _skimage_available())) if ok]


def _detect_haar(gray: np.ndarray, min_size: int) -> list[tuple[int, int, int, int]]:
    for name in ("haarcascade_frontalface_default.xml", "haarcascade_frontalface_alt2.xml"):
        cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades, name)))
        if cascade.empty():
            raise RuntimeError(f"OpenCV could not load {name} from {cv2.data.haarcascades}")
        boxes = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_size, min_size))
        if len(boxes):
            return [tuple(int(v) for v in b) for b in boxes]
    return []


def _detect_skimage(gray: np.ndarray, min_size: int) -> list[tuple[int, int, int, int]]:
    from skimage import data as skdata
    from skimage.feature import Cascade

    cascade = Cascade(skdata.lbp_frontal_face_cascade_filename())
    side = max(min(gray.shape), min_size)
    # The LBP cascade fires on background more often than Haar. On scikit-image's astronaut (PNG, JPEG q75-98,
    # 256 px, 4000x3000) the face gathers 16-19 neighbouring windows and spurious boxes up to 15, so we ask
    # for 16: a narrow margin, which is why OpenCV's Haar cascades are preferred when present.
    found = cascade.detect_multi_scale(img=gray, scale_factor=1.1, step_ratio=1, min_size=(min_size, min_size),
                                       max_size=(side, side), min_neighbor_number=16)
    return [(d["c"], d["r"], d["width"], d["height"]) for d in found]


def detect_faces(image, *, max_side: int = 1024, min_face_frac: float = 0.06,
                 backend: str = "auto") -> list[tuple[int, int, int, int]]:
    """Find frontal faces; boxes ``(x, y, w, h)`` in the original image's pixels, largest first.

    Args:
        image: ``uint8`` RGB ``[H, W, 3]`` or grayscale ``[H, W]`` (see :func:`load_image`).
        max_side: photos larger than this are downscaled for detection (speed; the cascades work on
            24-pixel windows anyway) and the boxes are mapped back.
        min_face_frac: smallest face side as a fraction of the (downscaled) photo's shorter side (min 24 px).
        backend: ``"auto"``, ``"opencv-haar"`` or ``"skimage-lbp"``.
    """
    gray = to_gray(np.asarray(image))
    h, w = gray.shape
    scale = min(1.0, max_side / max(h, w))
    small = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA) if scale < 1.0 else gray
    small = cv2.equalizeHist(small)
    min_size = max(24, int(min_face_frac * min(small.shape)))
    backends = available_backends()
    if backend == "auto":
        if not backends:
            raise RuntimeError("no face detector available: install opencv-python-headless<5 (ships the Haar "
                               "cascades) or scikit-image (ships an LBP face cascade)")
        backend = backends[0]
    if backend not in ("opencv-haar", "skimage-lbp"):
        raise ValueError(f"unknown face detector backend {backend!r}; choose 'auto', 'opencv-haar' or 'skimage-lbp'")
    if backend not in backends:
        raise RuntimeError(f"face detector {backend!r} is not available here (available: {backends})")
    if min(small.shape) < min_size:
        return []
    raw = _detect_haar(small, min_size) if backend == "opencv-haar" else _detect_skimage(small, min_size)
    boxes = [(round(x / scale), round(y / scale), round(bw / scale), round(bh / scale)) for x, y, bw, bh in raw]
    return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)


def crop_face(gray: np.ndarray, box: tuple[int, int, int, int], *, margin: float = 0.15,
              size: int = FACE_SIZE) -> np.ndarray:
    """Square crop around ``box`` enlarged by ``margin`` (fraction of the box side on every side), resized
    to ``uint8 [size, size]``. Parts outside the photo are filled by replicating its border."""
    x, y, bw, bh = box
    side = max(bw, bh) * (1.0 + 2.0 * margin)
    cx, cy = x + bw / 2.0, y + bh / 2.0
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


def face_crops(image, *, detect: bool = True, select: str = "all", margin: float = 0.15,
               max_side: int = 1024, backend: str = "auto", source: str | None = None):
    """Boxes and 48x48 crops of the faces in ``image`` (``uint8 [N, 48, 48]``), largest first.

    With ``detect=False`` the photo is taken as one already-cropped face (its central square).
    Raises :class:`NoFaceError` when detection finds nothing.
    """
    if select not in ("all", "largest"):
        raise ValueError(f"select={select!r}: choose 'all' or 'largest'")
    rgb = load_image(image)
    gray = to_gray(rgb)
    if detect:
        boxes = detect_faces(rgb, max_side=max_side, backend=backend)
        if not boxes:
            where = source or (str(image) if isinstance(image, (str, os.PathLike)) else "the image")
            raise NoFaceError(f"no face found in {where}; try detect=False (--no-detect) for an already "
                              "cropped face, or a larger, frontal, well-lit photo")
        boxes = boxes[:1] if select == "largest" else boxes
        crops = [crop_face(gray, b, margin=margin) for b in boxes]
    else:
        h, w = gray.shape
        s = min(h, w)
        boxes = [((w - s) // 2, (h - s) // 2, s, s)]
        crops = [crop_face(gray, boxes[0], margin=0.0)]
    return rgb, boxes, np.stack(crops)


@torch.no_grad()
def classify_faces(model: torch.nn.Module, faces_uint8: np.ndarray) -> np.ndarray:
    """Softmax probabilities ``float32 [N, 7]`` for ``uint8 [N, 48, 48]`` faces (mode restored)."""
    from fer_lib.explain.utils import logits_of

    with eval_mode(model):
        logits = logits_of(model(to_model_input(faces_uint8, model)))
    return torch.softmax(logits.float(), dim=1).cpu().numpy()


def predict_faces(model: torch.nn.Module, image, *, detect: bool = True, select: str = "all", top_k: int = 3,
                  margin: float = 0.15, max_side: int = 1024, backend: str = "auto",
                  source: str | None = None) -> list[FacePrediction]:
    """Emotion of every face (or the largest) in a photo.

    Args:
        model: a fer_lib classifier (e.g. from ``fer_lib.train.load_model``).
        image: a path, bytes, PIL image or array (see :func:`load_image`).
        detect: ``False`` for a photo that is already a cropped face.
        select: ``"all"`` faces or only the ``"largest"``.
        top_k: how many emotions to list in ``FacePrediction.top_k`` (1..7).
        margin, max_side, backend: see :func:`crop_face` and :func:`detect_faces`.
        source: the name used in error messages (defaults to the path).

    Raises:
        NoFaceError: detection found no face (never a guess).
        FileNotFoundError, ImageReadError: the photo cannot be read.
    """
    if not 1 <= int(top_k) <= len(EMOTIONS):
        raise ValueError(f"top_k={top_k}: must be between 1 and {len(EMOTIONS)}")
    _, boxes, crops = face_crops(image, detect=detect, select=select, margin=margin, max_side=max_side,
                                 backend=backend, source=source)
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
