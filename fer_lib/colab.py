"""One call that prepares a notebook session on Colab or locally.

Every notebook's first cell installs ``fer_lib`` (on Colab) and then calls :func:`setup`, which

* reports the device (CUDA GPU or CPU) and whether quick mode is on,
* finds FER2013 (``FER2013_DIR``, ``../shared/fer2013``, ``data/``; on Colab also a ``fer2013.csv`` or a Kaggle
  ``fer2013/`` folder uploaded into the working folder), and on Colab, when it is missing, downloads the Kaggle
  copy ``msambare/fer2013`` with ``kagglehub`` (needs Kaggle credentials); when that fails it says so in a
  banner, with what to do, before anything falls back to synthetic faces (:func:`kaggle_credentials` finds the
  credentials, also in Colab's secrets),
* on Colab keeps runs on Google Drive by default (``setup(drive=None)``; ``drive=False`` opts out), so checkpoints
  survive the end of the Colab session; elsewhere runs go to the local ``runs/`` folder (:func:`runs_folder`).

:func:`resume_or_start` is notebook 08's one call that trains a recipe or, after a disconnect, continues it from
the run's ``last.pt`` (:func:`latest_checkpoint`).

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

import torch

from fer_lib.inference import COURSE_MODEL, bundled_names, describe_model, load_model, pretrained
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
    on_drive: bool = False  # runs_dir is on Google Drive (kept after the Colab session ends)

    def __str__(self) -> str:
        dev = f"cuda ({self.gpu_name})" if self.device == "cuda" else "cpu"
        data = display_path(self.data_root) if self.data_root else "NOT FOUND -> synthetic faces (not FER2013)"
        where = ""
        if self.on_drive:
            where = " (Google Drive: kept after this Colab session ends)"
        elif self.in_colab:
            where = " (on this Colab machine: lost when the session ends)"
        return (
            f"device: {dev} | colab: {self.in_colab} | quick mode: {self.quick}\n"
            f"FER2013: {data}\nruns: {display_path(self.runs_dir)}{where}"
        )


def in_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules


DRIVE_MOUNT = Path("/content/drive")
"""Where Colab mounts Google Drive (``google.colab.drive.mount``)."""

DRIVE_RUNS = DRIVE_MOUNT / "MyDrive" / "fer_course" / "runs"
"""Where :func:`setup` keeps runs on Google Drive (on Colab, by default)."""

KAGGLE_SECRETS = ("KAGGLE_USERNAME", "KAGGLE_KEY")
"""The two Kaggle credentials ``kagglehub`` reads from the environment (and :func:`kaggle_credentials` from Colab's
secrets of the same names)."""

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
        import kagglehub  # type: ignore[import-not-found]  # optional (the kaggle extra)
    except ImportError:
        return None, "kagglehub is not installed (pip install kagglehub)"
    try:
        return Path(kagglehub.dataset_download("msambare/fer2013")), ""
    except Exception as exc:  # noqa: BLE001 - any auth/network failure is reported, not raised
        return None, f"kagglehub could not download msambare/fer2013: {type(exc).__name__}: {exc}"


def kaggle_credentials() -> str | None:
    """Where ``kagglehub`` will find Kaggle credentials (a description, never the key), or ``None``.

    In this order: ``KAGGLE_USERNAME`` and ``KAGGLE_KEY`` in the environment; a ``kaggle.json`` in
    ``$KAGGLE_CONFIG_DIR`` or ``~/.kaggle``; on Colab, the notebook's secrets of those two names (the key icon in
    Colab's left bar), which are copied into this process's environment, where ``kagglehub`` reads them. Colab
    asks once whether the notebook may read them; a missing secret or a refusal gives ``None``.
    """
    if all(os.environ.get(k) for k in KAGGLE_SECRETS):
        return "environment variables " + " / ".join(KAGGLE_SECRETS)
    folder = Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")
    if (folder / "kaggle.json").is_file():
        return "kaggle.json in " + ("$KAGGLE_CONFIG_DIR" if os.environ.get("KAGGLE_CONFIG_DIR") else "~/.kaggle")
    if in_colab():
        try:
            from google.colab import userdata  # type: ignore[import-not-found]  # only on Colab

            values = {k: userdata.get(k) for k in KAGGLE_SECRETS}
        except Exception:  # noqa: BLE001 - no such secret, access refused, or not a real Colab
            return None
        if all(values.values()):
            os.environ.update({k: str(v).strip() for k, v in values.items()})
            return "Colab secrets " + " / ".join(KAGGLE_SECRETS)
    return None


def _mount_drive() -> None:
    """Mount Google Drive at :data:`DRIVE_MOUNT` (Colab asks for permission the first time in a session)."""
    if (DRIVE_MOUNT / "MyDrive").is_dir():  # mounted earlier in this session
        return
    from google.colab import drive as gdrive  # type: ignore[import-not-found]  # only on Colab

    gdrive.mount(str(DRIVE_MOUNT))


def _local_runs() -> Path:
    """``runs/`` in the repository (a checkout), else in the current folder (a pip install)."""
    return (REPO_ROOT / "runs") if (REPO_ROOT / "pyproject.toml").exists() else Path("runs")


def runs_folder(drive: bool | None = None, runs_dir: str | os.PathLike | None = None) -> tuple[Path, bool]:
    """Where :func:`setup` keeps runs, and whether that is on Google Drive: ``(folder, on_drive)``.

    * ``runs_dir`` given: that folder.
    * On Colab with ``drive`` ``None`` (the default: "Drive on Colab, local elsewhere") or ``True``:
      :data:`DRIVE_RUNS`, after mounting Drive, so a run survives the end of the Colab session. When mounting
      fails (permission refused), ``None`` falls back to the local folder with a banner, ``True`` raises.
    * Otherwise (not on Colab, or ``drive=False``, the opt-out): the local ``runs/`` folder.

    Nothing is created here (:func:`setup` creates the folder).
    """
    if runs_dir is not None:
        return Path(runs_dir), False
    if in_colab() and drive is not False:
        try:
            _mount_drive()
        except Exception as exc:  # noqa: BLE001 - refused or failed: say so, keep the runs local
            if drive:
                raise
            print(banner(f"Google Drive was NOT mounted ({type(exc).__name__}: {exc}).\n"
                         "  Runs are kept on this Colab machine and are LOST when the session ends. To keep them, "
                         "run the\n  setup cell again and allow access to Google Drive."))
        else:
            return DRIVE_RUNS, True
    return _local_runs(), False


def setup(download: bool = True, drive: bool | None = None, runs_dir: str | os.PathLike | None = None) -> Session:
    """Prepare the session and print what was found.

    Args:
        download: on Colab, fetch FER2013 from Kaggle with ``kagglehub`` when it is not found.
        drive: where runs go (:func:`runs_folder`): ``None`` (default) keeps them on Google Drive under
            ``MyDrive/fer_course/runs`` on Colab and in the local ``runs/`` elsewhere; ``False`` keeps them local
            on Colab too (lost when the session ends); ``True`` insists on Drive on Colab.
        runs_dir: explicit folder for runs (overrides ``drive``).

    Returns:
        A :class:`Session`; ``FER2013_DIR`` is set in the environment when data was found or downloaded.
    """
    colab = in_colab()
    root = find_fer2013()
    if root is not None and not root.exists():
        root = None
    if root is None and colab:
        root = find_uploaded() or find_uploaded("/content")
    if root is None and colab and download and not is_quick():
        credentials = kaggle_credentials()
        root, why = _download_kaggle()
        if root is None:
            hint = ("" if credentials else "\n  No Kaggle credentials were found: notebook 08's cell 'Kaggle "
                    "credentials, step by step' shows how to add them.")
            print(banner(f"FER2013 NOT FOUND and the Kaggle download FAILED: {why}\n"
                         "  Without it every notebook runs on SYNTHETIC faces: its numbers say nothing about FER2013.\n"
                         + _FIX + hint))
    if root is not None:
        os.environ["FER2013_DIR"] = str(root)

    runs, on_drive = runs_folder(drive, runs_dir)
    runs.mkdir(parents=True, exist_ok=True)

    cuda = torch.cuda.is_available()
    session = Session(
        device="cuda" if cuda else "cpu",
        gpu_name=torch.cuda.get_device_name(0) if cuda else None,
        in_colab=colab,
        quick=is_quick(),
        data_root=root,
        runs_dir=runs,
        on_drive=on_drive,
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


def course_model(runs_dir: str | os.PathLike | None = None, preset: str | tuple[str, ...] = ("gpu", "colab"),
                 verbose: bool = True) -> CourseModel:
    """The model notebooks 09-11 evaluate and explain.

    Notebook 08's full run when it exists: the first ``<dir>/<preset>/best.pt`` found, for each of ``preset`` in
    turn (by default the ``gpu`` recipe, then the Colab-sized ``colab`` one) and ``dir`` ``runs_dir`` then a mounted
    Google Drive; otherwise the course's model as bundled with fer_lib (``fer_lib.pretrained("fer2013_sota_resemote_small")``,
    or the most accurate bundled model where that file is missing). The quick-mode
    toy checkpoint (``<preset>_quick``) is never used: it only shows that notebook 08's pipeline runs.
    """
    dirs = [Path(runs_dir)] if runs_dir is not None else [REPO_ROOT / "runs", Path("runs")]
    if DRIVE_RUNS.is_dir():
        dirs.append(DRIVE_RUNS)
    presets = (preset,) if isinstance(preset, str) else tuple(preset)
    path = next((d / p / "best.pt" for p in presets for d in dirs if (d / p / "best.pt").is_file()), None)
    if path is not None:
        model = load_model(path)
        desc = f"notebook 08's full run: {describe_model(model)}"
    else:
        model = pretrained(COURSE_MODEL if COURSE_MODEL in bundled_names() else None)
        path = Path(model.checkpoint_path)
        desc = (f"{describe_model(model)}; no full run of notebook 08 was found, so this is the course's model as it "
                "ships with fer_lib (fer_lib/weights/MODEL_CARD.md)")
    if verbose:
        print("model:", desc)
    return CourseModel(model=model, path=path, bundled=path.suffix == ".safetensors", description=desc)
