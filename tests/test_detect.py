"""Face detection on the faces people photograph: tight crops and tilted heads, with every available backend."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_lib.detect import (
    BACKENDS,
    FaceBox,
    available_backends,
    detect_faces,
    eye_roll,
    resolve_backend,
)
from fer_lib.faces import crop_face, predict_faces, to_gray

skdata = pytest.importorskip("skimage.data")
pytestmark = pytest.mark.skipif(not available_backends(), reason="no face detector installed")

FACE = (177, 67, 93, 93)  # the astronaut's face (x, y, w, h), as OpenCV's Haar cascade finds it
CENTRE = (FACE[0] + FACE[2] / 2, FACE[1] + FACE[3] / 2)
FAST = [b for b in available_backends() if b != "skimage-lbp"]  # the LBP cascade is slow and only a last resort


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skdata.astronaut()


def _tight_crop(img: np.ndarray) -> np.ndarray:
    x, y, w, h = FACE
    return np.ascontiguousarray(img[y : y + h, x : x + w])


def _tilt(img: np.ndarray, angle: float) -> np.ndarray:
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D(CENTRE, angle, 1.0)
    return cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE)


def test_facebox_is_a_plain_tuple_with_an_angle():
    box = FaceBox((1.0, 2, 3, 4), angle=20)
    assert box == (1, 2, 3, 4) and box.angle == 20.0 and tuple(box) == (1, 2, 3, 4)
    again = pickle.loads(pickle.dumps(box))
    assert again == box and again.angle == 20.0


def test_unknown_and_unavailable_backends_are_named():
    with pytest.raises(ValueError, match="unknown face detector backend 'yolo'"):
        resolve_backend("yolo")
    missing = [b for b in BACKENDS if b not in available_backends()]
    if missing:
        with pytest.raises(RuntimeError, match="not available here"):
            resolve_backend(missing[0])


def test_the_eyes_tell_how_far_a_head_is_tilted(astronaut):
    if not (Path(getattr(getattr(cv2, "data", None), "haarcascades", "")) / "haarcascade_eye.xml").is_file():
        pytest.skip("OpenCV without the Haar eye cascade")
    level = eye_roll(to_gray(astronaut), FaceBox(FACE))
    assert level is None or abs(level) < 4  # an upright face stays as it is
    roll = eye_roll(to_gray(_tilt(astronaut, 12)), FaceBox(FACE))  # turned 12 degrees counter-clockwise
    assert roll is not None and abs(roll + 12) < 4, roll  # turning it back by -12 levels the eyes


@pytest.mark.parametrize("backend", FAST)
def test_a_tight_crop_is_found_by_the_padded_retry(astronaut, backend):
    face = cv2.resize(_tight_crop(astronaut), (200, 200), interpolation=cv2.INTER_CUBIC)
    boxes = detect_faces(face, backend=backend)
    assert len(boxes) == 1, boxes
    x, y, w, h = boxes[0]
    assert x <= 100 <= x + w and y <= 100 <= y + h and w >= 100  # the face fills the photo


@pytest.mark.parametrize("backend", FAST)
def test_a_tilted_head_is_found_and_cropped_upright(astronaut, backend):
    tilted = _tilt(astronaut, 25)
    boxes = detect_faces(tilted, backend=backend)
    assert len(boxes) == 1, boxes
    x, y, w, h = boxes[0]
    assert abs(x + w / 2 - CENTRE[0]) < 30 and abs(y + h / 2 - CENTRE[1]) < 30
    assert -30 < boxes[0].angle <= -15, boxes[0].angle  # turned back by about the 25 degrees it was tilted
    upright = crop_face(to_gray(astronaut), FACE).astype(float).ravel()
    turned = crop_face(to_gray(tilted), boxes[0]).astype(float).ravel()
    as_found = crop_face(to_gray(tilted), tuple(boxes[0])).astype(float).ravel()  # the same box, not turned
    corr_turned, corr_found = np.corrcoef(upright, turned)[0, 1], np.corrcoef(upright, as_found)[0, 1]
    assert corr_turned > corr_found + 0.1, (boxes[0], corr_turned, corr_found)


def test_prediction_on_a_tight_crop_uses_the_detected_face(astronaut):
    from fer_lib.inference import pretrained

    face = cv2.resize(_tight_crop(astronaut), (200, 200), interpolation=cv2.INTER_CUBIC)
    preds = predict_faces(pretrained(), face)
    assert len(preds) == 1 and preds[0].label == "happy", preds[0].top_k


def _covered_close_up(img: np.ndarray) -> np.ndarray:
    """The held-out kind of photo: a close crop of a face (its border cut by the frame) with a hand-like shape over
    the mouth."""
    x, y, w, h = FACE
    crop = cv2.resize(img[y + 8:y + h - 4, x + 6:x + w - 6], (300, 340), interpolation=cv2.INTER_CUBIC)
    cv2.ellipse(crop, (150, 300), (125, 55), 0, 0, 360, (205, 160, 140), -1, cv2.LINE_AA)
    return crop


def test_the_default_detector_finds_a_covered_close_up(astronaut):
    """MTCNN, the default, finds the close crop with a hand over the mouth (dlib's HOG finds none: the
    case that made MTCNN the default, docs/results/faces.md); its box is clipped to the photo."""
    photo = _covered_close_up(astronaut)
    assert resolve_backend("auto") == "mtcnn"
    boxes = detect_faces(photo)
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    assert x >= 0 and y >= 0 and x + w <= photo.shape[1] and y + h <= photo.shape[0]
    assert w * h >= 0.5 * photo.shape[0] * photo.shape[1]


@pytest.mark.skipif("dlib-hog" not in available_backends(), reason="dlib not installed")
def test_a_close_up_without_a_found_face_is_told_so(astronaut):
    """When nothing is found in a picture that is itself mostly a face, the error says so and names --no-detect;
    nothing is guessed. A face-free photo is not told it is a face."""
    from fer_lib.detect import mostly_face
    from fer_lib.faces import NoFaceError, face_crops

    photo = _covered_close_up(astronaut)
    assert detect_faces(photo, backend="dlib-hog") == []
    with pytest.raises(NoFaceError, match="mostly a face") as info:
        face_crops(photo, backend="dlib-hog", source="hand.jpg")
    assert "--no-detect" in str(info.value) and info.value.mostly_face and info.value.where == "hand.jpg"
    assert not mostly_face(skdata.chelsea(), backend="dlib-hog")
    assert not mostly_face(np.full((300, 300), 128, np.uint8), backend="dlib-hog")


def test_without_the_mtcnn_weights_the_next_detector_takes_over(monkeypatch, tmp_path):
    """A damaged install (the detector's weights deleted): MTCNN is not offered, "auto" falls back to the next."""
    import fer_lib.mtcnn

    monkeypatch.setattr(fer_lib.mtcnn, "WEIGHTS", tmp_path / "missing.safetensors")
    assert "mtcnn" not in available_backends()
    assert resolve_backend("auto") == available_backends()[0] != "mtcnn"
    with pytest.raises(RuntimeError, match="not available"):
        resolve_backend("mtcnn")
