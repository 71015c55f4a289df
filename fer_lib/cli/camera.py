"""``python -m fer_lib camera``: emotions live on a webcam or a video file (:func:`fer_lib.camera.run_camera`).

Examples::

    python -m fer_lib camera                                   # webcam 0, in a window (needs a desktop)
    python -m fer_lib camera --source clip.mp4 --out clip_fer.mp4 --no-show
    python -m fer_lib camera --source 1 --max-frames 300 --out webcam.avi

Each frame: the faces found (the default detector), a box and ``#i emotion probability`` per face, "no face" when
none is found, and the loop's frames per second. At the end one JSON line sums up: frames, frames with faces, faces,
frames per second, the count of each emotion, and the video written. Exit codes: 0 done; 1 a source or output that
cannot be opened or written, or a bad checkpoint (one ``error:`` line).
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``camera`` (see the module docstring)."""
    parser.add_argument("--source", default="0", help="a camera index (default 0, the first webcam) or a video file")
    parser.add_argument("--out", default=None, metavar="VIDEO",
                        help="write the annotated frames to this .mp4 or .avi file")
    parser.add_argument("--no-show", dest="show", action="store_false",
                        help="draw no window (a server, or only --out wanted)")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    parser.add_argument("--checkpoint", default=None, metavar="PATH_OR_NAME",
                        help="a checkpoint, a .safetensors file or a bundled model name (default: the most accurate "
                             "bundled model)")
    parser.add_argument("--min-face", type=int, default=None, metavar="PIXELS",
                        help="smallest face side to look for, in the frame's pixels (at least 12)")


def run(args: argparse.Namespace) -> int:
    from fer_lib.camera import CameraError, run_camera
    from fer_lib.cli.models import load_for_command

    if args.max_frames is not None and args.max_frames < 1:
        print(f"error: --max-frames {args.max_frames}: give 1 or more (or leave it out for the whole video)",
              file=sys.stderr)
        return 2
    model = load_for_command(args.checkpoint)
    if model is None:
        return 1
    try:
        summary = run_camera(model, args.source, out=args.out, show=args.show, max_frames=args.max_frames,
                             min_face=args.min_face)
    except (CameraError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0
