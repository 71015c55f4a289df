"""Emotion on photos: reading every kind of image, finding faces, cropping like FER2013, predicting.

Photos are scikit-image's ``astronaut`` (one frontal face, public domain) and images drawn here; the face box
of the astronaut, measured with both detectors (OpenCV 4 Haar: (177, 67, 93, 93); scikit-image LBP:
(173, 68, 99, 99)), is around x 170-275, y 60-170 in the 512x512 photo.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from fer_lib import EMOTIONS
from fer_lib.faces import (
    FacePrediction,
    ImageReadError,
    NoFaceError,
    annotate,
    available_backends,
    classify_faces,
    crop_face,
    detect_faces,
    load_image,
    predict_faces,
)

skdata = pytest.importorskip("skimage.data")
pytestmark = pytest.mark.skipif(not available_backends(), reason="no face detector (OpenCV Haar or scikit-image)")

FACE_CENTRE = (225, 117)  # (x, y) centre of the astronaut's face


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skdata.astronaut()


@pytest.fixture(scope="module")
def model():
    from fer_lib.models import create_model

    torch.manual_seed(0)
    return create_model("baseline_resnet18").eval()


def _contains_face_centre(box, scale=1.0, offset=(0, 0)):
    x, y, w, h = box
    cx, cy = FACE_CENTRE[0] * scale + offset[0], FACE_CENTRE[1] * scale + offset[1]
    return x <= cx <= x + w and y <= cy <= y + h and 60 * scale <= w <= 160 * scale


def test_astronaut_has_exactly_one_face(astronaut):
    boxes = detect_faces(astronaut)
    assert len(boxes) == 1, boxes
    assert _contains_face_centre(boxes[0])


def test_blank_and_noise_photos_raise_no_face(tmp_path, model):
    blank = np.full((480, 640, 3), 200, np.uint8)
    path = tmp_path / "blank.png"
    Image.fromarray(blank).save(path)
    with pytest.raises(NoFaceError, match=r"no face found in .*blank\.png.*detect=False"):
        predict_faces(model, path)
    noise = np.random.default_rng(0).integers(0, 256, (300, 400), dtype=np.uint8)
    with pytest.raises(NoFaceError):
        predict_faces(model, noise)


def _save_bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_grayscale_rgba_and_16bit_photos(astronaut):
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])
    sixteen = gray.astype(np.uint16) * 257  # full 16-bit range, like a 16-bit PNG/TIFF
    for name, src in (("L", Image.fromarray(gray)), ("RGBA", Image.fromarray(rgba, "RGBA")),
                      ("I;16", Image.fromarray(sixteen))):
        data = _save_bytes(src, "PNG")
        rgb = load_image(data)
        assert rgb.dtype == np.uint8 and rgb.shape == (512, 512, 3), name
        # every variant keeps the luminance of the original (16-bit: /257 exactly)
        assert np.abs(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(int) - gray).max() <= 1, name
        boxes = detect_faces(rgb)
        assert len(boxes) == 1 and _contains_face_centre(boxes[0]), name


def test_rgba_transparency_is_composited_on_white():
    arr = np.zeros((4, 4, 4), np.uint8)  # black, fully transparent
    arr[0, 0] = (10, 20, 30, 255)
    rgb = load_image(arr)
    assert tuple(rgb[0, 0]) == (10, 20, 30) and tuple(rgb[1, 1]) == (255, 255, 255)


def test_exif_rotated_jpeg_is_turned_upright(astronaut, tmp_path):
    # A phone stores the pixels sideways and an EXIF tag "rotate 90 CW to display" (orientation 6).
    sideways = np.ascontiguousarray(np.rot90(astronaut, k=1))  # 90 deg counter-clockwise
    assert detect_faces(sideways) == []  # the frontal cascade cannot find a sideways face
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    Image.fromarray(sideways).save(path, quality=95, exif=exif.tobytes())
    upright = load_image(path)
    assert upright.shape == astronaut.shape
    assert np.abs(upright.astype(int) - astronaut.astype(int)).mean() < 6  # JPEG loss only
    boxes = detect_faces(upright)
    assert len(boxes) == 1 and _contains_face_centre(boxes[0])


def test_very_large_photo_boxes_map_back(astronaut):
    up = cv2.resize(astronaut, (3000, 3000), interpolation=cv2.INTER_CUBIC)
    big = cv2.copyMakeBorder(up, 0, 0, 500, 500, cv2.BORDER_REFLECT)  # 4000 x 3000
    boxes = detect_faces(big, max_side=1024)
    assert len(boxes) == 1
    assert _contains_face_centre(boxes[0], scale=3000 / 512, offset=(500, 0))


def test_corrupt_and_missing_files_error_clearly(tmp_path, astronaut):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"this is not a jpeg at all")
    with pytest.raises(ImageReadError, match=r"cannot read image .*broken\.jpg"):
        load_image(bad)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(_save_bytes(Image.fromarray(astronaut), "PNG")[:2000])
    with pytest.raises(ImageReadError, match="truncated.png"):
        load_image(truncated)
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(tmp_path / "nope.png")


def test_crop_face_matches_hand_reference():
    gray = np.arange(100 * 120, dtype=np.int64).reshape(100, 120) % 251
    gray = gray.astype(np.uint8)
    box = (40, 30, 20, 20)  # margin 0.5 -> a 40x40 square at (30, 20)
    ref = cv2.resize(gray[20:60, 30:70], (48, 48), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_array_equal(crop_face(gray, box, margin=0.5), ref)
    # a box at the corner: the square leaves the photo and the border is replicated, never shifted
    corner = crop_face(gray, (0, 0, 20, 20), margin=0.5, size=40)
    padded = cv2.copyMakeBorder(gray, 10, 10, 10, 10, cv2.BORDER_REPLICATE)
    np.testing.assert_array_equal(corner, padded[0:40, 0:40])


def test_predict_faces_records(model, astronaut):
    preds = predict_faces(model, astronaut, top_k=3)
    assert len(preds) == 1
    p = preds[0]
    assert isinstance(p, FacePrediction) and p.face.shape == (48, 48) and p.face.dtype == np.uint8
    assert list(p.probs) == list(EMOTIONS) and abs(sum(p.probs.values()) - 1) < 1e-5
    ranked = sorted(p.probs.items(), key=lambda kv: -kv[1])[:3]
    assert [e for e, _ in p.top_k] == [e for e, _ in ranked] and p.label == ranked[0][0]
    # the probabilities are the model's on the crop, through the training normalisation
    from fer_lib.data import preprocess

    with torch.no_grad():
        ref = torch.softmax(model(preprocess(torch.from_numpy(p.face[None]))), 1)[0].numpy()
    np.testing.assert_allclose([p.probs[e] for e in EMOTIONS], ref, atol=1e-5)
    d = p.to_dict()
    assert set(d) == {"face", "box", "top_k", "probs"} and len(d["top_k"]) == 3


def test_no_detect_uses_the_whole_cropped_face(model):
    from fer_lib.data import make_synthetic_faces

    face = make_synthetic_faces(1, seed=3)[0][0].numpy()
    preds = predict_faces(model, face, detect=False)
    assert len(preds) == 1 and preds[0].box == (0, 0, 48, 48)
    np.testing.assert_array_equal(preds[0].face, face)  # 48x48 in, the same 48x48 to the model
    np.testing.assert_allclose(classify_faces(model, face[None])[0], [preds[0].probs[e] for e in EMOTIONS],
                               atol=1e-6)


def test_largest_face_and_annotation(model, astronaut):
    small = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    canvas = np.full((512, 900, 3), 90, np.uint8)
    canvas[:, :512] = astronaut
    canvas[200:456, 600:856] = small  # a second, smaller copy of the face
    everyone = predict_faces(model, canvas, select="all")
    assert len(everyone) == 2 and everyone[0].box[2] > everyone[1].box[2]  # largest first
    largest = predict_faces(model, canvas, select="largest")
    assert len(largest) == 1 and largest[0].box == everyone[0].box
    drawn = annotate(canvas, everyone)
    assert drawn.shape == canvas.shape and drawn.dtype == np.uint8
    for x, y, w, h in (p.box for p in everyone):  # the box outline is drawn, the inside left alone
        assert (drawn[y, x:x + w] != canvas[y, x:x + w]).any()
        assert np.array_equal(drawn[y + h // 2, x + w // 4:x + 3 * w // 4], canvas[y + h // 2, x + w // 4:x + 3 * w // 4])
    with pytest.raises(ValueError, match="select"):
        predict_faces(model, canvas, select="biggest")
    with pytest.raises(ValueError, match="top_k"):
        predict_faces(model, canvas, top_k=0)


@pytest.mark.fer2013
def test_a_real_fer2013_face_goes_through_unchanged(fer2013_root, model):
    """A FER2013 JPEG is already a 48x48 grayscale face: --no-detect must feed exactly its pixels."""
    path = next(iter(sorted((fer2013_root / "test" / "happy").glob("*.jpg"))), None)
    if path is None:
        pytest.skip(f"{fer2013_root} is not in the Kaggle folder form (test/happy/*.jpg)")
    pixels = np.array(Image.open(path))
    assert pixels.shape == (48, 48)
    rgb = load_image(path)
    assert rgb.shape == (48, 48, 3) and (rgb == pixels[:, :, None]).all()
    (pred,) = predict_faces(model, path, detect=False)
    np.testing.assert_array_equal(pred.face, pixels)
