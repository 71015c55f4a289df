"""Emotions live: faces, labels and frames per second on every frame of a webcam or a video file.

>>> from fer_lib.camera import run_camera
>>> run_camera(fer_lib.pretrained(), source=0, show=True)                  # the local webcam, in a window
>>> run_camera(fer_lib.pretrained(), source="clip.mp4", out="clip_fer.mp4") # a video file -> an annotated copy

``python -m fer_lib camera`` is the command line of :func:`run_camera`. Each frame goes through the same path as a
photo (:func:`fer_lib.faces.predict_faces`: the default face detector, then the model on each 48x48 face) and is
drawn by :func:`annotate_frame`: a box and ``"#i emotion probability"`` per face, "no face" when none is found (never
a guess), and the frames per second of the whole loop in the corner.

Frames come from OpenCV's ``VideoCapture`` (a camera index or a file); the annotated video is written by OpenCV's
``VideoWriter`` (``.mp4``: ``mp4v``, ``.avi``: ``MJPG``). OpenCV's headless build (the one fer_lib installs) has no
window of its own, so ``show=True`` draws the frames with matplotlib, which needs a desktop (a GUI backend).
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import torch

from fer_lib.faces import NoFaceError, annotate, predict_faces

CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
"""The FourCC OpenCV writes for each file extension :func:`run_camera` accepts for ``out``."""


class CameraError(RuntimeError):
    """A camera or video that cannot be opened or read, or an output that cannot be written."""


def open_source(source) -> cv2.VideoCapture:
    """``cv2.VideoCapture`` for a camera index (``0``, ``"0"``) or a video file; a clear :class:`CameraError` when
    it cannot be opened."""
    index = int(source) if isinstance(source, int) or str(source).isdigit() else None
    if index is None and not Path(source).is_file():
        raise CameraError(f"video file {source!r} not found; pass a video file (.mp4, .avi, ...) or a camera "
                          "index such as 0 (--source 0)")
    cap = cv2.VideoCapture(index if index is not None else str(source))
    if not cap.isOpened():
        what = f"camera {index}" if index is not None else f"video file {source!r}"
        fix = ("is a webcam connected, and free (not used by another program)? Try another index (--source 1)"
               if index is not None else "OpenCV cannot decode it; convert it to .mp4 (H.264) or .avi (MJPG)")
        raise CameraError(f"could not open {what}: {fix}")
    return cap


def annotate_frame(model: torch.nn.Module, frame_rgb: np.ndarray, *, fps: float | None = None,
                   min_face: float | None = None):
    """``(annotated uint8 RGB frame, predictions)``: every face boxed and labelled, or "no face" written on the
    frame; ``fps`` (when given) in the top-left corner."""
    try:
        preds = predict_faces(model, frame_rgb, min_face=min_face, source="the frame")
        out = annotate(frame_rgb, preds)
    except NoFaceError:
        preds, out = [], np.ascontiguousarray(frame_rgb).copy()
        _label(out, "no face", row=1)
    if fps is not None:
        _label(out, f"{fps:.1f} fps", row=0)
    return out, preds


def _label(img: np.ndarray, text: str, row: int) -> None:
    scale = max(0.5, max(img.shape[:2]) / 900)
    thick = max(1, round(scale * 2))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    y = (row + 1) * (th + base + 8)
    cv2.rectangle(img, (4, y - th - base - 2), (tw + 10, y + 2), (0, 0, 0), -1)
    cv2.putText(img, text, (7, y - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)


def _writer(out, size: tuple[int, int], fps: float) -> cv2.VideoWriter:
    out = Path(out)
    codec = CODECS.get(out.suffix.lower())
    if codec is None:
        raise CameraError(f"--out {out.name}: write the video as one of {sorted(CODECS)} (the file extension picks "
                          "the codec)")
    if not out.parent.is_dir():
        raise CameraError(f"--out {out}: folder {out.parent} does not exist; create it or choose another")
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*codec), fps, size)
    if not writer.isOpened():
        raise CameraError(f"OpenCV could not write {out}; try the other extension (.avi or .mp4)")
    return writer


def run_camera(model: torch.nn.Module, source=0, *, out=None, show: bool = False, max_frames: int | None = None,
               min_face: float | None = None) -> dict:
    """Annotate frames from ``source`` until it ends, ``max_frames`` are done, or (``show``) the window is closed.

    Args:
        model: a fer_lib classifier (:func:`fer_lib.pretrained` for the bundled one).
        source: a camera index (``0`` is the default webcam) or a video file.
        out: write the annotated frames to this video file (``.mp4`` or ``.avi``), at the source's frame rate.
        show: draw the frames in a matplotlib window as they are annotated.
        max_frames: stop after this many frames (default: the whole video; a camera runs until stopped).
        min_face: see :func:`fer_lib.faces.predict_faces` (small faces, far from the camera).

    Returns:
        ``{"frames", "frames_with_faces", "faces", "fps", "labels", "out"}``; ``labels`` counts each emotion over
        all faces; ``fps`` is frames per second of the whole loop (reading, detection, model, drawing, writing).

    Raises:
        CameraError: the source cannot be opened or gives no frame; ``out`` cannot be written.
    """
    cap = open_source(source)
    writer = window = None
    frames = with_faces = faces = 0
    labels: dict[str, int] = {}
    start = time.perf_counter()
    fps = None
    try:
        while max_frames is None or frames < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            drawn, preds = annotate_frame(model, rgb, fps=fps, min_face=min_face)
            frames += 1
            with_faces += bool(preds)
            faces += len(preds)
            for p in preds:
                labels[p.label] = labels.get(p.label, 0) + 1
            fps = frames / max(1e-9, time.perf_counter() - start)
            if out is not None:
                if writer is None:
                    rate = cap.get(cv2.CAP_PROP_FPS)
                    writer = _writer(out, (drawn.shape[1], drawn.shape[0]), rate if 0 < rate < 240 else 15.0)
                writer.write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
            if show:
                window = _show(window, drawn)
                if window is None:  # the window was closed
                    break
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    if frames == 0:
        raise CameraError(f"no frame could be read from {source!r}: an empty video, or a camera that gives no picture")
    return {"frames": frames, "frames_with_faces": with_faces, "faces": faces, "fps": round(fps, 2),
            "labels": labels, "out": None if out is None else str(out)}


def _show(window, frame: np.ndarray):
    """Draw ``frame`` in a matplotlib window (made on the first call); ``None`` once the window is closed."""
    import matplotlib.pyplot as plt  # optional: pyplot only when a window is asked for

    if window is None:
        if plt.get_backend().lower() in ("agg", "pdf", "svg", "ps", "cairo", "template"):
            raise CameraError(f"show=True needs a desktop: matplotlib's backend here is {plt.get_backend()!r}, which "
                              "draws no window; write the video instead (--out annotated.mp4)")
        fig, ax = plt.subplots()
        ax.axis("off")
        window = (fig, ax.imshow(frame))
        plt.show(block=False)
    fig, image = window
    if not plt.fignum_exists(fig.number):
        return None
    image.set_data(frame)
    fig.canvas.draw_idle()
    plt.pause(0.001)
    return window
