"""One call that prepares a notebook session on Colab or locally.

Every notebook's first cell installs ``fer_lib`` (on Colab) and then calls :func:`setup`, which

* reports the device (CUDA GPU or CPU) and whether quick mode is on,
* finds FER2013 (``FER2013_DIR``, ``../shared/fer2013``, ``data/``; on Colab also a ``fer2013.csv`` or a Kaggle
  ``fer2013/`` folder uploaded into the working folder), and on Colab, when it is missing, downloads the Kaggle
  copy ``msambare/fer2013`` with ``kagglehub`` (needs Kaggle credentials); when that fails it says so in a
  banner, with what to do, before anything falls back to synthetic faces,
* optionally mounts Google Drive so checkpoints survive the Colab session.

:func:`course_model` gives notebooks 09-11 the model to study: notebook 08's full run when its checkpoint is
found (in ``runs/`` or on a mounted Drive), else the trained model bundled with fer_lib -- never the quick-mode toy.
:func:`check_full_run` stops notebook 08 from starting its full recipe on a CPU or on synthetic faces by accident.

Nothing here is needed for the library itself; it only saves each notebook a screen of boilerplate.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from fer_lib.paths import REPO_ROOT, display_path, find_fer2013, is_quick


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
        data = display_path(self.data_root) if self.data_root else "NOT FOUND -> synthetic faces (not FER2013)"
        return (
            f"device: {dev} | colab: {self.in_colab} | quick mode: {self.quick}\n"
            f"FER2013: {data}\nruns: {display_path(self.runs_dir)}"
        )


def in_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules


DRIVE_RUNS = Path("/content/drive/MyDrive/fer_course/runs")
"""Where :func:`setup` keeps runs on Google Drive (``setup(drive=True)`` on Colab)."""

UPLOAD_NAMES = ("fer2013.csv", "fer2013", "FER2013", "archive")
"""Names looked for in the Colab working folder: the challenge CSV, or the Kaggle folder (``train/``, ``test/``)."""

_FIX = ("  To fix: upload fer2013.csv (columns emotion,pixels,Usage) or the Kaggle fer2013 folder (train/, test/)\n"
        "  into the Colab working folder and run this cell again, or set FER2013_DIR to where it is, or add\n"
        "  Kaggle credentials (Colab secrets KAGGLE_USERNAME / KAGGLE_KEY) for the automatic download.")


def banner(lines: str) -> str:
    """``lines`` framed by rules of ``!``, so a warning cannot be scrolled past unseen."""
    rule = "!" * 100
    return f"{rule}\n{lines}\n{rule}"


def find_uploaded(folder: str | os.PathLike | None = None) -> Path | None:
    """FER2013 uploaded into ``folder`` (default: the working folder): a ``fer2013.csv``, a ``fer2013/`` Kaggle
    folder, or the Kaggle folders ``train/`` and ``test/`` themselves; ``None`` when there is none."""
    base = Path(folder) if folder is not None else Path.cwd()
    for name in UPLOAD_NAMES:
        cand = base / name
        if cand.is_file() and cand.suffix == ".csv" and cand.stat().st_size > 0:
            return cand
        if cand.is_dir() and (cand / "train").is_dir():
            return cand
    if (base / "train").is_dir() and (base / "test").is_dir():
        return base
    return None


def _download_kaggle() -> tuple[Path | None, str]:
    """``(path, "")`` after a successful download, else ``(None, why it failed)``."""
    try:
        import kagglehub  # type: ignore[import-not-found]
    except ImportError:
        return None, "kagglehub is not installed (pip install kagglehub)"
    try:
        return Path(kagglehub.dataset_download("msambare/fer2013")), ""
    except Exception as exc:  # noqa: BLE001 - any auth/network failure is reported, not raised
        return None, f"kagglehub could not download msambare/fer2013: {type(exc).__name__}: {exc}"


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
    if root is None and colab:
        root = find_uploaded() or find_uploaded("/content")
    if root is None and colab and download and not is_quick():
        root, why = _download_kaggle()
        if root is None:
            print(banner(f"FER2013 NOT FOUND and the Kaggle download FAILED: {why}\n"
                         "  Without it every notebook runs on SYNTHETIC faces: its numbers say nothing about FER2013.\n"
                         + _FIX))
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


def check_full_run(session: Session, synthetic: bool, *, allow: bool = False) -> None:
    """Stop a full (not quick-mode) training run that would take days on a CPU or train on synthetic faces.

    Args:
        session: what :func:`setup` found.
        synthetic: the training data is the synthetic face set.
        allow: start anyway (the notebook's ``ALLOW_CPU_OR_SYNTHETIC = True``).

    Raises:
        RuntimeError: naming the problem and the two ways out.
    """
    if session.quick or allow:
        return
    problems = []
    if session.device != "cuda":
        problems.append("there is no GPU (the full recipe takes days on a CPU)")
    if synthetic:
        problems.append("FER2013 was not found, so it would train on SYNTHETIC faces")
    if problems:
        raise RuntimeError(
            "not starting the full training run: " + " and ".join(problems) + ". On Colab choose Runtime -> "
            "Change runtime type -> GPU and provide FER2013 (see the setup cell); or set FER_QUICK=1 for the "
            "one-minute pipeline check; or set ALLOW_CPU_OR_SYNTHETIC = True to start it anyway."
        )


@dataclass
class CourseModel:
    """What :func:`course_model` chose for notebooks 09-11."""

    model: object  # the model in eval mode
    path: Path  # its checkpoint or weights file
    bundled: bool  # True: the trained model that ships with fer_lib; False: notebook 08's full run
    description: str  # one line naming it (no machine-specific absolute paths)


def course_model(runs_dir: str | os.PathLike | None = None, preset: str = "gpu", verbose: bool = True) -> CourseModel:
    """The model notebooks 09-11 evaluate and explain.

    Notebook 08's full run (``<runs_dir>/<preset>/best.pt``, then the same on a mounted Google Drive) when it
    exists; otherwise the trained FER2013 model bundled with fer_lib (``fer_lib.pretrained()``). The quick-mode
    toy checkpoint (``<preset>_quick``) is never used: it only shows that notebook 08's pipeline runs.
    """
    from fer_lib.inference import describe_model, load_model, pretrained

    dirs = [Path(runs_dir)] if runs_dir is not None else [REPO_ROOT / "runs", Path("runs")]
    if DRIVE_RUNS.is_dir():
        dirs.append(DRIVE_RUNS)
    path = next((d / preset / "best.pt" for d in dirs if (d / preset / "best.pt").is_file()), None)
    if path is not None:
        model = load_model(path)
        desc = f"notebook 08's full run: {describe_model(model)}"
    else:
        model = pretrained()
        path = Path(model.checkpoint_path)
        desc = (f"{describe_model(model)}; no full run of notebook 08 was found, so this is the model that ships "
                "with fer_lib (fer_lib/weights/MODEL_CARD.md)")
    if verbose:
        print("model:", desc)
    return CourseModel(model=model, path=path, bundled=path.suffix == ".safetensors", description=desc)
