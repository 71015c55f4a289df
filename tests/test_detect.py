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
    detection_rate,
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


@pytest.mark.slow
@pytest.mark.parametrize("backend", FAST)
def test_detection_rate_on_lfw_tight_crops(backend):
    rate = detection_rate(backend)
    assert rate["faces_found"] >= 90 and rate["non_faces_flagged"] <= 5, rate
