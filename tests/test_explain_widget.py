"""The notebook widget: both ipywidgets upload formats, the pure render function, and the wiring."""

from __future__ import annotations

import datetime
import io

import numpy as np
import pytest
import torch
from PIL import Image

from fer_lib.faces import NoFaceError, available_backends
from fer_lib.widget import _uploaded_files, emotion_widget, render_prediction, sample_image

needs_detector = pytest.mark.skipif(not available_backends(), reason="no face detector available")


@pytest.fixture(scope="module")
def model():
    from fer_lib.models import create_model

    torch.manual_seed(0)
    return create_model("baseline_resnet18").eval()


def _png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_uploaded_files_reads_ipywidgets_7_and_8():
    a, b = b"\x89PNG first", b"\xff\xd8 second"
    v7 = {"a.png": {"content": a, "metadata": {"name": "a.png", "type": "image/png", "size": len(a)}},
          "b.jpg": {"content": b, "metadata": {"name": "b.jpg"}}}
    when = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)  # ipywidgets 8 gives a datetime
    v8 = ({"name": "a.png", "type": "image/png", "size": len(a), "content": memoryview(a), "last_modified": when},
          {"name": "b.jpg", "type": "image/jpeg", "size": len(b), "content": memoryview(b), "last_modified": when})
    expected = [("a.png", a), ("b.jpg", b)]
    assert _uploaded_files(v7) == expected
    assert _uploaded_files(v8) == expected
    assert all(isinstance(content, bytes) for _, content in _uploaded_files(v8))  # memoryview -> bytes
    assert _uploaded_files(()) == [] == _uploaded_files({}) == _uploaded_files(None)
    with pytest.raises(ValueError, match="content"):
        _uploaded_files(({"name": "x.png"},))
    with pytest.raises(TypeError, match="FileUpload.value"):
        _uploaded_files("x.png")


@needs_detector
def test_render_prediction_on_the_sample_photo(model):
    name, photo, detect = sample_image()
    fig, preds = render_prediction(model, photo, name=name, detect=detect)
    assert len(preds) == 1
    assert len(fig.get_axes()) == 4  # photo, face, CAM, probability bars
    bars = fig.get_axes()[3].patches
    np.testing.assert_allclose([p.get_width() for p in bars], list(preds[0].probs.values()), atol=1e-6)
    with pytest.raises(NoFaceError, match="wall.png"):
        render_prediction(model, _png(np.full((200, 300, 3), 128, np.uint8)), name="wall.png")


def test_sample_falls_back_to_a_drawn_face(monkeypatch, model):
    import builtins

    real_import = builtins.__import__

    def no_skimage(name, *args, **kwargs):
        if name.startswith("skimage"):
            raise ImportError("skimage hidden for this test")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_skimage)
    name, photo, detect = sample_image()
    assert "synthetic" in name and photo.shape == (192, 192, 3) and detect is False
    fig, preds = render_prediction(model, photo, detect=False)
    assert len(preds) == 1 and preds[0].box == (0, 0, 192, 192)


@needs_detector
def test_widget_shows_the_sample_then_an_upload(model):
    pytest.importorskip("ipywidgets")
    from skimage import data

    box = emotion_widget(model)
    controls, source, status, picture = box.children
    assert source.value.startswith("<small>answered by: ")  # says which model answers
    assert controls.children[1].disabled  # a given model: no menu of others
    upload = controls.children[0]
    assert picture.value[:8] == b"\x89PNG\r\n\x1a\n" and "#0:" in status.value  # the sample was rendered
    first = bytes(picture.value)

    def send(name, content):
        if isinstance(upload.value, tuple):  # ipywidgets 8
            upload.value = ({"name": name, "type": "image/png", "size": len(content), "content": memoryview(content),
                             "last_modified": datetime.datetime.now(datetime.timezone.utc)},)
        else:  # ipywidgets 7
            upload.value = {name: {"content": content, "metadata": {"name": name}}}

    send("wall.png", _png(np.full((240, 320, 3), 128, np.uint8)))
    # the widget's own words: its "detect faces" box, not the API's detect=False / --no-detect
    assert "No face found" in status.value and "wall.png" in status.value and "untick <i>detect faces</i>" in status.value
    assert "--no-detect" not in status.value and "detect=False" not in status.value
    assert bytes(picture.value) == b""  # the previous photo's figure does not stay under this photo's error
    send("me.png", _png(data.astronaut()))
    assert status.value.startswith("#0:") and bytes(picture.value) != first  # titled with the upload's name


@needs_detector
def test_widget_menu_offers_every_bundled_model_and_says_which_answered():
    pytest.importorskip("ipywidgets")
    from fer_lib.inference import bundled_names, bundled_weights

    box = emotion_widget(checkpoint="ensemble" if "ensemble" in bundled_names() else None)
    controls, source, status, picture = box.children
    chooser = controls.children[1]
    assert list(chooser.options) == bundled_names() and not chooser.disabled
    first = source.value
    assert ("ensemble" in first) == ("ensemble" in bundled_names()) and "#0:" in status.value
    chooser.value = bundled_weights().stem  # the most accurate single model
    assert source.value != first and bundled_weights().stem in source.value and "#0:" in status.value


def test_the_camera_widget_answers_a_snapshot_and_a_faceless_one():
    """The Python side of the camera: a snapshot (base64 JPEG, as the browser sends it) in, the figure and the
    emotions out; a picture without a face says so in the widget's words; a broken snapshot is named."""
    import base64

    import cv2

    from fer_lib.inference import pretrained
    from fer_lib.widget import camera_widget, decode_snapshot

    data = pytest.importorskip("skimage.data")
    model = pretrained()
    box = camera_widget(model)
    camera, detect, status, answer, picture = box.children
    assert "nowhere else" in status.value  # where the picture goes is said before anything is taken

    def snap(rgb):
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        camera.snapshot = base64.b64encode(jpeg.tobytes()).decode()
        camera.count += 1

    snap(data.astronaut())
    assert answer.value.startswith("snapshot: #0:") and picture.value[:8] == b"\x89PNG\r\n\x1a\n"
    snap(np.full((240, 320, 3), 90, np.uint8))
    assert "No face found" in answer.value and "camera snapshot" in answer.value and bytes(picture.value) == b""
    with pytest.raises(ValueError, match="not base64"):
        decode_snapshot("not base64 !")
    camera.error = "camera not available: NotAllowedError: Permission denied"
    assert "NotAllowedError" in answer.value
