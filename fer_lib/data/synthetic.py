"""Procedurally drawn 48x48 cartoon faces: the stand-in dataset when FER2013 is absent.

Every image is a grayscale cartoon face whose **expression** lives only in the brows, eyes, mouth (and, for
disgust, a nose wrinkle), drawn with the cues of Ekman's facial action units (Ekman & Friesen, FACS, 1978;
see also https://en.wikipedia.org/wiki/Facial_Action_Coding_System):

========  ====================================  ================  ==============================
label     brows                                 eyes              mouth
========  ====================================  ================  ==============================
angry     slanted down to the centre            narrowed          short, tight, pressed
disgust   one brow lowered (+ nose wrinkle)     slightly narrowed asymmetric, one side raised
fear      inner ends raised, straight           wide              stretched and open
happy     relaxed, slightly arched              slightly squinted upturned smile
sad       inner ends raised, outer ends down    normal            downturned
surprise  high and arched                       wide              small, round, open
neutral   flat                                  normal            flat line
========  ====================================  ================  ==============================

Identity varies independently of the label: face width/height, position, scale, rotation (+-10 deg), skin,
hair and background levels, a lighting gradient, contrast, noise, and the expression's intensity. So no single
pixel separates the classes, but a small CNN learns them (>90% in under a minute on 2 CPU cores; see
``tests/test_data_synthetic.py``). Everything is vectorised numpy over the batch (signed-distance shapes with
1-pixel anti-aliasing), deterministic for a given ``(n, seed)``.
"""

from __future__ import annotations

import numpy as np
import torch

from .dataset import FERData, FERSplit
from .labels import NUM_CLASSES

__all__ = ["make_synthetic_faces", "load_synthetic", "EXPRESSION_PARAMS", "SYNTHETIC_SOURCE"]

SIZE = 48
_CHUNK = 1024  # faces drawn at once (bounds memory to ~10 MB per temporary)

# Per expression, in face units (the face is ~2 units tall; v points down):
#   brow_in, brow_out: vertical offset of inner / outer brow end from the neutral brow line (negative = raised)
#   arch: brow arch height; eye_h: eye half-height; mouth_w: half-width; mouth_k: centre drop vs corners
#   (>0 smile, <0 frown); mouth_open: half-gap; mouth_tilt: slope (one side raised); mouth_t: lip thickness
#   mouth_dy: mouth shift; wrinkle: nose-wrinkle darkness; one_brow: only one (random) brow moves.
_FIELDS = ("brow_in", "brow_out", "arch", "eye_h", "mouth_w", "mouth_k", "mouth_open", "mouth_tilt",
           "mouth_t", "mouth_dy", "wrinkle", "one_brow")
EXPRESSION_PARAMS = {
    #            brow_in brow_out arch  eye_h mouth_w  k     open   tilt  thick  dy   wrinkle one_brow
    "angry":    (0.11,  -0.07,   0.00, 0.035, 0.19, -0.03, 0.00,  0.00, 0.075, 0.00, 0.0, 0.0),
    "disgust":  (0.10,   0.03,   0.00, 0.045, 0.25, -0.04, 0.035, 0.18, 0.055, 0.00, 1.0, 1.0),
    "fear":     (-0.11, -0.02,   0.00, 0.110, 0.36, -0.04, 0.070, 0.00, 0.050, 0.02, 0.0, 0.0),
    "happy":    (-0.02, -0.02,   0.03, 0.045, 0.34,  0.13, 0.020, 0.00, 0.055, 0.00, 0.0, 0.0),
    "sad":      (-0.09,  0.05,  -0.01, 0.058, 0.28, -0.10, 0.00,  0.00, 0.050, 0.00, 0.0, 0.0),
    "surprise": (-0.12, -0.10,   0.07, 0.115, 0.15,  0.00, 0.150, 0.00, 0.050, 0.05, 0.0, 0.0),
    "neutral":  (0.00,   0.00,   0.02, 0.065, 0.28,  0.00, 0.00,  0.00, 0.050, 0.00, 0.0, 0.0),
}
"""Expression geometry per class (see the table in the module docstring); rows in ``EMOTIONS`` order."""
_TABLE = np.array(list(EXPRESSION_PARAMS.values()), dtype=np.float32)  # [7, F]
_NEUTRAL = _TABLE[6]
_SCALED = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 0], dtype=np.float32)  # fields scaled by intensity


def _alpha(sd: np.ndarray, px: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage from a signed distance ``sd`` (face units, <0 inside); ``px`` = units per pixel."""
    return np.clip(0.5 - sd / px, 0.0, 1.0)


def _draw(labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw one chunk. Returns ``(images float32 [n,48,48] in [0,1], masks bool [n,48,48])``."""
    n = len(labels)

    def U(lo, hi):  # per-sample uniform, shaped [n, 1, 1] for broadcasting over pixels
        return rng.uniform(lo, hi, n).astype(np.float32)[:, None, None]

    # expression parameters: neutral + intensity * (expression - neutral) + small per-sample jitter
    intensity = rng.uniform(0.7, 1.25, n).astype(np.float32)[:, None]
    p = _NEUTRAL + (_TABLE[labels] - _NEUTRAL) * (1 + (intensity - 1) * _SCALED)
    p = p + rng.normal(0, 1, p.shape).astype(np.float32) * np.array(
        [0.015, 0.015, 0.01, 0.006, 0.015, 0.012, 0.006, 0.015, 0.004, 0.01, 0, 0], dtype=np.float32)
    P = {f: p[:, i, None, None] for i, f in enumerate(_FIELDS)}
    side = np.where(rng.random(n) < 0.5, -1.0, 1.0).astype(np.float32)[:, None, None]  # which side moves

    # identity: pose and face geometry
    scale = U(14.5, 18.5)  # pixels per face unit
    px = 1.0 / scale
    theta = np.deg2rad(U(-10, 10))
    cx, cy = 23.5 + U(-2.5, 2.5), 24.5 + U(-2.5, 2.5)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    dx, dy = xx[None] - cx, yy[None] - cy
    c, s = np.cos(theta), np.sin(theta)
    u = (dx * c + dy * s) * px
    v = (-dx * s + dy * c) * px

    rw, rh = U(0.78, 0.95), U(1.0, 1.12)
    face = _alpha((np.sqrt((u / rw) ** 2 + (v / rh) ** 2) - 1) * np.minimum(rw, rh), px)
    hairline = U(-0.85, -0.62)
    hair = _alpha(np.maximum((np.sqrt((u / (rw * 1.08)) ** 2 + (v / (rh * 1.06)) ** 2) - 1) * rw,
                             v - hairline), px)

    # eyes: filled dark ellipses at (+-ex, ey)
    ex, ey, ew = U(0.33, 0.40), U(-0.16, -0.08), U(0.12, 0.15)
    eh = np.maximum(P["eye_h"], 0.02)
    du = np.abs(u) - ex
    dv = v - ey
    eyes = _alpha((np.sqrt((du / ew) ** 2 + (dv / eh) ** 2) - 1) * np.minimum(ew, eh), px)

    # brows: thick quadratic strokes from the inner end (|u|=0.12) to the outer end (|u|=0.58)
    by = ey - U(0.24, 0.32)
    t = (np.abs(u) - 0.12) / 0.46
    moves = np.where(P["one_brow"] > 0.5, (np.sign(u) == side).astype(np.float32), 1.0)
    b_in, b_out = P["brow_in"] * moves, P["brow_out"] * moves
    curve = by + b_in + (b_out - b_in) * t - P["arch"] * 4 * t * (1 - t)
    slope = (b_out - b_in) / 0.46
    brow_sd = np.maximum(np.abs(v - curve) / np.sqrt(1 + slope ** 2) - 0.045,
                         np.maximum(-t, t - 1) * 0.46)
    brows = _alpha(brow_sd, px)

    # mouth: region around the centre line c(u) = my + k (1 - (u/w)^2) + tilt*side*u, half-gap open*sqrt(.)
    my = U(0.44, 0.54) + P["mouth_dy"]
    w = P["mouth_w"]
    r = np.clip(1 - (u / w) ** 2, 0, 1)
    centre = my + P["mouth_k"] * r - P["mouth_tilt"] * side * u * r
    mouth_sd = np.maximum(np.abs(v - centre) - P["mouth_open"] * np.sqrt(r) - P["mouth_t"] / 2, np.abs(u) - w)
    mouth = _alpha(mouth_sd, px)

    # nose (same for all) and the disgust wrinkle (two short lines across the bridge)
    nose = _alpha(np.maximum(np.abs(u) - 0.03, np.abs(v - 0.17) - 0.11), px) * 0.45
    wr = np.minimum(np.abs(v - 0.0), np.abs(v - 0.07))
    wrinkle = _alpha(np.maximum(wr - 0.02, np.abs(u) - 0.10), px) * P["wrinkle"]

    # compose: background + lighting gradient, face with radial shading, hair, then dark features
    bg, skin, hair_lvl = U(0.1, 0.55), U(0.55, 0.88), U(0.05, 0.45)
    g_dir = rng.uniform(0, 2 * np.pi, n).astype(np.float32)[:, None, None]
    grad = U(0.0, 0.22) * ((xx[None] - 23.5) * np.cos(g_dir) + (yy[None] - 23.5) * np.sin(g_dir)) / 24
    img = bg + np.zeros_like(u)
    img = img * (1 - face) + skin * (1 - 0.18 * (u ** 2 + v ** 2)) * face
    img = img * (1 - hair) + hair_lvl * hair
    feat = np.maximum.reduce([eyes, brows, mouth, wrinkle])
    img = img - U(0.22, 0.38) * np.maximum(feat, nose) + grad
    img = 0.5 + (img - 0.5) * U(0.7, 1.15)
    img = img + rng.normal(0, 1, img.shape).astype(np.float32) * U(0.01, 0.04)
    return np.clip(img, 0, 1), feat > 0.3


def make_synthetic_faces(n: int, seed: int = 0, *, return_masks: bool = False):
    """Draw ``n`` synthetic 48x48 faces, class-balanced (labels ``i % 7`` shuffled), deterministic by ``seed``.

    Args:
        n: number of faces (>= 0).
        seed: seed of the numpy generator; the same ``(n, seed)`` always gives the same faces.
        return_masks: also return where the expression cues are drawn.

    Returns:
        ``(images, labels)``: ``uint8 [n, 48, 48]`` and ``int64 [n]`` (``fer_lib.EMOTIONS`` order), plus
        ``masks``: ``bool [n, 48, 48]``, True on brow, eye, mouth and nose-wrinkle pixels (coverage > 0.3),
        the only places where expressions differ, when ``return_masks=True``. Use them to judge attention maps.
    """
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    n = int(n)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % NUM_CLASSES)
    images = np.empty((n, SIZE, SIZE), dtype=np.uint8)
    masks = np.empty((n, SIZE, SIZE), dtype=bool)
    for start in range(0, n, _CHUNK):
        sl = slice(start, start + _CHUNK)
        img, m = _draw(labels[sl], rng)
        images[sl] = np.rint(img * 255).astype(np.uint8)
        masks[sl] = m
    out = (torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)))
    return (*out, torch.from_numpy(masks)) if return_masks else out


SYNTHETIC_SOURCE = "synthetic (procedurally drawn cartoon faces, NOT FER2013)"


def load_synthetic(n_train: int = 7000, n_val: int = 1400, seed: int = 0):
    """The synthetic stand-in as a :class:`~fer_lib.data.FERData` (``form="synthetic"``, ``synthetic=True``).

    Args:
        n_train: faces in ``"Training"`` (drawn with ``seed``).
        n_val: faces in ``"PublicTest"`` (drawn with ``seed + 1``, so no face is in both splits).
        seed: base seed.
    """
    splits = {}
    for name, n, s in (("Training", n_train, seed), ("PublicTest", n_val, seed + 1)):
        images, labels = make_synthetic_faces(n, s)
        splits[name] = FERSplit(name, images, labels, [f"synthetic:{s}:{i}" for i in range(n)])
    return FERData(splits, form="synthetic", synthetic=True, source=SYNTHETIC_SOURCE,
                   notes=[f"synthetic cartoon faces (seed {seed}); results on them say nothing about FER2013"])
