"""Bad inputs, round two (issue 37): run names that would leave ``--out`` or replace another run, flag values that
pass but mean nothing, an ``--out`` that cannot be written, a URL or ``-`` given to ``predict``, resuming into a new
run folder, and a data folder holding one split twice.

The catalogue's rules (as in tests/test_bad_inputs.py): the exit code, exactly one ``error:`` line on stderr with
its key phrase and no traceback, and every file and folder of the case's inputs and of its working folder
byte-identical afterwards (nothing created, changed or deleted).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from test_bad_inputs import TINY, _one_error, _run, snapshot  # the catalogue's own helpers

from fer_lib import EMOTIONS, cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A real fer_lib run folder (best.pt, last.pt): one epoch of baseline_resnet18 on 64 synthetic faces."""
    out = tmp_path_factory.mktemp("trained")
    assert cli.main(["train", *TINY, "--out", str(out), "--name", "tiny"]) == 0
    return out / "tiny"


def _file(t: Path, rel: str, content: bytes | str = b"") -> Path:
    path = t / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


def _png(t: Path, name: str, img: np.ndarray) -> Path:
    path = t / name
    cv2.imwrite(str(path), img)
    return path


def _folders(t: Path, splits=("train", "test"), per_class: int = 1, seed: int = 1) -> Path:
    """A tiny Kaggle-style ``t/fer/<split>/<class>/im<k>.png`` for every split folder name in ``splits``."""
    root = t / "fer"
    rng = np.random.default_rng(seed)
    for split in splits:
        for name in EMOTIONS:
            (root / split / name).mkdir(parents=True)
            for k in range(per_class):
                cv2.imwrite(str(root / split / name / f"im{k}.png"), rng.integers(0, 256, (48, 48), dtype=np.uint8))
    return root


def _twice(t: Path) -> Path:
    """A data folder whose ``train/`` was copied to ``Train/``: every training image twice."""
    root = _folders(t)
    shutil.copytree(root / "train", root / "Train")
    return root


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def _face(t: Path) -> Path:
    return _png(t, "face.png", np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))


C = pytest.param
CATALOGUE = [
    # run names: one plain folder name inside --out, refused before any work
    C(lambda t, ck: ["train", *TINY, "--out", t / "outA", "--name", "../escaped"], 1,
      "--name (TrainConfig.name) '../escaped' holds a path separator", id="name-escapes-out"),
    C(lambda t, ck: ["train", *TINY, "--out", t / "outA", "--name", t / "elsewhere"], 1,
      "a run name is one plain folder name inside out_dir", id="name-absolute"),
    C(lambda t, ck: ["train", *TINY, "--out", t / "outA", "--name", ".."], 1, "'..' names the current or the parent folder",
      id="name-dot-dot"),
    C(lambda t, ck: ["train", *TINY, "--out", t / "outA", "--name", ""], 1, "--name (TrainConfig.name) '' is empty",
      id="name-empty"),
    C(lambda t, ck: ["train", *TINY, "--out", ck.parent.parent / "sub", "--name", f"../{ck.parent.name}"], 1,
      "holds a path separator", id="name-replaces-another-run"),
    C(lambda t, ck: ["train", *TINY, "--out", ck.parent.parent, "--name", ck.parent.name], 1,
      "already holds best.pt and last.pt of an earlier run", id="name-taken-default-preset"),
    C(lambda t, ck: ["train", *TINY, "--out", ck.parent.parent, "--name", ck.parent.name, "--resume",
                     _copy(ck.with_name("last.pt"), t / "elsewhere" / "last.pt")], 1,
      "already holds best.pt and last.pt of an earlier run", id="resume-into-a-taken-run-folder"),
    # flag values that pass the parser but mean nothing
    C(lambda t, ck: ["ablation", "--parallel", "0", "--data", "synthetic"], 2,
      "argument --parallel: must be at least 1, got 0", id="ablation-parallel-0"),
    C(lambda t, ck: ["ablation", "--parallel", "-2", "--data", "synthetic"], 2,
      "argument --parallel: must be at least 1, got -2", id="ablation-parallel-negative"),
    C(lambda t, ck: ["ablation", "--threads", "0", "--data", "synthetic"], 2, "argument --threads: must be at least 1",
      id="ablation-threads-0"),
    C(lambda t, ck: ["ablation", "--minutes", "nan", "--data", "synthetic"], 2,
      "argument --minutes: must be a finite number of minutes > 0", id="ablation-minutes-nan"),
    C(lambda t, ck: ["train", *TINY, "--threads", "0"], 1, "--threads (TrainConfig.num_threads) must be at least 1",
      id="train-threads-0"),
    C(lambda t, ck: ["train", *TINY, "--epochs", str(10**22)], 1,
      "--epochs (TrainConfig.epochs) must be at most 100,000", id="train-epochs-10e22"),
    C(lambda t, ck: ["train", *TINY, "--max-minutes", "nan"], 1,
      "--max-minutes (TrainConfig.max_minutes) must be a finite number", id="train-max-minutes-nan"),
    C(lambda t, ck: ["train", *TINY, "--max-minutes", "inf"], 1,
      "--max-minutes (TrainConfig.max_minutes) must be a finite number", id="train-max-minutes-inf"),
    C(lambda t, ck: ["train", *TINY, "--max-minutes", "-5"], 1, "--max-minutes (TrainConfig.max_minutes) must be > 0",
      id="train-max-minutes-negative"),
    C(lambda t, ck: ["train", *TINY, "--lr", "inf"], 1, "--lr (TrainConfig.lr) must be a finite number, got inf",
      id="train-lr-inf"),
    C(lambda t, ck: ["train", *TINY, "--lr", "nan"], 1, "--lr (TrainConfig.lr) must be a finite number, got nan",
      id="train-lr-nan"),
    C(lambda t, ck: ["train", *TINY, "--lr", "0"], 1, "--lr (TrainConfig.lr) must be > 0", id="train-lr-0"),
    C(lambda t, ck: ["train", *TINY, "--lr", "-0.1"], 1, "--lr (TrainConfig.lr) must be > 0", id="train-lr-negative"),
    C(lambda t, ck: ["train", *TINY, "--seed", str(2**64)], 1,
      "--seed (TrainConfig.seed) must be an integer from 0 to 2**63 - 1", id="train-seed-too-large"),
    C(lambda t, ck: ["train", *TINY, "--seed", "-1"], 1, "--seed (TrainConfig.seed) must be an integer from 0",
      id="train-seed-negative"),
    C(lambda t, ck: ["train", *TINY, "--grad-clip", "inf"], 1, "--grad-clip (TrainConfig.grad_clip) must be a finite",
      id="train-grad-clip-inf"),
    C(lambda t, ck: ["train", *TINY, "--log-every", "-1"], 1, "--log-every (TrainConfig.log_every) must be >= 0",
      id="train-log-every-negative"),
    C(lambda t, ck: ["export", ck, "--runs", "0", "--out", t / "exports"], 1, "--runs 0: must be at least 1",
      id="export-runs-0"),
    # --out that cannot hold what the command writes
    C(lambda t, ck: ["export", ck, "--out", _file(t, "notes.txt", "keep")], 1,
      "notes.txt is a file, not a folder; pass a folder for model.ts and model.onnx", id="export-out-file"),
    C(lambda t, ck: ["export", ck, "--out", _file(t, "notes.txt", "keep") / "sub"], 1,
      "notes.txt is a file, not a folder", id="export-out-below-a-file"),
    C(lambda t, ck: ["train", *TINY, "--out", _file(t, "notes.txt", "keep") / "sub"], 1,
      "notes.txt is a file, not a folder", id="train-out-below-a-file"),
    # photos that are not files
    C(lambda t, ck: ["predict", "--checkpoint", ck, "--out", t / "out", "http://example.com/face.jpg"], 1,
      "is a URL: predict reads image files only", id="predict-url"),
    C(lambda t, ck: ["predict", "--checkpoint", ck, "--out", t / "out", _face(t), "https://example.com/b.png"], 1,
      "download the photo first", id="predict-url-after-a-photo"),
    C(lambda t, ck: ["predict", "--checkpoint", ck, "--out", t / "out", "-"], 1,
      "PHOTO '-': predict does not read standard input", id="predict-stdin-dash"),
    # a data folder holding one split twice
    C(lambda t, ck: ["evaluate", "--checkpoint", ck, "--data-root", _twice(t), "--split", "Test"], 1,
      "holds one split twice: folders Train/ and train/", id="data-split-folder-copied"),
    C(lambda t, ck: ["train", "--data", "fer2013", "--data-root", _twice(t), *TINY[2:]], 1,
      "which would each be counted twice", id="data-split-folder-copied-train"),
]


@pytest.mark.parametrize(("make", "code", "phrase"), CATALOGUE)
def test_bad_input_exits_with_one_error_line_and_changes_nothing(make, code, phrase, trained, tmp_path, capsys,
                                                                  monkeypatch):
    case = tmp_path / "case"  # the case's inputs, and its working folder: a stray write would show up here
    case.mkdir()
    monkeypatch.chdir(case)
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    ck = trained / "best.pt"
    argv = [str(a) for a in make(case, ck)]
    inputs = [case] + ([trained.parent] if any(str(trained.parent) in a for a in argv) else [])
    before = snapshot(*inputs)
    got, out, err = _run(capsys, *argv)
    assert got == code, err
    _one_error(err, phrase)
    assert snapshot(*inputs) == before
    if argv[0] in ("predict", "export"):
        assert out == "", out  # refused before any work: no JSON


# ------------------------------------------------------------------------------------- devices this build lacks

@pytest.mark.skipif(getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
                    reason="this machine has MPS")
@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_device_mps_without_mps_is_refused_before_any_work(command, trained, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [*TINY, "--device", "mps"] if command == "train" else [
        "--checkpoint", trained / "best.pt", "--data", "synthetic", "--device", "mps", "--out", tmp_path / "ev"]
    code, out, err = _run(capsys, command, *argv)
    assert code == 1
    _one_error(err, "device 'mps' asked for, but MPS", "use --device cpu or auto")
    assert list(tmp_path.iterdir()) == [] and "accuracy" not in out

    from fer_lib.inference.models import resolve_device

    with pytest.raises(ValueError, match="MPS"):
        resolve_device("mps")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_train_on_cuda_without_cuda_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(capsys, "train", *TINY, "--device", "cuda")
    assert code == 1
    _one_error(err, "CUDA is not available", "--device cpu")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------- an --out that is read-only

@pytest.fixture()
def locked(tmp_path, monkeypatch) -> Path:
    """A folder this process may not write into, as ``os.access`` reports it (a read-only folder or file system;
    running as root, ``chmod`` alone would not stop a write)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    real = os.access

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and isinstance(path, (str, os.PathLike)) and \
                Path(os.path.abspath(path)).is_relative_to(folder):
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    return folder


def _read_only_cases(ck: Path, locked: Path) -> dict[str, list]:
    return {
        "evaluate": ["evaluate", "--checkpoint", ck, "--data", "synthetic", "--out", locked / "ev"],
        "evaluate-beside-checkpoint": ["evaluate", "--checkpoint", _copy(ck, locked / "best.pt"), "--data",
                                       "synthetic"],
        "predict": ["predict", "--checkpoint", ck, "--no-detect", "--out", locked / "preds", _face(locked.parent)],
        "train": ["train", *TINY, "--out", locked],
        "demo": ["demo", *TINY, "--out", locked, "--no-explain"],
        "export": ["export", ck, "--out", locked / "exports"],
    }


@pytest.mark.parametrize("case", ["evaluate", "evaluate-beside-checkpoint", "predict", "train", "demo", "export"])
def test_an_out_that_cannot_be_written_is_refused_before_any_work(case, trained, locked, tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    argv = _read_only_cases(trained / "best.pt", locked)[case]
    before = snapshot(tmp_path)
    code, out, err = _run(capsys, *argv)
    assert code == 1, err
    _one_error(err, "cannot be written", str(locked), "read-only", "pass --out with a folder you can write to")
    assert out == "" and "model:" not in err  # nothing computed, nothing loaded
    assert snapshot(tmp_path) == before


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_really_read_only_out_is_refused_by_evaluate(trained, tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, out, err = _run(capsys, "evaluate", "--checkpoint", trained / "best.pt", "--data", "synthetic",
                              "--out", folder / "ev")
        assert code == 1 and out == ""
        _one_error(err, "cannot be written")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_predict_prints_its_json_when_writing_the_pngs_fails_later(trained, tmp_path, capsys, monkeypatch):
    """The --out check passed, then the disk filled up: one error line, exit 1, and every record still printed."""
    import fer_lib.faces

    def full_disk(image, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fer_lib.faces, "save_png", full_disk)
    photo = _face(tmp_path)
    code, out, err = _run(capsys, "predict", "--checkpoint", trained / "best.pt", "--no-detect", "--out",
                          tmp_path / "preds", photo, photo)
    assert code == 1
    _one_error(err, "cannot write", "No space left on device", "printed without their PNGs")
    records = json.loads(out)
    assert len(records) == 2 and all(r["annotated"] is None for r in records)
    assert [r["file"] for r in records] == [str(photo)] * 2 and len(records[0]["probs"]) == 7


# ------------------------------------------------------------------------------- run names and --overwrite

def test_the_demo_presets_own_run_is_replaced_but_a_named_run_is_not(tmp_path, capsys):
    from fer_lib.train import preset_config

    assert preset_config("demo").overwrite is True  # `make demo` again replaces runs/demo
    assert preset_config("demo", name="mymodel").overwrite is False
    assert preset_config("demo", name="mymodel", overwrite=True).overwrite is True
    assert preset_config("cpu", name="cpu").overwrite is False

    out = tmp_path / "runs"
    for _ in range(2):  # the demo preset's own run name: replaced without --overwrite
        code, _, err = _run(capsys, "train", *TINY, "--out", out)
        assert code == 0, err
    code, _, err = _run(capsys, "train", *TINY, "--out", out, "--name", "mymodel")
    assert code == 0, err
    before = snapshot(out)
    code, _, err = _run(capsys, "train", *TINY, "--out", out, "--name", "mymodel")
    assert code == 1
    _one_error(err, "already holds best.pt and last.pt", "--overwrite")
    assert snapshot(out) == before
    code, _, err = _run(capsys, "train", *TINY, "--out", out, "--name", "mymodel", "--overwrite")
    assert code == 0, err


def test_a_run_name_must_be_one_folder_name_in_python_too(tmp_path):
    from fer_lib.train import TrainConfig

    for bad in ("../escaped", str(tmp_path / "abs"), "a/b", "a\\b", "..", ".", "", " run"):
        with pytest.raises(ValueError, match=r"TrainConfig\.name"):
            TrainConfig(name=bad)
    assert TrainConfig(name="run-2026.12_seed1").name == "run-2026.12_seed1"


def test_ablation_run_group_refuses_parallel_below_one(tmp_path):
    from fer_lib.ablation import AblationPlan, run_group

    with pytest.raises(ValueError, match="--parallel 0: must be at least 1"):
        run_group([("baseline", None)], AblationPlan(out=tmp_path), 0)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------ resume into a new folder

class _Stop(Exception):
    """Raised after the first epoch: an interrupted two-epoch run."""


def _interrupted_run(out: Path) -> Path:
    """``out/src``: a TINY run of two epochs stopped after the first (its best.pt and last.pt are epoch 1's)."""
    from fer_lib.cli import build_parser
    from fer_lib.cli.train import config_from_args
    from fer_lib.train import train

    cfg = config_from_args(build_parser("train").parse_args(
        ["train", *TINY, "--epochs", "2", "--out", str(out), "--name", "src"]))

    def stop(epoch, row):
        raise _Stop

    with pytest.raises(_Stop):
        train(cfg, progress=False, on_epoch_end=stop)
    return out / "src"


def _checkpoints_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("checkpoints:"))


def test_resuming_into_a_new_folder_leaves_a_best_pt_there_that_is_the_best_epoch(tmp_path, capsys):
    src = _interrupted_run(tmp_path / "first")
    before = snapshot(src)
    new = tmp_path / "runs" / "cont"
    code, out, err = _run(capsys, "train", *TINY, "--epochs", "2", "--out", new.parent, "--name", new.name,
                          "--resume", src / "last.pt")
    assert code == 0, err
    assert str(new / "best.pt") in _checkpoints_line(out) and (new / "best.pt").is_file()
    history = json.loads((new / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    best = torch.load(new / "best.pt", weights_only=True)
    top = max(history, key=lambda h: h["val_acc"])
    assert best["best_val_acc"] == top["val_acc"] and best["epoch"] == top["epoch"]
    assert snapshot(src) == before  # the run resumed from is untouched


def test_resuming_a_finished_run_into_a_new_folder_copies_its_best_pt_or_says_there_is_none(trained, tmp_path,
                                                                                           capsys):
    code, out, err = _run(capsys, "train", *TINY, "--out", tmp_path / "runs", "--name", "copy", "--resume",
                          trained / "last.pt")
    assert code == 0, err
    copied = tmp_path / "runs" / "copy" / "best.pt"
    assert copied.read_bytes() == (trained / "best.pt").read_bytes()
    assert f"{copied} (best)" in _checkpoints_line(out)

    lone = _copy(trained / "last.pt", tmp_path / "lone" / "last.pt")  # its best.pt was not copied along
    code, out, err = _run(capsys, "train", *TINY, "--out", tmp_path / "runs", "--name", "cont", "--resume", lone)
    assert code == 0, err
    line = _checkpoints_line(out)
    assert not (tmp_path / "runs" / "cont" / "best.pt").exists()
    assert "(best)" not in line and "no best.pt in" in line and str(tmp_path / "runs" / "cont" / "last.pt") in line


# ------------------------------------------------------------------------------- one split in two folders

def test_two_folders_of_one_split_with_different_images_are_used_together_with_a_note(trained, tmp_path, capsys,
                                                                                        monkeypatch):
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    root = _folders(tmp_path, splits=("train", "val"))
    other = _folders(tmp_path / "more", splits=("validation",), seed=2)
    shutil.move(str(other / "validation"), str(root / "validation"))
    from fer_lib.data import load_fer2013

    data = load_fer2013(root)
    assert len(data["PublicTest"]) == 14
    assert any("folders val/ and validation/ hold the same split" in n for n in data.notes)
    code, out, err = _run(capsys, "evaluate", "--checkpoint", trained / "best.pt", "--data-root", root, "--out",
                          tmp_path / "ev")
    assert code == 0, err
    assert "hold the same split" in out and "(14 images)" in out
