"""Store pictures of notebook 11's two widgets in the notebook, as a learner browsing it on GitHub or Colab would
otherwise see only ``VBox(...)``: ``python scripts/store_widget_pictures.py``.

The pictures are taken by ``tests/test_browser.py`` (JupyterLab served here, Debian's headless Chromium, a fake
camera playing scikit-image's astronaut), run by this script with ``FER_WIDGET_PICTURE`` set; each is stored as a JPEG
attachment of the markdown cell whose source holds its marker (``attachment:upload_widget.jpg`` and
``attachment:camera_widget.jpg``), and the caption's commit is set to this checkout's.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "11_your_own_photo.ipynb"
PICTURES = {"upload_widget.jpg": "widget.png", "camera_widget.jpg": "widget_camera.png"}


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "FER_WIDGET_PICTURE": str(Path(tmp, "widget.png")), "FER_QUICK": "1",
               "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/test_browser.py", "-p", "no:cacheprovider"],
                              cwd=ROOT, env=env)
        if done.returncode != 0:
            print("error: the browser test failed; no picture stored", file=sys.stderr)
            return 1
        jpegs = {}
        for name, png in PICTURES.items():
            image = cv2.imread(str(Path(tmp, png)))
            if image is None:
                print(f"error: the browser test wrote no {png}", file=sys.stderr)
                return 1
            ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
            jpegs[name] = base64.b64encode(data.tobytes()).decode()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    nb = json.loads(NOTEBOOK.read_text())
    stored = set()
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        text = "".join(cell["source"])
        for name, data in jpegs.items():
            if f"attachment:{name}" in text:
                cell.setdefault("attachments", {})[name] = {"image/jpeg": data}
                text = re.sub(r"at commit `[0-9a-f]{7,}`", f"at commit `{commit}`", text)
                cell["source"] = text.splitlines(keepends=True)
                stored.add(name)
    missing = set(jpegs) - stored
    if missing:
        print(f"error: no markdown cell of {NOTEBOOK.name} names {sorted(missing)}", file=sys.stderr)
        return 1
    NOTEBOOK.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    print(f"stored {sorted(stored)} in {NOTEBOOK.relative_to(ROOT)} (commit {commit})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
