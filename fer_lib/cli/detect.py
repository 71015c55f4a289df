"""``python -m fer_lib detect``: the detection-rate table of every available face-detector backend, as JSON lines.

Each line is :func:`fer_lib.detect.detection_rate` for one backend, tilt and retry setting: faces found among 100 real faces
(scikit-image's LFW subset, upscaled) and non-faces flagged among 100.
"""

from __future__ import annotations

import argparse
import json

from fer_lib.detect import BACKENDS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m fer_lib detect``."""
    parser.add_argument("--tilts", type=float, nargs="+", default=[0.0, 25.0], help="in-plane rotations (degrees)")
    parser.add_argument("--backends", nargs="+", default=None, choices=BACKENDS, help="default: all available")


def run(args: argparse.Namespace) -> int:
    from fer_lib.detect import available_backends, detection_rate

    for backend in args.backends or available_backends():
        for tilt in args.tilts:
            for retries in (False, True):
                print(json.dumps(detection_rate(backend, tilt=tilt, retries=retries)), flush=True)
    return 0
