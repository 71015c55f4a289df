"""Face-detection benchmark: how often each detector finds the faces people photograph, and how often it finds
faces where there are none.

``python -m fer_lib bench --faces`` builds scenes from real faces under conditions people meet and runs every
available backend of :func:`fer_lib.detect.detect_faces` on each, as a user's call would run it (retries and all):

============================  =================================================================================
condition                     scene (the face's pixels are real; what surrounds it is drawn)
============================  =================================================================================
plain                         one face, 120-200 px, on a smooth random background of 480x360
tight                         the face's central 80% filling the whole 320x320 image (a close crop)
mouth covered                 plain, a hand-like occluder (a skin-toned palm with four fingers) over the mouth
eyes covered                  plain, the same occluder over the eyes
tight, mouth covered          tight, with the occluder over the mouth (a crying face behind a hand)
turned                        plain, warped in perspective as a head turned 20-30 degrees (an approximation:
                              the face is a flat picture)
dark                          plain at 15-30% brightness with sensor-like noise
small                         one 64 px face in a 1280x960 image
several                       four faces of 110-150 px in one 960x540 image
============================  =================================================================================

plus face-free images (scikit-image's cat, coffee, rocket launch, horse, textures, text, the Hubble deep field, flat
and noisy images, crops of them) for false alarms. The faces are FER2013 PublicTest's (48x48, upscaled: the course's
own faces) when FER2013 is found, else scikit-image's LFW subset (25x25 crops of real photos); the source is named
in the output. A detected box counts as a face when it overlaps an unmatched true face with IoU >= 0.3 (detectors
draw boxes of different shapes); a box less than half on a true face is a false alarm.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from fer_lib.data.dataset import split_by_name
from fer_lib.data.loaders import load_fer2013
from fer_lib.detect import available_backends, detect_faces, mostly_face, resolve_backend
from fer_lib.paths import find_fer2013

CONDITIONS = ("plain", "tight", "mouth covered", "eyes covered", "tight, mouth covered", "turned", "dark", "small",
              "several")
IOU_MATCH = 0.3


@dataclass
class Scene:
    """One benchmark image: ``image uint8 [H, W]``, the true face boxes ``(x, y, w, h)`` and its condition."""

    condition: str
    image: np.ndarray
    faces: list[tuple[int, int, int, int]] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ the faces
def face_pool(n: int, root=None, seed: int = 0, source: str = "auto") -> tuple[list[np.ndarray], str]:
    """``(faces, source)``: ``n`` real faces (``uint8 [S, S]``) drawn at random, and where they came from.

    ``source``: ``"fer2013"`` (PublicTest; an error when it is not found), ``"lfw"`` (scikit-image's LFW subset) or
    ``"auto"`` (FER2013 when found, else LFW)."""
    if source not in ("auto", "fer2013", "lfw"):
        raise ValueError(f"source={source!r}: choose 'auto', 'fer2013' or 'lfw'")
    rng = np.random.default_rng(seed)
    found = find_fer2013(root) if source != "lfw" else None
    if source == "fer2013" or (found is not None and found.exists()):
        split = split_by_name(load_fer2013(found), "PublicTest")
        pick = rng.choice(len(split), size=min(n, len(split)), replace=False)
        return [split.images[int(i)].numpy() for i in pick], f"FER2013 PublicTest ({len(pick)} faces, 48x48)"
    from skimage import data as skdata  # optional (scikit-image): the LFW sample

    lfw = skdata.lfw_subset()[:100]
    pick = rng.choice(len(lfw), size=min(n, len(lfw)), replace=False)
    faces = [np.rint(lfw[int(i)] * 255).astype(np.uint8) for i in pick]
    return faces, f"scikit-image LFW subset ({len(pick)} faces, 25x25; FER2013 not found)"


def _background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth random gray background with some texture: a gradient plus blurred noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a, b, c = rng.uniform(-60, 60), rng.uniform(-60, 60), rng.uniform(90, 170)
    base = c + a * xx / w + b * yy / h
    noise = cv2.GaussianBlur(rng.normal(0, 25, (h, w)).astype(np.float32), (0, 0), sigmaX=max(h, w) / 40)
    return np.clip(base + noise + rng.normal(0, 3, (h, w)), 0, 255).astype(np.float32)


def _paste(canvas: np.ndarray, face: np.ndarray, x: int, y: int, mask: np.ndarray | None = None) -> None:
    """Blend ``face`` into ``canvas`` at ``(x, y)``, its border faded over a tenth of its side (``mask``: where the
    face is, for a warped one)."""
    s = face.shape[0]
    ramp = np.clip(np.minimum(np.arange(s), np.arange(s)[::-1]) / max(1.0, 0.1 * s), 0, 1).astype(np.float32)
    alpha = np.minimum.outer(ramp, ramp)
    if mask is not None:
        alpha = cv2.erode(mask, np.ones((3, 3), np.uint8)) * np.minimum(alpha, 1.0)
    region = canvas[y:y + s, x:x + s]
    region[...] = alpha * face + (1 - alpha) * region


def _hand(img: np.ndarray, box, part: str, rng: np.random.Generator) -> None:
    """Draw a hand-like occluder over the mouth (``part="mouth"``) or the eyes of the face in ``box``: a palm in a
    skin tone a little lighter than the face, with four fingers across it."""
    x, y, w, h = box
    tone = float(np.clip(np.median(img[y:y + h, x:x + w]) + rng.uniform(5, 30), 40, 235))
    cy = y + (0.80 if part == "mouth" else 0.38) * h
    axes = (int(0.42 * w), int(0.17 * h))
    cv2.ellipse(img, (int(x + w / 2 + rng.uniform(-0.05, 0.05) * w), int(cy)), axes, rng.uniform(-10, 10), 0, 360,
                tone, -1, cv2.LINE_AA)
    for k in range(1, 4):  # the gaps between four fingers
        fx = int(x + w / 2 - axes[0] + k * 2 * axes[0] / 4)
        cv2.line(img, (fx, int(cy - 0.8 * axes[1])), (fx, int(cy + 0.8 * axes[1])), tone * 0.7, max(1, w // 60),
                 cv2.LINE_AA)


def _placed(face: np.ndarray, size: int, canvas_hw: tuple[int, int], rng, *, turn: float = 0.0):
    """``(image, box)``: ``face`` resized to ``size`` (and turned ``turn`` degrees) on a fresh background."""
    h, w = canvas_hw
    img = _background(h, w, rng)
    f = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    x, y = int(rng.integers(0, w - size)), int(rng.integers(0, h - size))
    mask = None
    if turn:
        f, mask, (fx, fw) = _turned(f, turn)
        box = (x + fx, y, fw, size)
    else:
        box = (x, y, size, size)
    _paste(img, f, x, y, mask)
    return img, box


def _turned(face: np.ndarray, degrees: float):
    """The face warped as if turned ``degrees`` (sign: which way): the far side narrower and shorter. Returns the
    warped square, the mask of where the face lies in it, and the face's horizontal extent ``(x, width)``."""
    s = face.shape[0]
    c = float(np.cos(np.radians(abs(degrees))))
    near, far = 0.0, s * (1 - c) * 2  # the far edge moves in by twice the foreshortening (a rough perspective)
    shrink = 0.08 * s * abs(degrees) / 25
    src = np.float32([[0, 0], [s, 0], [s, s], [0, s]])
    dst = np.float32([[near, 0], [s - far, shrink], [s - far, s - shrink], [near, s]])
    if degrees < 0:
        dst = np.float32([[s - p[0], p[1]] for p in dst[[1, 0, 3, 2]]])
    m = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(face, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mask = cv2.warpPerspective(np.ones((s, s), np.float32), m, (s, s), flags=cv2.INTER_LINEAR)
    x0, x1 = int(dst[:, 0].min()), int(np.ceil(dst[:, 0].max()))
    return warped, mask, (x0, x1 - x0)


def _tight(face: np.ndarray, side: int = 320) -> np.ndarray:
    s = face.shape[0]
    m = int(round(0.1 * s))
    return cv2.resize(face[m:s - m, m:s - m], (side, side), interpolation=cv2.INTER_CUBIC).astype(np.float32)


def make_scene(face: np.ndarray, condition: str, rng: np.random.Generator, others=()) -> Scene:
    """The scene of one condition (see the module docstring) around ``face`` (``others``: 3 more for ``several``)."""
    if condition in ("tight", "tight, mouth covered"):
        img = _tight(face)
        box = (0, 0, img.shape[1], img.shape[0])
        if condition != "tight":
            _hand(img, box, "mouth", rng)
        return Scene(condition, _u8(img), [box])
    if condition == "small":
        img, box = _placed(face, 64, (960, 1280), rng)
        return Scene(condition, _u8(img), [box])
    if condition == "several":
        img = _background(540, 960, rng)
        boxes = []
        for k, f in enumerate([face, *others][:4]):
            size = int(rng.integers(110, 151))
            x = 240 * k + int(rng.integers(0, 240 - size + 1))
            y = int(rng.integers(0, 540 - size))
            _paste(img, cv2.resize(f, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float32), x, y)
            boxes.append((x, y, size, size))
        return Scene(condition, _u8(img), boxes)
    size = int(rng.integers(120, 201))
    turn = float(rng.uniform(20, 30) * rng.choice([-1, 1])) if condition == "turned" else 0.0
    img, box = _placed(face, size, (360, 480), rng, turn=turn)
    if condition in ("mouth covered", "eyes covered"):
        _hand(img, box, condition.split()[0], rng)
    elif condition == "dark":
        img = img * rng.uniform(0.15, 0.30) + rng.normal(0, 3, img.shape)
    elif condition not in ("plain", "turned"):
        raise ValueError(f"unknown condition {condition!r}; choose from {CONDITIONS}")
    return Scene(condition, _u8(img), [box])


def _u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def face_free_scenes(rng: np.random.Generator, crops: int = 2) -> list[Scene]:
    """Images with no face: scikit-image's photos and textures (as they are and ``crops`` random crops of each),
    flat, noisy and smooth images."""
    from skimage import data as skdata  # optional (scikit-image): its sample photos

    names = ["chelsea", "coffee", "rocket", "horse", "brick", "grass", "gravel", "text", "page",
             "hubble_deep_field", "immunohistochemistry", "colorwheel", "moon"]
    scenes = []
    for name in names:
        img = getattr(skdata, name)()
        img = img.astype(np.uint8) if img.dtype == np.uint8 else np.rint(255 * img.astype(np.float32)).astype(np.uint8)
        if img.ndim == 3:
            img = cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2GRAY)
        scenes.append(Scene(f"no face: {name}", img))
        h, w = img.shape
        for _ in range(crops):
            ch, cw = int(h * rng.uniform(0.4, 0.7)), int(w * rng.uniform(0.4, 0.7))
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            scenes.append(Scene(f"no face: {name}", cv2.resize(img[y:y + ch, x:x + cw], (cw * 2, ch * 2))))
    scenes += [Scene("no face: flat", np.full((360, 480), v, np.uint8)) for v in (30, 128, 230)]
    scenes += [Scene("no face: noise", _u8(rng.normal(128, s, (360, 480)))) for s in (10, 40)]
    scenes += [Scene("no face: background", _u8(_background(360, 480, rng))) for _ in range(5)]
    return scenes


def make_scenes(faces: list[np.ndarray], seed: int = 0, conditions=CONDITIONS, crops: int = 2) -> list[Scene]:
    """Every condition for every face (``several`` groups each face with the next three), then the face-free set
    (``crops`` random crops of each face-free photo beside the photo itself)."""
    rng = np.random.default_rng(seed)
    scenes = []
    for condition in conditions:
        for i, face in enumerate(faces):
            others = [faces[(i + k) % len(faces)] for k in (1, 2, 3)]
            scenes.append(make_scene(face, condition, rng, others))
    return scenes + face_free_scenes(rng, crops)


# ------------------------------------------------------------------------------------------------ scoring
def iou(a, b) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def match(found, truth, threshold: float = IOU_MATCH) -> tuple[int, int]:
    """``(faces found, false boxes)``: each true face takes the unmatched detected box that overlaps it most (IoU at
    least ``threshold``); a box left over counts as false only when less than half of it lies on a true face: a box
    on a face but shaped too differently is a miss, not a face seen where there is none."""
    free = list(found)
    hits = 0
    for t in truth:
        scores = [iou(f, t) for f in free]
        if scores and max(scores) >= threshold:
            free.pop(int(np.argmax(scores)))
            hits += 1
    return hits, sum(all(_inside(f, t) < 0.5 for t in truth) for f in free)


def _inside(box, face) -> float:
    """The share of ``box``'s area that lies on ``face``."""
    ix = max(0.0, min(box[0] + box[2], face[0] + face[2]) - max(box[0], face[0]))
    iy = max(0.0, min(box[1] + box[3], face[1] + face[3]) - max(box[1], face[1]))
    return ix * iy / max(1e-9, box[2] * box[3])


def run_faces_bench(backends=None, *, per_condition: int = 40, root=None, seed: int = 0, source: str = "auto",
                    conditions=CONDITIONS, crops: int = 2) -> tuple[list[dict], str]:
    """``(rows, source)``: per backend and condition, ``faces``, ``found``, ``false_boxes``, ``images`` and
    ``ms_per_image``; face-free images are one row per backend (``condition="no face"``), with ``images_flagged``.
    ``told_mostly_face``: images with nothing found whose "no face found" error says the image looks like a close
    crop of a face (:func:`fer_lib.detect.mostly_face`; counted for the tight conditions and the face-free images)."""
    faces, source = face_pool(per_condition, root=root, seed=seed, source=source)
    scenes = make_scenes(faces, seed=seed, conditions=conditions, crops=crops)
    rows = []
    for backend in backends or available_backends():
        backend = resolve_backend(backend)
        detect_faces(scenes[0].image, backend=backend)  # load the detector before timing
        by = {}
        for scene in scenes:
            key = "no face" if scene.condition.startswith("no face") else scene.condition
            start = time.perf_counter()
            boxes = detect_faces(scene.image, backend=backend)
            seconds = time.perf_counter() - start
            hits, false = match(boxes, scene.faces)
            r = by.setdefault(key, {"backend": backend, "condition": key, "images": 0, "faces": 0, "found": 0,
                                    "false_boxes": 0, "images_flagged": 0, "seconds": 0.0, "told_mostly_face": 0})
            if not boxes and (key.startswith("tight") or key == "no face"):  # what the "no face found" error says
                r["told_mostly_face"] += int(mostly_face(scene.image, backend=backend))
            r["images"] += 1
            r["faces"] += len(scene.faces)
            r["found"] += hits
            r["false_boxes"] += false
            r["images_flagged"] += int(false > 0)
            r["seconds"] += seconds
        for r in by.values():
            r["ms_per_image"] = round(1000 * r.pop("seconds") / r["images"], 1)
            rows.append(r)
    return rows, source


def format_faces_table(rows: list[dict]) -> str:
    """A markdown table: one row per condition, per backend ``found/faces`` (and false boxes), then the timing."""
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    conditions = list(dict.fromkeys(r["condition"] for r in rows))
    cell = {(r["backend"], r["condition"]): r for r in rows}
    head = "| condition | " + " | ".join(backends) + " |"
    lines = [head, "|" + " --- |" * (len(backends) + 1)]
    for c in conditions:
        cells = []
        for b in backends:
            r = cell.get((b, c))
            if r is None:
                cells.append("")
            elif c == "no face":
                cells.append(f"{r['images_flagged']}/{r['images']} images flagged, {r['false_boxes']} boxes; "
                             f"{r['told_mostly_face']} told 'mostly a face'")
            else:
                rate = r["found"] / r["faces"] if r["faces"] else 0.0
                told = f"; {r['told_mostly_face']}/{r['faces'] - r['found']} missed told 'mostly a face'" \
                    if c.startswith("tight") and r["found"] < r["faces"] else ""
                cells.append(f"{r['found']}/{r['faces']} ({rate:.0%}), {r['false_boxes']} false{told}")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    ms = [sum(r["ms_per_image"] * r["images"] for r in rows if r["backend"] == b)
          / max(1, sum(r["images"] for r in rows if r["backend"] == b)) for b in backends]
    lines.append("| ms per image (mean) | " + " | ".join(f"{m:.0f}" for m in ms) + " |")
    return "\n".join(lines)
