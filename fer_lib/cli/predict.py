"""``python -m fer_lib predict PHOTO...``: the emotion of every face in photos, as JSON, plus annotated PNGs.

Examples::

    python -m fer_lib predict me.jpg                       # the most accurate bundled model, every face
    python -m fer_lib predict me.jpg --checkpoint ensemble # the bundled models averaged
    python -m fer_lib predict a.jpg b.png --largest --cam --out preds/ --checkpoint runs/cpu/best.pt
    python -m fer_lib predict crop48.png --no-detect       # an already cropped face
    python -m fer_lib predict group.jpg --min-face 20      # small faces in a group photo (slower)

Standard output is one JSON array with one record per face: ``file``, ``face`` (index, largest first), ``box``
``[x, y, w, h]``, ``top_k`` (``[{"emotion", "prob"}]``), ``probs`` (all 7, ``fer_lib.EMOTIONS`` order),
``annotated`` (the PNG written) and, with ``--cam``, ``cam`` (face | Grad-CAM overlay PNG).
Exit codes: 0 all photos had faces; 2 some photo had no face (one ``error:`` line each on stderr; the other
photos are still processed); 1 unreadable photo (or one too large for the ``--min-face`` asked: the line names the
smallest that works) or missing checkpoint. Which model answered is said on stderr.
A photo above PIL's decompression-bomb limit is read with one ``warning:`` line naming it; one above twice that limit
is an unreadable photo.

Refused before any work, with one ``error:`` line and nothing printed or written: a PHOTO that is a URL or ``-``
(download the photo, or save it, and pass the file), an ``--out`` that is a file or cannot be written, and a
``--min-face`` below 12 pixels or given with ``--no-detect``. Should writing a PNG fail later all the same (a full
disk), one ``error:`` line says so, exit code 1, and the JSON records of every face are still printed
(``annotated`` / ``cam`` then ``null``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``predict`` (see the module docstring)."""
    parser.add_argument("photos", nargs="+", metavar="PHOTO", help="image files (JPEG, PNG, BMP, TIFF, WebP)")
    parser.add_argument("--checkpoint", default=None, metavar="PATH_OR_NAME",
                        help="a checkpoint (best.pt of `fer_lib train`), a .safetensors file, or a bundled model name: "
                             "fer2013_resnet18, fer2013_sota_resemote_small, ensemble (`python -m fer_lib models` lists "
                             "them with their accuracy; default: the most accurate bundled model)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--all-faces", dest="select", action="store_const", const="all", default="all",
                       help="report every detected face (default)")
    which.add_argument("--largest", dest="select", action="store_const", const="largest",
                       help="report only the largest face")
    parser.add_argument("--no-detect", action="store_true", help="the photo is already a cropped face")
    parser.add_argument("--cam", action="store_true", help="also write a Grad-CAM overlay per face")
    parser.add_argument("--cam-method", default="gradcam", choices=("gradcam", "gradcam++", "eigencam"))
    parser.add_argument("--out", default="runs/predict", help="folder for the annotated PNGs")
    parser.add_argument("--top-k", type=int, default=3, help="emotions listed per face (1-7)")
    parser.add_argument("--margin", type=float, default=0.15, help="crop margin around a detected face box")
    parser.add_argument("--min-face", type=int, default=None, metavar="PIXELS",
                        help="smallest face side to look for, in the photo's pixels (at least 12; default: 6%% of the "
                             "photo's shorter side). Lower it for the small faces of a group photo, e.g. --min-face "
                             "20; a large photo then takes longer")


def _unique_stem(path: Path, used: set[str]) -> str:
    stem, k = path.stem, 1
    while stem in used:
        stem, k = f"{path.stem}_{k}", k + 1
    used.add(stem)
    return stem


def _cam_panel(model, preds, method: str) -> list[np.ndarray]:
    from fer_lib.explain import compute_cam, overlay_cam, upsample_face

    faces = np.stack([p.face for p in preds])
    maps = compute_cam(model, faces, method=method)
    return [np.concatenate([np.repeat(upsample_face(f)[:, :, None], 3, axis=2), overlay_cam(f, m)], axis=1)
            for f, m in zip(faces, maps)]


#: ``scheme://`` at the start of a PHOTO argument: a URL, which predict does not download
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def photo_problem(photo: str) -> str | None:
    """Why a PHOTO argument can never be read as an image file (a URL, ``-``), or ``None``."""
    if Path(photo).exists():
        return None
    if _URL.match(photo):
        return (f"PHOTO {photo} is a URL: predict reads image files only and downloads nothing; download the photo "
                "first (e.g. curl -o photo.jpg URL) and pass the file's path")
    if photo == "-":
        return ("PHOTO '-': predict does not read standard input; save the image to a file and pass its path "
                "(e.g. predict photo.jpg)")
    return None


def run(args: argparse.Namespace) -> int:
    """Predict, print the JSON records, write the PNGs; returns the exit code."""
    from fer_lib.faces import MIN_FACE, NoFaceError, annotate, load_image, predict_faces, save_png
    from fer_lib.paths import file_in_the_way, unwritable

    if not 1 <= args.top_k <= 7:
        print(f"error: --top-k {args.top_k}: must be between 1 and 7", file=sys.stderr)
        return 1
    if not 0 <= args.margin <= 2:
        print(f"error: --margin {args.margin}: must be between 0 and 2 (a fraction of the face box)", file=sys.stderr)
        return 1
    if args.min_face is not None:
        if args.no_detect:
            print(f"error: --min-face {args.min_face} with --no-detect: --min-face sets the face detector, which "
                  "--no-detect switches off; pass one of them", file=sys.stderr)
            return 1
        if args.min_face < MIN_FACE:
            print(f"error: --min-face {args.min_face}: must be at least {MIN_FACE} pixels (the smallest face side to "
                  "look for); leave it out for the default, 6% of the photo's shorter side", file=sys.stderr)
            return 1
    for photo in args.photos:
        problem = photo_problem(photo)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 1
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        print(f"error: --out {out_dir} is a file, not a folder; pass a folder for the annotated PNGs", file=sys.stderr)
        return 1
    blocked = file_in_the_way(out_dir)
    if blocked is not None:
        print(f"error: --out {out_dir}: {blocked} is a file, not a folder; pass a folder for the annotated PNGs",
              file=sys.stderr)
        return 1
    locked = unwritable(out_dir)
    if locked is not None:
        print(f"error: --out {out_dir} cannot be written: {locked} is read-only for this user (permissions or a "
              "read-only file system); pass --out with a folder you can write to", file=sys.stderr)
        return 1
    from fer_lib.cli.models import load_for_command

    model = load_for_command(args.checkpoint)
    if model is None:
        return 1
    records, used, code = [], set(), 0
    write_error: list[str] = []  # the first failed PNG write: said once; the JSON records are printed regardless

    def save(image: np.ndarray, path: Path) -> str | None:
        if write_error:
            return None
        try:
            return str(save_png(image, path))
        except OSError as e:
            write_error.append(f"cannot write {path} ({type(e).__name__}: {e.strerror or e}); the predictions are "
                               "printed without their PNGs; pass --out with a folder you can write to")
            print(f"error: {write_error[0]}", file=sys.stderr)
            return None

    for photo in args.photos:
        path = Path(photo)
        try:
            rgb = load_image(path)
            preds = predict_faces(model, rgb, detect=not args.no_detect, select=args.select, top_k=args.top_k,
                                  margin=args.margin, min_face=args.min_face, source=str(path))
        except NoFaceError as e:
            print(f"error: {e}", file=sys.stderr)
            code = code or 2  # an unreadable photo (1) outranks a photo without a face (2)
            continue
        except (FileNotFoundError, ValueError) as e:  # unreadable (ImageReadError), or --min-face too small for it
            print(f"error: {e}", file=sys.stderr)
            code = 1
            continue
        stem = _unique_stem(path, used)
        annotated = save(annotate(rgb, preds), out_dir / f"{stem}_annotated.png")
        cams = _cam_panel(model, preds, args.cam_method) if args.cam else [None] * len(preds)
        for pred, panel in zip(preds, cams):
            rec = {"file": str(path), **pred.to_dict(), "annotated": annotated}
            if panel is not None:
                rec["cam"] = save(panel, out_dir / f"{stem}_face{pred.index}_{args.cam_method}.png")
            records.append(rec)
    print(json.dumps(records, indent=2))
    return 1 if write_error else code
