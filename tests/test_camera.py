"""``python -m fer_lib camera`` and :mod:`fer_lib.camera` on a video file made here: faces, labels, the fps line, the
annotated video written, and clear errors for a missing source, a bad output and an empty video."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from fer_lib import EMOTIONS
from fer_lib.camera import CameraError, annotate_frame, run_camera
from fer_lib.cli import main
from fer_lib.faces import available_backends

skdata = pytest.importorskip("skimage.data")
pytestmark = pytest.mark.skipif(not available_backends(), reason="no face detector installed")


def _video(path, frames) -> str:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return str(path)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """6 frames: the astronaut (one face) 4 times, moving, then 2 flat frames (no face)."""
    photo = cv2.resize(skdata.astronaut(), (320, 320), interpolation=cv2.INTER_AREA)
    frames = [np.roll(photo, 6 * k, axis=1) for k in range(4)] + [np.full_like(photo, 120)] * 2
    return _video(tmp_path_factory.mktemp("camera") / "clip.avi", frames)


def test_the_camera_command_annotates_a_video_file(clip, tmp_path, capsys):
    out = tmp_path / "clip_fer.avi"
    assert main(["camera", "--source", clip, "--out", str(out), "--no-show"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["frames"] == 6 and summary["frames_with_faces"] == 4 and summary["faces"] == 4, summary
    assert set(summary["labels"]) <= set(EMOTIONS) and sum(summary["labels"].values()) == 4
    assert summary["fps"] > 0
    written = cv2.VideoCapture(str(out))
    n = 0
    while True:
        ok, frame = written.read()
        if not ok:
            break
        n += 1
        shape = frame.shape
    written.release()
    assert n == 6 and shape[:2] == (320, 320)


def test_a_frame_without_a_face_says_so_and_the_fps(clip):
    from fer_lib.inference import pretrained

    flat = np.full((240, 320, 3), 120, np.uint8)
    drawn, preds = annotate_frame(pretrained(), flat, fps=12.5)
    assert preds == [] and drawn.shape == flat.shape
    assert (drawn != flat).any()  # "no face" and "12.5 fps" are written on the copy
    assert (flat == 120).all()  # the frame given is not drawn on


def test_max_frames_stops_the_loop(clip):
    from fer_lib.inference import pretrained

    assert run_camera(pretrained(), clip, max_frames=2)["frames"] == 2


@pytest.mark.parametrize("case", ["missing", "bad-out", "bad-extension", "empty", "max-frames-zero"])
def test_bad_sources_and_outputs_get_one_clear_error(case, clip, tmp_path, capsys):
    args = {"missing": ["--source", str(tmp_path / "nope.mp4")],
            "bad-out": ["--source", clip, "--out", str(tmp_path / "no" / "such" / "dir.avi")],
            "bad-extension": ["--source", clip, "--out", str(tmp_path / "video.gif")],
            "empty": ["--source", str(tmp_path / "empty.avi")],
            "max-frames-zero": ["--source", clip, "--max-frames", "0"]}[case]
    if case == "empty":
        (tmp_path / "empty.avi").write_bytes(b"")
    code = main(["camera", *args, "--no-show"])
    err = capsys.readouterr().err
    line = [x for x in err.splitlines() if x.startswith("error:")]
    assert code in (1, 2) and len(line) == 1, err
    expected = {"missing": "not found", "bad-out": "does not exist", "bad-extension": ".avi",
                "empty": "could not open", "max-frames-zero": "1 or more"}[case]
    assert expected in line[0], line[0]


def test_show_without_a_desktop_names_the_way_out(clip, monkeypatch):
    import matplotlib.pyplot as plt

    from fer_lib.inference import pretrained

    monkeypatch.setattr(plt, "get_backend", lambda: "agg")  # as on a server (and under make test)
    with pytest.raises(CameraError, match="--out"):
        run_camera(pretrained(), clip, show=True, max_frames=1)


def test_a_camera_index_that_does_not_open_is_named():
    with pytest.raises(CameraError, match="camera 97"):
        run_camera(None, 97)
