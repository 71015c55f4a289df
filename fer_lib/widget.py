"""Notebook widgets: upload a photo, or take one with the camera, and see the faces, the emotions and Grad-CAM.

>>> from fer_lib.widget import camera_widget, emotion_widget
>>> camera_widget()                                   # the browser's camera: start it, take a snapshot
>>> emotion_widget()                                  # choose among the bundled models, in a Jupyter / Colab cell
>>> emotion_widget(checkpoint="ensemble")             # start with one of them (a bundled name) ...
>>> emotion_widget(checkpoint="runs/cpu/best.pt")     # ... or your own checkpoint, offered beside them

A "model" menu offers every bundled model (``fer_lib.inference.bundled_names()``: the course's SOTAResEmote, the
ResNet18 and their ensemble), plus the checkpoint you pass; each is loaded when first chosen, and the line under
the controls says which model answered.

Before anything is uploaded (and under nbval, where nothing can be) it shows a sample photo: scikit-image's
``astronaut`` (Eileen Collins, NASA, public domain) when scikit-image is installed, else a drawn synthetic face.
The drawing is done by :func:`render_prediction`, a pure function (photo in, matplotlib ``Figure`` out) so it is
testable without a browser; the widget only wires it to an upload button.

:func:`camera_widget` is a small widget in JavaScript (``fer_lib/static/camera.js``, run by ``anywidget``) around the
browser's camera: the picture stays in the browser until "Take snapshot" sends one JPEG to the kernel that runs the
notebook (on Colab, Google's machine), where :func:`render_prediction` answers as for an uploaded photo.

``FileUpload.value`` differs between ipywidgets 7 (Colab: ``{name: {"content": bytes, "metadata": {...}}}``)
and 8 (JupyterLab 4: a tuple of ``{"name", "type", "size", "content": memoryview, "last_modified"}``);
:func:`_uploaded_files` reads both.
"""

from __future__ import annotations

import base64
import binascii
import io
import sys
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np
from matplotlib.figure import Figure

from fer_lib import EMOTIONS
from fer_lib.data import make_synthetic_faces
from fer_lib.explain import compute_cam, overlay_cam, upsample_face
from fer_lib.faces import EMOTION_COLORS, NoFaceError, annotate, load_image, predict_faces
from fer_lib.inference import bundled_names, bundled_weights, describe_model, load_model


def widget_hint(error: Exception, camera: bool = False) -> str:
    """What a widget says for an error: for "no face found", its own words and its own "detect faces" box (not
    the API's ``detect=False`` / ``--no-detect``); other errors as they are."""
    if not isinstance(error, NoFaceError):
        return f"<b>{type(error).__name__}</b>: {error}"
    if error.mostly_face:
        return (f"<b>No face found</b> in {error.where}, though it looks like a close-up of a face, where the detector "
                "sees no whole face. If it is, untick <i>detect faces</i> to classify the picture as it is.")
    tip = "face the camera in good light" if camera else "try a frontal, well-lit photo"
    return (f"<b>No face found</b> in {error.where}: {tip}, or untick <i>detect faces</i> if the picture is itself a "
            "close-up of one face.")


def _uploaded_files(value) -> list[tuple[str, bytes]]:
    """``[(file name, raw bytes)]`` from a ``FileUpload.value`` of ipywidgets 7 (dict) or 8 (tuple of dicts)."""
    if not value:
        return []
    if isinstance(value, Mapping):  # ipywidgets 7: {name: {"content": bytes, "metadata": {...}}}
        items = []
        for name, entry in value.items():
            content = entry.get("content") if isinstance(entry, Mapping) else None
            if content is None:
                raise ValueError(f"uploaded file {name!r} has no 'content' (ipywidgets 7 FileUpload.value)")
            items.append((str(entry.get("metadata", {}).get("name", name)), bytes(content)))
        return items
    if isinstance(value, (tuple, list)):  # ipywidgets 8: ({"name", "content": memoryview, ...}, ...)
        items = []
        for i, entry in enumerate(value):
            if not isinstance(entry, Mapping) or "content" not in entry:
                raise ValueError(f"FileUpload.value[{i}] is not an ipywidgets 8 upload dict with 'content'")
            items.append((str(entry.get("name", f"upload_{i}")), bytes(entry["content"])))
        return items
    raise TypeError(f"unrecognised FileUpload.value of type {type(value).__name__}: expected the dict of "
                    "ipywidgets 7 or the tuple of ipywidgets 8")


def sample_image() -> tuple[str, np.ndarray, bool]:
    """``(name, uint8 RGB photo, detect)``: the astronaut photo, or a drawn face (``detect=False``)."""
    try:
        from skimage import data  # optional (scikit-image)

        return "astronaut (scikit-image sample)", data.astronaut(), True
    except ImportError:
        face = make_synthetic_faces(7, seed=0)[0][3].numpy()  # one face; a drawn face needs no detection
        face = cv2.resize(face, (192, 192), interpolation=cv2.INTER_CUBIC)
        return "synthetic face (scikit-image not installed)", np.repeat(face[:, :, None], 3, axis=2), False


def render_prediction(model, image, *, name: str = "photo", detect: bool = True, select: str = "all",
                      method: str = "gradcam", top_k: int = 3, max_faces: int = 4):
    """Photo -> ``(Figure, predictions)``: the annotated photo, then per face the crop, its CAM and the bars.

    Args:
        model: a fer_lib classifier.
        image: path, bytes, PIL image or array (see :func:`fer_lib.faces.load_image`).
        name: shown in the title and in a :class:`~fer_lib.faces.NoFaceError`.
        detect, select, top_k: see :func:`fer_lib.faces.predict_faces`.
        method: CAM method (``"gradcam"``, ``"gradcam++"``, ``"eigencam"``).
        max_faces: faces drawn (the largest first); all are predicted.

    Raises:
        NoFaceError: no face in the photo.
    """
    rgb = load_image(image)
    preds = predict_faces(model, rgb, detect=detect, select=select, top_k=top_k, source=name)
    shown = preds[:max_faces]
    maps = compute_cam(model, np.stack([p.face for p in shown]), method=method)
    rows = len(shown)
    fig = Figure(figsize=(11, max(2.6, 2.4 * rows)), layout="constrained")
    grid = fig.add_gridspec(rows, 4, width_ratios=[2.2, 1, 1, 1.6])
    ax = fig.add_subplot(grid[:, 0])
    ax.imshow(annotate(rgb, preds))
    ax.set_title(f"{name}: {len(preds)} face(s)", fontsize=9)
    ax.axis("off")
    for r, (pred, cam) in enumerate(zip(shown, maps)):
        a_face, a_cam, a_bar = (fig.add_subplot(grid[r, c]) for c in (1, 2, 3))
        a_face.imshow(upsample_face(pred.face), cmap="gray", vmin=0, vmax=255)
        a_face.set_title(f"face #{pred.index} (48x48)", fontsize=8)
        a_cam.imshow(overlay_cam(pred.face, cam))
        a_cam.set_title(f"{method}: {pred.label}", fontsize=8)
        for a in (a_face, a_cam):
            a.axis("off")
        probs = [pred.probs[e] for e in EMOTIONS]
        colors = [np.array(EMOTION_COLORS[e]) / 255 for e in EMOTIONS]
        a_bar.barh(range(len(EMOTIONS)), probs, color=colors)
        a_bar.set_yticks(range(len(EMOTIONS)), EMOTIONS, fontsize=7)
        a_bar.invert_yaxis()
        a_bar.set_xlim(0, 1)
        a_bar.tick_params(axis="x", labelsize=7)
        a_bar.set_title("probabilities", fontsize=8)
    return fig, preds


def figure_png(fig: Figure, dpi: int = 90) -> bytes:
    """PNG bytes of a figure (works without any pyplot backend)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def emotion_widget(model=None, *, checkpoint=None, method: str = "gradcam"):
    """An upload-and-predict widget (``ipywidgets.VBox``); shows the sample photo until something is uploaded.

    Args:
        model: a fer_lib classifier to use as it is (no model menu); when ``None`` a menu offers the bundled models.
        checkpoint: the menu's first choice: a bundled name or a checkpoint / ``.safetensors`` path (a path is
            added to the menu). Default: the most accurate bundled model (:func:`fer_lib.pretrained`).
        method: initial CAM method.
    """
    import ipywidgets as w  # optional (the notebook extra): imported only when a widget is made

    loaded: dict[str, object] = {}
    if model is not None:
        choices, first = ["(given model)"], "(given model)"
        loaded[first] = model
    else:
        choices = bundled_names()
        first = str(checkpoint) if checkpoint is not None else bundled_weights().stem
        if first not in choices:
            choices = [first, *choices]
        loaded[first] = load_model(first)  # a bad checkpoint fails here, before any widget is drawn

    # min_width: a guard against the label cut to "Upload phot..." that a reader saw in a browser (not reproduced in
    # JupyterLab 4.6 and Chromium 156, where tests/test_browser.py checks that the label stays whole)
    upload = w.FileUpload(accept="image/*", multiple=False, description="Upload photo",
                          layout=w.Layout(width="auto", min_width="max-content"))
    # every control sizes to its content and never beyond the output (narrow windows: they wrap, not clip);
    # description_width "initial": the label takes its own width, not ipywidgets' fixed one
    fit, label = dict(width="auto", max_width="100%"), {"description_width": "initial"}
    chooser = w.Dropdown(options=choices, value=first, description="model", layout=w.Layout(**fit), style=label,
                         disabled=model is not None)
    detect = w.Checkbox(value=True, description="detect faces", indent=False, layout=w.Layout(**fit))
    largest = w.Checkbox(value=False, description="largest face only", indent=False, layout=w.Layout(**fit))
    cam = w.Dropdown(options=["gradcam", "gradcam++", "eigencam"], value=method, description="CAM",
                     layout=w.Layout(**fit), style=label)
    picture = w.Image(format="png")
    status = w.HTML()
    source = w.HTML()

    def refresh(*_):
        name = chooser.value
        if name not in loaded:
            loaded[name] = load_model(name)
        current = loaded[name]
        source.value = f"<small>answered by: {describe_model(current)}</small>"
        files = _uploaded_files(upload.value)
        if files:
            photo, content = files[-1]
            use_detect = detect.value
        else:
            photo, content, sample_detect = sample_image()
            use_detect = detect.value and sample_detect
        try:
            fig, preds = render_prediction(current, content, name=photo, detect=use_detect,
                                           select="largest" if largest.value else "all", method=cam.value)
        except (NoFaceError, ValueError, OSError) as e:
            picture.value = b""  # never leave the previous photo's figure under this photo's error
            status.value = widget_hint(e)
            return
        picture.value = figure_png(fig)
        status.value = "; ".join(f"#{p.index}: {p.label} ({p.top_k[0][1]:.0%})" for p in preds)

    for control in (upload, chooser, detect, largest, cam):
        control.observe(refresh, names="value")
    refresh()
    controls = w.HBox([upload, chooser, detect, largest, cam],
                      layout=w.Layout(flex_flow="row wrap", grid_gap="4px 12px", max_width="100%"))
    return w.VBox([controls, source, status, picture])


STATIC = Path(__file__).with_name("static")
"""The camera widget's JavaScript and CSS (package data)."""
_CAMERA_CLASS: list = []


def _camera_class():
    """The ``anywidget.AnyWidget`` subclass behind :func:`camera_widget` (made once)."""
    if not _CAMERA_CLASS:
        import anywidget  # optional (a notebook dependency): imported only when a camera widget is made
        import traitlets

        class Camera(anywidget.AnyWidget):
            _esm = STATIC / "camera.js"
            _css = STATIC / "camera.css"
            snapshot = traitlets.Unicode("").tag(sync=True)  # the last snapshot, a base64 JPEG
            count = traitlets.Int(0).tag(sync=True)  # snapshots taken (a new one fires even if identical)
            error = traitlets.Unicode("").tag(sync=True)  # why the browser gave no camera

        _CAMERA_CLASS.append(Camera)
    return _CAMERA_CLASS[0]


def decode_snapshot(data: str) -> bytes:
    """The JPEG bytes of a snapshot sent by the camera widget (base64); a clear ``ValueError`` when it is not."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"the camera's snapshot is not base64 ({e}); take the snapshot again") from None
    if not raw:
        raise ValueError("the camera's snapshot is empty; take the snapshot again")
    return raw


def camera_widget(model=None, *, checkpoint=None, method: str = "gradcam"):
    """The browser's camera in a notebook: start it, take a snapshot, see the faces, emotions and Grad-CAM.

    Args:
        model: a fer_lib classifier; default: ``checkpoint``, else the most accurate bundled model.
        checkpoint: a bundled name or a checkpoint / ``.safetensors`` path (see :func:`fer_lib.inference.load_model`).
        method: CAM method (``"gradcam"``, ``"gradcam++"``, ``"eigencam"``).

    Returns:
        An ``ipywidgets.VBox``: the camera (buttons, live picture), a "detect faces" box, the answer line and figure.
    """
    import ipywidgets as w  # optional (the notebook extra), as in emotion_widget

    model = model if model is not None else load_model(checkpoint)
    if "google.colab" in sys.modules:  # Colab draws a third-party widget only through its custom widget manager
        from google.colab import output  # optional (Colab only)

        output.enable_custom_widget_manager()
    camera = _camera_class()()
    detect = w.Checkbox(value=True, description="detect faces", indent=False, layout=w.Layout(width="auto"))
    status = w.HTML(f"<small>answered by: {describe_model(model)}. The snapshot goes from this browser to the kernel "
                    "that runs this notebook (on Colab: Google's machine), nowhere else, and is not saved.</small>")
    answer = w.HTML()
    picture = w.Image(format="png")

    def on_snapshot(*_):
        if not camera.snapshot:
            return
        try:
            fig, preds = render_prediction(model, decode_snapshot(camera.snapshot), name="camera snapshot",
                                           detect=detect.value, method=method)
        except (NoFaceError, ValueError, OSError) as e:
            picture.value = b""  # never leave the previous snapshot's figure under this one's error
            answer.value = widget_hint(e, camera=True)
            return
        picture.value = figure_png(fig)
        answer.value = "snapshot: " + "; ".join(f"#{p.index}: {p.label} ({p.top_k[0][1]:.0%})" for p in preds)

    def on_error(*_):
        answer.value = f"<b>camera</b>: {camera.error}"

    camera.observe(on_snapshot, names="count")
    camera.observe(on_error, names="error")
    detect.observe(on_snapshot, names="value")
    return w.VBox([camera, detect, status, answer, picture])
