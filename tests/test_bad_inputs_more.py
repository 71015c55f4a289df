"""Bad inputs, round two (issue 37): run names that would leave ``--out`` or replace another run, flag values that
pass but mean nothing, an ``--out`` that cannot be written, a URL or ``-`` given to ``predict``, resuming into a new
run folder, a data folder holding one split twice, and photos and the Python API (empty arrays, raw pixels given to a
model, small faces in a group photo, a photo above PIL's decompression-bomb limit).

The catalogue's rules (as in tests/test_bad_inputs.py): the exit code, exactly one ``error:`` line on stderr with
its key phrase and no traceback, and every file and folder of the case's inputs and of its working folder
byte-identical afterwards (nothing created, changed or deleted).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from test_bad_inputs import TINY, _one_error, _run, run_case, snapshot  # the catalogue's own helpers

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
    C(lambda t, ck: ["ablation", "--parallel", "two", "--data", "synthetic"], 2,
      "argument --parallel: expected a whole number >= 1, got 'two'", id="ablation-parallel-text"),
    C(lambda t, ck: ["ablation", "--minutes", "soon", "--data", "synthetic"], 2,
      "argument --minutes: expected minutes (a number > 0), got 'soon'", id="ablation-minutes-text"),
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
    # the smallest face to look for
    C(lambda t, ck: ["predict", "--checkpoint", ck, "--out", t / "out", "--min-face", "5", _face(t)], 1,
      "--min-face 5: must be at least 12 pixels", id="predict-min-face-too-small"),
    C(lambda t, ck: ["predict", "--checkpoint", ck, "--out", t / "out", "--min-face", "20", "--no-detect", _face(t)],
      1, "--min-face 20 with --no-detect", id="predict-min-face-without-detection"),
    C(lambda t, ck: ["predict", "--checkpoint", ck, "--out", t / "out", "--min-face", "tiny", _face(t)], 2,
      "argument --min-face: invalid int value: 'tiny'", id="predict-min-face-not-a-number"),
    # a data folder holding one split twice
    C(lambda t, ck: ["evaluate", "--checkpoint", ck, "--data-root", _twice(t), "--split", "Test"], 1,
      "holds one split twice: folders Train/ and train/", id="data-split-folder-copied"),
    C(lambda t, ck: ["train", "--data", "fer2013", "--data-root", _twice(t), *TINY[2:]], 1,
      "which would each be counted twice", id="data-split-folder-copied-train"),
]


@pytest.mark.parametrize(("make", "code", "phrase"), CATALOGUE)
def test_bad_input_exits_with_one_error_line_and_changes_nothing(make, code, phrase, trained, tmp_path, capsys,
                                                                  monkeypatch):
    argv, out = run_case(make, code, phrase, trained, tmp_path, capsys, monkeypatch)
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


# ------------------------------------------------------------------------- photos and the Python API: empty arrays

@pytest.fixture(scope="module")
def model():
    """An untrained baseline: these cases are about what reaches it, not what it answers."""
    from fer_lib.models import create_model

    torch.manual_seed(0)
    return create_model("baseline_resnet18").eval()


EMPTY = [C(np.zeros((0, 0)), id="0x0-float"), C(np.zeros((0, 48, 48), np.uint8), id="0-faces-uint8"),
         C(np.zeros((10, 0, 3)), id="10x0x3-float"), C(np.zeros((48, 0), np.uint8), id="48x0-uint8")]


@pytest.mark.parametrize("empty", EMPTY)
def test_an_empty_array_given_as_a_photo_is_one_clear_value_error(empty, model):
    from fer_lib.faces import face_crops, load_image, predict_faces

    shape = re.escape(str(empty.shape))
    for call in (lambda: predict_faces(model, empty), lambda: predict_faces(model, empty, detect=False),
                 lambda: face_crops(empty), lambda: load_image(empty)):
        with pytest.raises(ValueError, match=rf"image array of shape {shape} is empty \(no pixels\); pass a photo"):
            call()
    with pytest.raises(ValueError, match=r"image of 0x0 pixels is empty"):
        load_image(Image.new("RGB", (0, 0)))


@pytest.mark.parametrize(("empty", "what"), [
    (np.zeros((0, 0)), "an image without pixels"), (np.zeros((0, 48, 48), np.uint8), "no images"),
    (np.zeros((10, 0, 3)), "images without pixels"), (torch.zeros(0, 1, 48, 48, dtype=torch.uint8), "no images"),
    (np.zeros((3, 48, 0), np.uint8), "images without pixels")])
def test_preprocess_refuses_an_empty_array_naming_its_shape(empty, what):
    from fer_lib.data import preprocess

    with pytest.raises(ValueError, match=rf"preprocess got {what}.*shape {re.escape(str(tuple(empty.shape)))}; "
                                         r"pass uint8 faces .* of at least 1"):
        preprocess(empty)


def test_predict_proba_and_classify_faces_refuse_empty_faces(model):
    from fer_lib.faces import classify_faces
    from fer_lib.inference import predict_proba

    with pytest.raises(ValueError, match="no images given"):
        predict_proba(model, np.zeros((0, 48, 48), np.uint8))
    with pytest.raises(ValueError, match=r"preprocess got images without pixels"):  # uint8: preprocess says so
        predict_proba(model, np.zeros((10, 0, 3), np.uint8))
    with pytest.raises(ValueError, match=r"got \[10, 1, 0, 3\]: images without pixels"):  # floats: the model does
        predict_proba(model, np.zeros((10, 0, 3)))
    with pytest.raises(ValueError, match=r"classify_faces: no faces given \(an array of shape \(0, 48, 48\)\)"):
        classify_faces(model, np.zeros((0, 48, 48), np.uint8))


def test_a_batch_of_faces_given_as_a_photo_points_to_predict_proba(model):
    from fer_lib.faces import predict_faces

    with pytest.raises(ValueError, match=r"image array of shape \(2, 48, 48\): expected \[H, W\] grayscale, .*; "
                                         r"a batch of cropped faces \[N, 48, 48\] goes to "
                                         r"fer_lib\.inference\.predict_proba"):
        predict_faces(model, np.zeros((2, 48, 48), np.uint8))


# ------------------------------------------------------------------------- raw pixels given straight to a model

def test_a_model_given_raw_pixels_says_to_preprocess_them(model):
    import fer_lib
    from fer_lib.data import preprocess

    faces = np.random.default_rng(0).integers(0, 256, (2, 48, 48), dtype=np.uint8)
    raw = [(faces, "got a numpy.ndarray"), (faces[:, None], "got a numpy.ndarray"),
           (torch.from_numpy(faces)[:, None], "got a torch.uint8 tensor"),
           (torch.from_numpy(faces)[:, None].long(), "got a torch.int64 tensor"),
           (preprocess(faces).numpy(), "got a numpy.ndarray")]  # even normalised: a model takes a tensor
    bundled = fer_lib.pretrained()
    for net in (model, bundled):
        chans = net.config.in_chans
        with torch.no_grad():
            assert net(preprocess(faces, channels=chans)).shape == (2, 7)  # the way that works
            for x, got in raw:
                with pytest.raises(TypeError, match=rf"{got}, but a model takes float input .* "
                                                    rf"fer_lib\.data\.preprocess\(images, channels={chans}\)"):
                    net(x)
    with torch.no_grad(), pytest.raises(ValueError, match=r"images without pixels"):
        model(torch.zeros(2, 1, 48, 0))


# ----------------------------------------------------------------------------------- small faces in a group photo

# the astronaut's face centre in _group_photo: (225, 117) of its 512x512 photo, halved, plus (600, 400)
FACE_AT = (712, 458)


def _group_photo() -> np.ndarray:
    """A 1600x1200 photo whose only face (scikit-image's astronaut at 256 px: a face about 50 px wide) is below the
    default smallest face, 6% of the shorter side of the copy shrunk to 1024x768 (46 px there, 72 px here)."""
    skdata = pytest.importorskip("skimage.data")
    # a textured background, as photos have (a flat one would let histogram equalisation crush the face's contrast)
    noise = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    canvas = cv2.resize(noise, (1600, 1200), interpolation=cv2.INTER_CUBIC)
    canvas[400:656, 600:856] = cv2.resize(skdata.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    return canvas


def _holds_the_face(box) -> bool:
    x, y, w, h = box
    return x <= FACE_AT[0] <= x + w and y <= FACE_AT[1] <= y + h and 25 <= w <= 100


def test_a_small_face_in_a_group_photo_is_found_with_min_face_and_the_hint_names_it(model):
    from fer_lib.faces import NoFaceError, available_backends, predict_faces, smallest_face

    if not available_backends():
        pytest.skip("no face detector")
    photo = _group_photo()
    assert smallest_face(photo.shape) == 72  # ceil(46 / 0.64)
    with pytest.raises(NoFaceError, match=r"no face found in the image \(faces of 72 pixels and more were looked "
                                          r"for\); for smaller faces, e\.g\. in a group photo, pass min_face=36 "
                                          r"\(--min-face 36\); for an already cropped face, detect=False"):
        predict_faces(model, photo)
    found = predict_faces(model, photo, min_face=36)  # what the hint says finds the face
    assert any(_holds_the_face(p.box) for p in found), [p.box for p in found]
    assert smallest_face(photo.shape, min_face=36) == 36


def test_min_face_refuses_what_it_cannot_do(model):
    from fer_lib.detect import MAX_SEARCH_SIDE, MIN_FACE, detect_faces, smallest_face
    from fer_lib.faces import NoFaceError, available_backends, predict_faces

    if not available_backends():
        pytest.skip("no face detector")
    photo = np.full((200, 300, 3), 128, np.uint8)
    for bad in (5, 0, -3, float("nan"), float("inf"), "big", True):
        with pytest.raises(ValueError, match=rf"min_face=.* \(--min-face\): must be a number of pixels, at least "
                                             rf"{MIN_FACE}"):
            predict_faces(model, photo, min_face=bad)
    huge = np.zeros((3000, 5000), np.uint8)  # 12-pixel faces would mean searching a copy far above 4096 pixels
    with pytest.raises(ValueError, match=rf"at most {MAX_SEARCH_SIDE} pixels a side\); pass min_face=\d+") as e:
        detect_faces(huge, min_face=12)
    lowest = int(re.search(r"pass min_face=(\d+) \(--min-face \1\) or more", str(e.value)).group(1))
    assert smallest_face(huge.shape, min_face=lowest) == lowest  # the size it names works
    with pytest.raises(NoFaceError, match="a larger, frontal, well-lit photo"):  # a 4x4 photo: min_face cannot help
        predict_faces(model, np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"detect_faces: an image of shape \(0, 5\) has no pixels"):
        detect_faces(np.zeros((0, 5), np.uint8))


def test_predict_min_face_finds_the_small_face_and_no_face_names_the_flag(trained, tmp_path, capsys, monkeypatch):
    from fer_lib.faces import MIN_FACE, available_backends, smallest_face

    if not available_backends():
        pytest.skip("no face detector")
    monkeypatch.chdir(tmp_path)
    group = _png(tmp_path, "group.png", cv2.cvtColor(_group_photo(), cv2.COLOR_RGB2BGR))
    code, out, err = _run(capsys, "predict", "--checkpoint", trained / "best.pt", "--out", tmp_path / "o",
                          "--min-face", "36", group)
    assert code == 0, err
    assert any(_holds_the_face(r["box"]) for r in json.loads(out)), out

    # 12-px faces: a copy above 4096 px with every detector (its smallest window: 20 to 40 px)
    strip = _png(tmp_path, "strip.png", np.full((60, 3000), 200, np.uint8))
    code, out, err = _run(capsys, "predict", "--checkpoint", trained / "best.pt", "--out", tmp_path / "o",
                          "--min-face", "12", strip)
    assert code == 1 and json.loads(out) == []
    _one_error(err, "min_face=12 (--min-face): faces that small in this 3000x60 photo", "at most 4096 pixels a side",
               "or crop the photo around the faces first")

    blank = _png(tmp_path, "wall.png", np.full((480, 640), 200, np.uint8))
    code, out, err = _run(capsys, "predict", "--checkpoint", trained / "best.pt", "--out", tmp_path / "o", blank)
    assert code == 2 and json.loads(out) == []
    suggest = max(MIN_FACE, smallest_face((480, 640)) // 2)
    _one_error(err, "no face found in", "wall.png", f"--min-face {suggest}", "--no-detect")
    assert "a larger" not in err


# ------------------------------------------------------------------- a photo above PIL's decompression-bomb limit

def _print_warnings(message, category, filename, lineno, file=None, line=None):
    """Print a warning as Python does outside pytest (which records them instead): through warnings.formatwarning,
    the CLI's one-line form while it runs, to stderr."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@pytest.fixture()
def bombs(tmp_path, monkeypatch) -> Path:
    """``photos/big.png`` (144 pixels) and ``photos/huge.png`` (256 pixels) under PIL's limit lowered to 100 pixels:
    PIL warns above 100 pixels and refuses above 200, as it does above about 89 and 179 megapixels by default."""
    folder = tmp_path / "case" / "photos"
    folder.mkdir(parents=True)
    _png(folder, "big.png", np.full((12, 12), 128, np.uint8))
    _png(folder, "huge.png", np.full((16, 16), 128, np.uint8))
    monkeypatch.chdir(folder.parent)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    return folder


def test_a_photo_above_pils_limit_warns_in_one_line_naming_it_and_above_twice_is_refused(bombs):
    from fer_lib.faces import ImageReadError, load_image

    with pytest.warns(Image.DecompressionBombWarning) as got:
        rgb = load_image(Path("photos/big.png"))
    assert rgb.shape == (12, 12, 3)
    assert len(got) == 1, [str(w.message) for w in got]  # PIL's own warning, naming no photo, is not shown as well
    message = str(got[0].message)
    assert message.startswith("photo photos/big.png is large (12x12 pixels, above PIL's decompression-bomb limit of "
                              "100)") and "Scale it down" in message and str(bombs) not in message
    assert Path(got[0].filename).name == Path(__file__).name  # attributed to the caller, not to PIL's source file
    with pytest.raises(ImageReadError, match=r"cannot read image photos/huge\.png: it has more than 200 pixels, "
                                             r"which PIL refuses to decode .*scale the photo down"):
        load_image("photos/huge.png")


def test_predict_says_the_decompression_bomb_warning_in_one_line_without_a_path(bombs, trained, tmp_path, capsys):
    before = snapshot(bombs.parent)
    with warnings.catch_warnings():
        warnings.simplefilter("always", Image.DecompressionBombWarning)
        warnings.showwarning = _print_warnings  # restored when the block ends
        code, out, err = _run(capsys, "predict", "--checkpoint", trained / "best.pt", "--no-detect", "--out",
                              tmp_path / "preds", "photos/big.png", "photos/huge.png")
    assert code == 1  # huge.png is unreadable; big.png was predicted
    _one_error(err, "cannot read image photos/huge.png: it has more than 200 pixels")
    said = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert len(said) == 1 and said[0].startswith("warning: photo photos/big.png is large (12x12 pixels"), err
    assert str(tmp_path) not in err and "Image.py" not in err and "DecompressionBombWarning" not in err, err
    assert [r["file"] for r in json.loads(out)] == ["photos/big.png"]
    assert snapshot(bombs.parent) == before
