"""One call that prepares a notebook session on Colab or locally.

Every notebook's first cell installs ``fer_lib`` (on Colab) and then calls :func:`setup`, which

* reports the device (CUDA GPU or CPU) and whether quick mode is on,
* finds FER2013 (``FER2013_DIR``, ``../shared/fer2013``, ``data/``), and on Colab, when it is missing, downloads the
  Kaggle copy ``msambare/fer2013`` with ``kagglehub`` (needs Kaggle credentials) or takes an uploaded
  ``fer2013.csv``,
* optionally mounts Google Drive so checkpoints survive the Colab session.

Nothing here is needed for the library itself; it only saves each notebook a screen of boilerplate.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from fer_lib.paths import REPO_ROOT, find_fer2013, is_quick


@dataclass
class Session:
    """What :func:`setup` found. ``data_root`` is ``None`` when the notebooks fall back to synthetic faces."""

    device: str  # "cuda" or "cpu"
    gpu_name: str | None  # e.g. "Tesla T4"; None on CPU
    in_colab: bool  # running inside Google Colab
    quick: bool  # FER_QUICK / CI: tiny data, one short epoch
    data_root: Path | None  # FER2013 location, or None (synthetic data will be used)
    runs_dir: Path  # where checkpoints and figures go (on Drive when mounted)

    def __str__(self) -> str:
        dev = f"cuda ({self.gpu_name})" if self.device == "cuda" else "cpu"
        data = str(self.data_root) if self.data_root else "NOT FOUND -> synthetic faces (not FER2013)"
        return (
            f"device: {dev} | colab: {self.in_colab} | quick mode: {self.quick}\n"
            f"FER2013: {data}\nruns: {self.runs_dir}"
        )


def in_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules


def _download_kaggle() -> Path | None:
    try:
        import kagglehub  # type: ignore[import-not-found]
    except ImportError:
        print("kagglehub is not installed: pip install kagglehub (or upload fer2013.csv)")
        return None
    try:
        path = Path(kagglehub.dataset_download("msambare/fer2013"))
    except Exception as exc:  # noqa: BLE001 - any auth/network failure is reported, not raised
        print(f"kagglehub could not download msambare/fer2013 ({exc}); set Kaggle credentials or upload fer2013.csv")
        return None
    return path


def setup(download: bool = True, drive: bool = False, runs_dir: str | os.PathLike | None = None) -> Session:
    """Prepare the session and print what was found.

    Args:
        download: on Colab, fetch FER2013 from Kaggle with ``kagglehub`` when it is not found.
        drive: on Colab, mount Google Drive and keep runs under ``MyDrive/fer_course/runs``.
        runs_dir: explicit folder for runs (default ``runs/`` in the repository or the current folder).

    Returns:
        A :class:`Session`; ``FER2013_DIR`` is set in the environment when data was found or downloaded.
    """
    import torch

    colab = in_colab()
    root = find_fer2013()
    if root is not None and not root.exists():
        root = None
    if root is None and colab and download and not is_quick():
        root = _download_kaggle()
    if root is not None:
        os.environ["FER2013_DIR"] = str(root)

    if runs_dir is not None:
        runs = Path(runs_dir)
    elif colab and drive:
        from google.colab import drive as gdrive  # type: ignore[import-not-found]

        gdrive.mount("/content/drive")
        runs = Path("/content/drive/MyDrive/fer_course/runs")
    else:
        runs = (REPO_ROOT / "runs") if (REPO_ROOT / "pyproject.toml").exists() else Path("runs")
    runs.mkdir(parents=True, exist_ok=True)

    cuda = torch.cuda.is_available()
    session = Session(
        device="cuda" if cuda else "cpu",
        gpu_name=torch.cuda.get_device_name(0) if cuda else None,
        in_colab=colab,
        quick=is_quick(),
        data_root=root,
        runs_dir=runs,
    )
    print(session)
    return session
