"""The notebook widgets in a real browser: JupyterLab served here, Debian's headless Chromium driven by Playwright.

* The upload widget (notebook 11): its controls render as widgets, the upload button's label is whole, and in a
  narrow window every control stays inside the output (they wrap instead of being clipped).
* The camera widget: Chromium's fake camera plays a face (scikit-image's astronaut, written here as a .y4m video);
  "Start camera", then "Take snapshot", and the kernel's answer names a face and an emotion.

With ``FER_WIDGET_PICTURE=path.png`` the test also saves pictures of the upload widget (``path.png``) and of the
camera widget after its snapshot (``path_camera.png``), which ``scripts/store_widget_pictures.py`` stores in
notebook 11. Skipped when Chromium or Playwright is missing
(``.ci/run`` installs Debian's chromium; Playwright comes with ``.[dev]``); it never downloads a browser.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_lib import EMOTIONS

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install '.[dev]')")
skdata = pytest.importorskip("skimage.data")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install "
                                 "chromium; .ci/run does)")]

CELLS = [
    "import os\nos.environ.setdefault('MPLBACKEND', 'Agg')\nfrom fer_lib.inference import pretrained\n"
    "from fer_lib.widget import camera_widget, emotion_widget\nmodel = pretrained()",
    "emotion_widget(checkpoint='fer2013_sota_resemote_small')",  # as notebook 11 calls it
    "camera_widget(checkpoint='fer2013_sota_resemote_small')",  # notebook 11's model
]
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
         "--use-fake-device-for-media-stream"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _y4m(path: Path, rgb: np.ndarray, frames: int = 10) -> Path:
    """A short .y4m video (what Chromium's fake camera plays) showing ``rgb``; 640x480, 4:2:0."""
    h, w = 480, 640
    canvas = np.full((h, w, 3), 70, np.uint8)
    face = cv2.resize(rgb, (h, h), interpolation=cv2.INTER_AREA)
    canvas[:, (w - h) // 2:(w - h) // 2 + h] = face
    i420 = cv2.cvtColor(canvas, cv2.COLOR_RGB2YUV_I420)
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            f.write(b"FRAME\n" + i420.tobytes())
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """``(url of the notebook, root folder)``: a JupyterLab server on a free port, serving one notebook."""
    root = tmp_path_factory.mktemp("lab")
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [],
                     "source": src} for i, src in enumerate(CELLS)],
          "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
          "nbformat": 4, "nbformat_minor": 5}
    (root / "widgets.ipynb").write_text(json.dumps(nb))
    settings = root / ".settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')  # no news pop-up
    port, token = _free_port(), "fer-lib-browser-test"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "JUPYTER_RUNTIME_DIR": str(root / ".runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(root / ".settings"), "FER_QUICK": "1", "OMP_NUM_THREADS": "1"}
    log = open(root / "lab.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
                               "--ServerApp.ip=127.0.0.1", "--allow-root", f"--IdentityProvider.token={token}",
                               f"--ServerApp.root_dir={root}", "--LabApp.news_url=", "--LabApp.expose_app_in_browser=True", "--ServerApp.open_browser=False",
                               "--LabServerApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None:
                    pytest.fail("JupyterLab did not start:\n" + (root / "lab.log").read_text()[-3000:])
                time.sleep(0.5)
        yield f"{base}/lab/tree/widgets.ipynb?token={token}", root
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def page(lab, tmp_path_factory):
    """The notebook open in headless Chromium (fake camera playing the astronaut), every cell run."""
    url, root = lab
    video = _y4m(tmp_path_factory.mktemp("camera") / "face.y4m", skdata.astronaut())
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=[*FLAGS, f"--use-file-for-fake-video-capture={video}"])
        context = browser.new_context(viewport={"width": 1200, "height": 1000})
        context.grant_permissions(["camera"])
        pg = context.new_page()
        pg.goto(url)
        pg.wait_for_selector(".jp-Notebook", timeout=90_000)
        # JupyterLab's own command (the app is exposed to the page by --LabApp.expose_app_in_browser)
        pg.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                             " && window.jupyterapp.shell.currentWidget.sessionContext", timeout=90_000)
        pg.evaluate("async () => { const nb = window.jupyterapp.shell.currentWidget;"
                    " await nb.sessionContext.ready; await window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        try:
            pg.wait_for_selector(".fer-camera", timeout=180_000)  # the last cell's widget: every cell ran
            pg.wait_for_selector(".widget-upload", timeout=30_000)
        except playwright.TimeoutError:
            pg.screenshot(path=str(root / "timeout.png"))
            pytest.fail("the widgets did not render in 180 s; server log:\n" + (root / "lab.log").read_text()[-3000:])
        yield pg
        browser.close()


def _upload_widget(pg):
    """The output area holding the upload widget (notebook 11's)."""
    return pg.locator(".jp-OutputArea-output").filter(has=pg.locator(".widget-upload")).first


def test_the_upload_widget_renders_whole(page):
    out = _upload_widget(page)
    out.locator("img").first.wait_for(timeout=60_000)  # the sample photo's figure
    button = out.locator("button.widget-upload").first
    assert "Upload photo" in button.inner_text()
    cut = button.evaluate("b => b.scrollWidth > b.clientWidth + 1")
    assert not cut, "the upload button's label is cut"
    picture = os.environ.get("FER_WIDGET_PICTURE")
    if picture:
        out.screenshot(path=picture)


def test_a_narrow_window_wraps_the_controls_instead_of_clipping_them(page):
    page.set_viewport_size({"width": 560, "height": 1000})
    try:  # a narrow JupyterLab opens its file browser over the notebook: close the side panels, as a user would
        page.evaluate("() => { window.jupyterapp.shell.collapseLeft(); window.jupyterapp.shell.collapseRight(); }")
        page.wait_for_timeout(800)
        out = _upload_widget(page)
        right = out.bounding_box()["x"] + out.bounding_box()["width"]
        controls = out.locator("button.widget-upload, .widget-dropdown, .widget-checkbox")  # not the hidden <input>
        assert controls.count() >= 5
        if os.environ.get("FER_WIDGET_PICTURE"):
            page.screenshot(path=os.environ["FER_WIDGET_PICTURE"].replace(".png", "_narrow.png"))
        for i in range(controls.count()):
            box = controls.nth(i).bounding_box()
            assert box is not None and box["x"] + box["width"] <= right + 1, \
                f"control {i} ({controls.nth(i).inner_text()!r}) ends at {box['x'] + box['width']:.0f} > {right:.0f}"
        assert not out.locator("button.widget-upload").first.evaluate("b => b.scrollWidth > b.clientWidth + 1")
    finally:
        page.set_viewport_size({"width": 1200, "height": 1000})


def test_the_camera_widget_sends_a_snapshot_and_the_kernel_answers(page):
    cam = page.locator(".jp-OutputArea-output").filter(has=page.locator(".fer-camera")).first
    cam.get_by_text("Start camera").click()
    cam.get_by_text("Camera on").wait_for(timeout=30_000)
    page.wait_for_function("() => { const v = document.querySelector('.fer-camera-video');"
                           " return v && v.videoWidth > 0; }", timeout=30_000)
    cam.get_by_text("Take snapshot").click()
    answer = cam.locator(".widget-html").filter(has_text="snapshot: #0:").first
    answer.wait_for(timeout=120_000)
    text = answer.inner_text()
    assert any(e in text for e in EMOTIONS), text
    assert cam.locator("img").count() >= 1  # the figure: the photo, the face, its Grad-CAM and the bars
    picture = os.environ.get("FER_WIDGET_PICTURE")
    if picture:
        cam.locator("img").first.wait_for(timeout=30_000)
        page.wait_for_timeout(500)
        cam.screenshot(path=picture.replace(".png", "_camera.png"))
    cam.get_by_text("Stop camera").click()
    cam.get_by_text("The camera is off.").wait_for(timeout=10_000)

