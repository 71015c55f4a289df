"""Bad input at the command line: one ``error:`` line naming the problem and the fix, a non-zero exit, no traceback,
and nothing on disk lost or changed (part of the bad-input catalogue of issue 17)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fer_lib import EMOTIONS, cli
from fer_lib.train import TrainConfig


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error(err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture()
def photo(tmp_path):
    skdata = pytest.importorskip("skimage.data")
    path = tmp_path / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
    return path


def test_predict_a_folder_names_it_and_goes_on_with_the_other_photos(photo, tmp_path, capsys):
    folder = tmp_path / "holiday"
    folder.mkdir()
    code, out, err = _run(capsys, "predict", str(folder), str(photo), "--out", str(tmp_path / "o"))
    _one_error(err, "holiday is a directory, not an image", "*.jpg")
    assert code == 1 and len(json.loads(out)) == 1  # the photo after it was still predicted


def test_predict_and_train_refuse_an_out_that_is_a_file_before_any_work(photo, tmp_path, capsys):
    taken = tmp_path / "notes.txt"
    taken.write_text("keep me")
    code, out, err = _run(capsys, "predict", str(photo), "--out", str(taken))
    _one_error(err, "--out", "notes.txt is a file, not a folder")
    assert code == 1 and out == "" and taken.read_text() == "keep me"
    code, _, err = _run(capsys, "train", "--data", "synthetic", "--epochs", "1", "--out", str(taken))
    _one_error(err, "notes.txt is a file, not a folder")
    assert code == 1 and taken.read_text() == "keep me"


def test_predict_rejects_a_negative_margin(photo, capsys):
    code, out, err = _run(capsys, "predict", str(photo), "--margin", "-1")
    _one_error(err, "--margin -1.0", "between 0 and 2")
    assert code == 1 and out == ""
    from fer_lib.faces import crop_face

    with pytest.raises(ValueError, match="margin=-0.5: must be >= 0"):
        crop_face(np.zeros((100, 100), np.uint8), (10, 10, 50, 50), margin=-0.5)


def test_a_checkpoint_folder_points_at_its_best_pt(tmp_path, capsys):
    run = tmp_path / "runs" / "cpu"
    run.mkdir(parents=True)
    (run / "best.pt").write_bytes(b"")
    code, _, err = _run(capsys, "evaluate", "--checkpoint", str(run), "--data", "synthetic")
    _one_error(err, "is a directory, not a checkpoint file", "best.pt")
    assert code == 1


def test_a_kaggle_test_folder_without_prefixes_is_noted_on_stdout_and_in_the_report(tmp_path, capsys):
    root = tmp_path / "fer"
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in EMOTIONS:
            d = root / split / name
            d.mkdir(parents=True)
            for k in range(2):
                cv2.imwrite(str(d / f"im{k}.png"), rng.integers(0, 256, (48, 48), dtype=np.uint8))
    out_dir = tmp_path / "eval"
    code, out, _ = _run(capsys, "evaluate", "--data-root", str(root), "--split", "Test", "--out", str(out_dir))
    assert code == 0
    assert "note: data:" in out and "PublicTest and PrivateTest" in out
    report = json.loads((out_dir / "report.json").read_text())
    assert any("cannot be split into FER2013's PublicTest and PrivateTest" in n for n in report["notes"])


def _checkpoint(tmp_path, **changes):
    import torch

    from fer_lib.models import create_model
    from fer_lib.train import save_checkpoint

    torch.manual_seed(0)
    m = create_model("baseline_resnet18")
    state = {"model_name": m.model_name, "model_config": m.config.to_dict(), "model": m.state_dict(), **changes}
    return save_checkpoint(state, tmp_path / "best.pt")


def test_a_checkpoint_of_an_unknown_architecture_is_refused(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path, model_name="vit_huge_patch14")
    code, out, err = _run(capsys, "evaluate", "--checkpoint", str(ckpt), "--data", "synthetic")
    _one_error(err, "names model 'vit_huge_patch14'", "cannot build", "baseline_resnet18")
    assert code == 1 and "accuracy" not in out


def test_a_checkpoint_whose_weights_contradict_its_config_says_so(tmp_path, capsys):
    from fer_lib.models import create_model

    bigger = create_model("baseline_resnet34").config.to_dict()  # the config of another backbone
    ckpt = _checkpoint(tmp_path, model_config=bigger)
    code, _, err = _run(capsys, "evaluate", "--checkpoint", str(ckpt), "--data", "synthetic")
    _one_error(err, "is inconsistent", "do not match its own model_config", "missing keys")
    assert code == 1


# ------------------------------------------------------------------------------------------- the catalogue
# Every bad input of issue 17's catalogue through `fer_lib.cli.main`: the exit code, exactly one `error:` line on
# stderr (a data error may add indented hint lines below it) with its key phrase and no traceback, and every file
# and folder of the case's inputs byte-identical afterwards (nothing created, changed or deleted). Interrupted runs
# (SIGINT, SIGTERM, SIGKILL) are in tests/test_train_kill.py.

TINY = ["--data", "synthetic", "--synthetic-train", "64", "--synthetic-val", "40", "--epochs", "1", "--batch-size",
        "32", "--model", "baseline_resnet18", "--model-option", "stem=default", "--no-ema", "--no-progress"]


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file and folder under ``roots`` (a root may be a file): ``{path: sha256 of its bytes, or "dir"}``."""
    found = {}
    for root in map(Path, roots):
        for p in [root] if root.is_file() else [root, *sorted(root.rglob("*"))]:
            if p.is_dir():
                found[str(p)] = "dir"
            elif p.is_file():
                found[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return found


def test_snapshot_notices_a_new_folder_a_changed_byte_and_a_deleted_file(tmp_path):
    _file(tmp_path, "a/b.txt", "x")
    before = snapshot(tmp_path)
    (tmp_path / "new").mkdir()
    assert snapshot(tmp_path) != before
    (tmp_path / "new").rmdir()
    (tmp_path / "a/b.txt").write_text("y")
    assert snapshot(tmp_path) != before
    (tmp_path / "a/b.txt").unlink()
    assert snapshot(tmp_path) != before and snapshot(tmp_path / "missing") == {}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A real fer_lib run folder (best.pt, last.pt): one epoch of baseline_resnet18 on 64 synthetic faces."""
    out = tmp_path_factory.mktemp("trained")
    assert cli.main(["train", *TINY, "--out", str(out), "--name", "tiny"]) == 0
    return out / "tiny"


PIXELS = " ".join(str(v) for v in np.random.default_rng(0).integers(0, 256, 48 * 48))
GOOD_ROWS = [f"{k},{PIXELS},{usage}" for usage in ("Training", "PublicTest", "PrivateTest") for k in range(7)]


def _row(label="0", pixels=PIXELS, usage="PublicTest") -> str:
    return f"{label},{pixels},{usage}"


def _file(t: Path, rel: str, content: bytes | str = b"") -> Path:
    path = t / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


def _csv(t: Path, *extra: str, header: str = "emotion,pixels,Usage", rows=GOOD_ROWS) -> Path:
    """``t/data/fer2013.csv``: 21 good rows (3 per class and split) plus ``extra`` (line 23 on)."""
    return _file(t, "data/fer2013.csv", "\n".join([header, *rows, *extra]) + "\n")


def _folders(t: Path, extra: dict | None = None) -> Path:
    """A tiny Kaggle-style ``t/fer/{train,test}/<class>/im0.png`` plus ``extra`` ``{relative path: bytes}``."""
    root = t / "fer"
    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        for name in EMOTIONS:
            (root / split / name).mkdir(parents=True)
            cv2.imwrite(str(root / split / name / "im0.png"), rng.integers(0, 256, (48, 48), dtype=np.uint8))
    for rel, content in (extra or {}).items():
        _file(root, rel, content)
    return root


def _png(t: Path, name: str, img: np.ndarray) -> Path:
    path = t / name
    cv2.imwrite(str(path), img)
    return path


class _Hostile:
    """Unpickling this runs ``os.mkdir(marker)``: what a pickled checkpoint can do to whoever loads it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _ckpt(t: Path, ck: Path, name="edited.pt", **changes) -> Path:
    """A copy of the real checkpoint ``ck`` with ``changes`` applied to its dict."""
    state = torch.load(ck, weights_only=True)
    torch.save({**state, **changes}, t / name)
    return t / name


def _other_config() -> dict:
    """The model config of another backbone (baseline_resnet34), for weights that do not match it."""
    from fer_lib.models import create_model

    return create_model("baseline_resnet34", stem="default").config.to_dict()


def _save(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def _evaluate(ck, root, *flags):
    return ["evaluate", "--checkpoint", ck, "--data-root", root, *flags]


def _train_on(root, *flags):
    return ["train", "--data", "fer2013", "--data-root", root, *flags]


C = pytest.param
CATALOGUE = [
    # malformed CSVs
    C(lambda t, ck: _evaluate(ck, _file(t, "data/fer2013.csv")), 1, "fer2013.csv is empty (0 bytes)",
      id="csv-0-bytes"),
    C(lambda t, ck: _evaluate(ck, _file(t, "data/fer2013.csv").parent), 1, "fer2013.csv is empty (0 bytes)",
      id="csv-0-bytes-in-folder"),
    C(lambda t, ck: _evaluate(ck, _csv(t, header="label,image,split")), 1, "is not a FER2013 CSV",
      id="csv-wrong-header"),
    C(lambda t, ck: _train_on(_csv(t, header="a,b,c").parent), 1, "fer2013.csv is not a FER2013 CSV",
      id="csv-wrong-header-in-folder"),
    C(lambda t, ck: _evaluate(ck, _file(t, "data/fer2013.csv", bytes(range(256)) * 8)), 1, "is not a FER2013 CSV",
      id="csv-binary-garbage"),
    C(lambda t, ck: _evaluate(ck, _file(t, "data/fer2013.zip", b"PK\x03\x04junk")), 1, "unzip archives first",
      id="csv-zip-archive"),
    C(lambda t, ck: _evaluate(ck, _csv(t, rows=[])), 1, "holds no data rows, only a header", id="csv-header-only"),
    C(lambda t, ck: _evaluate(ck, _csv(t, _row(pixels="1 2 3"))), 1, "fer2013.csv:23: pixels has 3 values, expected 2304",
      id="csv-wrong-pixel-count"),
    C(lambda t, ck: _evaluate(ck, _csv(t, _row(pixels="12.7 " + PIXELS.split(" ", 1)[1]))), 1,
      "pixel value '12.7' is not an integer 0-255", id="csv-pixel-12.7"),
    C(lambda t, ck: _evaluate(ck, _csv(t, _row(pixels=" ".join(["300"] * 2304)))), 1,
      "pixel values must be 0-255, found 300..300", id="csv-pixel-300"),
    C(lambda t, ck: _evaluate(ck, _csv(t, _row(label="9"))), 1, "emotion 9 is outside 0-6", id="csv-label-9"),
    C(lambda t, ck: _train_on(_csv(t, _row(label="9"))), 1, "--on-error skip", id="csv-label-9-train"),
    C(lambda t, ck: _evaluate(ck, _csv(t, _row(label="happy"))), 1, "emotion 'happy' is not an integer 0-6",
      id="csv-label-not-a-number"),
    C(lambda t, ck: _evaluate(ck, _csv(t, _row(usage="Validation"))), 1, "unknown Usage 'Validation'",
      id="csv-unknown-usage"),
    C(lambda t, ck: _evaluate(ck, _csv(t, "3,1 2 3")), 1, "has 2 fields, expected 3", id="csv-missing-field"),
    C(lambda t, ck: _evaluate(ck, _csv(t, *[_row(label="7")] * 7)), 1, "7 malformed item(s)", id="csv-many-bad-rows"),
    C(lambda t, ck: _evaluate(ck, _csv(t, rows=[_row(label="9")]), "--on-error", "skip"), 1,
      "holds no usable images: all 1 items are malformed", id="csv-every-row-bad-skipped"),
    # odd folders and images
    C(lambda t, ck: _evaluate(ck, t / "no_such_folder"), 1, "not found at", id="folder-missing"),
    C(lambda t, ck: _train_on(t / "no_such_folder"), 1, "no_such_folder does not exist", id="folder-missing-train"),
    C(lambda t, ck: _evaluate(ck, _file(t, "empty/.keep").parent), 1, "no FER2013 data found in", id="folder-empty"),
    C(lambda t, ck: _train_on(_file(t, "fer/train/happy/readme.txt", "x").parents[2]), 1, "no images found under",
      id="folder-class-without-images"),
    C(lambda t, ck: _train_on(_folders(t) / "train"), 1, "no FER2013 data found in", id="folder-split-given"),
    C(lambda t, ck: _evaluate(ck, _folders(t, {"train/joyful/a.png": cv2.imencode(".png", np.zeros((48, 48)))[1]
                                                .tobytes()})), 1, "unknown class folder 'joyful'",
      id="folder-unknown-class"),
    C(lambda t, ck: _evaluate(ck, _folders(t, {"train/happy/z.png": b""})), 1,
      "train/happy/z.png: empty file (0 bytes)", id="image-0-bytes"),
    C(lambda t, ck: _evaluate(ck, _folders(t, {"train/sad/z.jpg": b"\xff\xd8\xff\xe0" + b"garbage" * 20})), 1,
      "train/sad/z.jpg: unreadable (not a valid image file)", id="image-corrupt-jpeg"),
    C(lambda t, ck: _train_on(_folders(t, {"test/fear/z.png": b"this is text, not a PNG"})), 1,
      "test/fear/z.png: unreadable", id="image-text-named-png"),
    C(lambda t, ck: _evaluate(ck, _file(t, "fer/train/happy/a.png", cv2.imencode(".png", np.zeros((48, 48)))[1]
                                        .tobytes()).parents[2], "--split", "PublicTest"), 1,
      "no split 'PublicTest'", id="folder-split-absent"),
    # broken and hostile checkpoints
    C(lambda t, ck: ["evaluate", "--checkpoint", _file(t, "best.pt"), "--data-root", _csv(t)], 1,
      "is not a readable fer_lib checkpoint", id="ckpt-0-bytes"),
    C(lambda t, ck: ["evaluate", "--checkpoint", _file(t, "best.pt", ck.read_bytes()[:5000]), "--data-root", _csv(t)],
      1, "is not a readable fer_lib checkpoint", id="ckpt-truncated"),
    C(lambda t, ck: ["predict", "--checkpoint", _file(t, "best.pt", "not a checkpoint"), _png(t, "a.png", np.zeros(
        (64, 64), np.uint8))], 1, "is not a readable fer_lib checkpoint", id="ckpt-text-file"),
    C(lambda t, ck: ["evaluate", "--checkpoint", _ckpt(t, ck, hook=_Hostile(str(t / "PWNED"))), "--data-root",
                     _csv(t)], 1, "holds pickled objects", id="ckpt-hostile-pickle"),
    C(lambda t, ck: ["evaluate", "--checkpoint", _ckpt(t, ck, config=TrainConfig()),
                     "--data-root", _csv(t)], 1, "fer_lib never unpickles arbitrary objects", id="ckpt-not-weights-only"),
    C(lambda t, ck: ["evaluate", "--checkpoint", _save(t / "sd.pt", torch.load(ck, weights_only=True)["model"]),
                     "--data-root", _csv(t)], 1, "is not a fer_lib checkpoint: it needs keys", id="ckpt-bare-state-dict"),
    C(lambda t, ck: ["evaluate", "--checkpoint", _ckpt(t, ck, model_name="vit_huge_patch14"), "--data-root",
                     _csv(t)], 1, "names model 'vit_huge_patch14'", id="ckpt-unknown-architecture"),
    C(lambda t, ck: ["evaluate", "--checkpoint", _ckpt(t, ck, model_config=_other_config()), "--data-root",
                     _csv(t)], 1, "do not match its own model_config", id="ckpt-weights-not-matching-config"),
    C(lambda t, ck: ["evaluate", "--checkpoint", ck.parent, "--data-root", _csv(t)], 1,
      "is a directory, not a checkpoint file", id="ckpt-directory"),
    C(lambda t, ck: ["predict", "--checkpoint", ck.parent, _png(t, "a.png", np.zeros((64, 64), np.uint8))], 1,
      "is a directory, not a checkpoint file", id="ckpt-directory-predict"),
    C(lambda t, ck: ["evaluate", "--checkpoint", t / "runs/cpu/best.pt", "--data-root", _csv(t)], 1,
      "best.pt does not exist", id="ckpt-missing"),
    C(lambda t, ck: ["evaluate", "--checkpoint", _file(t, "model.safetensors", b"garbage"), "--data-root", _csv(t)],
      1, "is not a readable safetensors file", id="ckpt-bad-safetensors"),
    C(lambda t, ck: ["train", *TINY, "--out", t / "runs", "--resume", ck], 1, "holds the weights only",
      id="resume-from-best-pt"),
    C(lambda t, ck: ["train", *TINY, "--batch-size", "16", "--out", t / "runs", "--resume", ck.with_name("last.pt")],
      1, "the recipe differs in {'batch_size': (16, 32)}", id="resume-other-recipe"),
    C(lambda t, ck: ["train", *TINY, "--out", ck.parent.parent, "--name", ck.parent.name, "--no-overwrite"], 1,
      "already holds best.pt and last.pt of an earlier run", id="run-name-taken"),
    # odd photos
    C(lambda t, ck: ["predict", "--checkpoint", ck, "--out", t / "out", _png(t, "grey.png", np.full((200, 200, 3),
                                                                                                   128, np.uint8))],
      2, "no face found in", id="photo-one-colour"),
    C(lambda t, ck: ["predict", "--checkpoint", ck, "--out", t / "out", _png(t, "tiny.png", np.zeros((4, 4),
                                                                                                   np.uint8))],
      2, "no face found in", id="photo-4x4"),
    C(lambda t, ck: ["predict", "--checkpoint", ck, "--out", t / "out", _file(t, "photo.jpg", "not a JPEG")], 1,
      "cannot read image", id="photo-unreadable"),
    C(lambda t, ck: ["predict", "--checkpoint", ck, "--out", t / "out", _file(t, "photo.jpg")], 1,
      "photo.jpg: empty file (0 bytes)", id="photo-0-bytes"),
    C(lambda t, ck: ["predict", "--checkpoint", ck, "--out", t / "out", t / "nope.jpg"], 1, "no such image file",
      id="photo-missing"),
    C(lambda t, ck: ["predict", "--checkpoint", ck, "--out", t / "out", _file(t, "album/.keep").parent], 1,
      "is a directory, not an image", id="photo-directory"),
    # bad flags
    C(lambda t, ck: ["evaluate", "--checkpoint", ck, "--data-root", _csv(t), "--batch-size", "0"], 1,
      "--batch-size 0: must be a positive number", id="evaluate-batch-size-0"),
    C(lambda t, ck: ["train", "--data", "synthetic", "--epochs", "-1"], 1, "--epochs (TrainConfig.epochs) must be > 0",
      id="train-epochs-negative"),
    C(lambda t, ck: ["train", "--data", "synthetic", "--batch-size", "0"], 1, "--batch-size (TrainConfig.batch_size)",
      id="train-batch-size-0"),
    C(lambda t, ck: ["train", "--data", "synthetic", "--lr", "abc"], 2, "expected float, got 'abc'", id="train-lr-abc"),
    C(lambda t, ck: ["train", "--data", "synthetic", "--epochs", "three"], 2, "expected int, got 'three'",
      id="train-epochs-word"),
    C(lambda t, ck: ["train", "--optimizer", "adam"], 2, "invalid choice: 'adam'", id="train-unknown-choice"),
    C(lambda t, ck: ["train", "--on-error", "maybe"], 2, "invalid choice: 'maybe'", id="train-on-error-unknown"),
    C(lambda t, ck: ["evaluate", "--on-error", "maybe"], 2, "invalid choice: 'maybe'", id="evaluate-on-error-unknown"),
    C(lambda t, ck: ["evaluate", "--tta", "huge"], 2, "invalid choice: 'huge'", id="evaluate-unknown-tta"),
    C(lambda t, ck: ["evaluate", "--no-such-flag"], 2, "unrecognized arguments: --no-such-flag", id="unknown-flag"),
    C(lambda t, ck: ["trian"], 2, "invalid choice: 'trian'", id="unknown-command"),
    C(lambda t, ck: ["train", "--preset", "fast"], 1, "unknown preset 'fast'", id="train-unknown-preset"),
    C(lambda t, ck: ["train", "--data", "synthetic", "--model", "vit_huge"], 1, "unknown model 'vit_huge'",
      id="train-unknown-model"),
    C(lambda t, ck: ["train", "--model-option", "cbam"], 1, "KEY=VALUE", id="train-model-option-without-value"),
    C(lambda t, ck: ["evaluate", "--checkpoint", ck, "--data-root", _csv(t), "--device", "tpu"], 1,
      "'tpu' is not a device name", id="evaluate-unknown-device"),
    C(lambda t, ck: ["predict", "--checkpoint", ck, "--margin", "-1", _png(t, "a.png", np.zeros((64, 64), np.uint8))],
      1, "--margin -1.0: must be between 0 and 2", id="predict-negative-margin"),
    C(lambda t, ck: ["predict", "--checkpoint", ck, "--top-k", "9", _png(t, "a.png", np.zeros((64, 64), np.uint8))],
      1, "--top-k 9: must be between 1 and 7", id="predict-top-k-9"),
    C(lambda t, ck: ["predict", "--checkpoint", ck, "--out", _file(t, "notes.txt", "keep"), _png(
        t, "a.png", np.zeros((64, 64), np.uint8))], 1, "notes.txt is a file, not a folder", id="predict-out-file"),
    C(lambda t, ck: ["train", *TINY, "--out", _file(t, "notes.txt", "keep")], 1, "notes.txt is a file, not a folder",
      id="train-out-file"),
    C(lambda t, ck: ["evaluate", "--checkpoint", ck, "--data-root", _csv(t), "--out", _file(t, "notes.txt", "keep")],
      1, "notes.txt is a file, not a folder", id="evaluate-out-file"),
    C(lambda t, ck: ["evaluate", "--checkpoint", ck, "--data-root", _csv(t), "--split", "validation2"], 1,
      "no split 'validation2'", id="evaluate-unknown-split"),
    C(lambda t, ck: ["train", *TINY, "--out", t / "runs", "--val-split", "bogus"], 1, "no split 'bogus'",
      id="train-unknown-split"),
]


def run_case(make, code, phrase, trained, tmp_path, capsys, monkeypatch) -> tuple[list[str], str]:
    """Run one catalogue case in a fresh working folder and check the catalogue's rules: exit code ``code``, one
    ``error:`` line holding ``phrase``, no traceback, inputs and working folder byte-identical. Returns
    ``(argv, stdout)``."""
    case = tmp_path / "case"  # the case's inputs, and its working folder: a stray write would show up here
    case.mkdir()
    monkeypatch.chdir(case)
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))  # a data root that loads may fill its cache
    ck = trained / "best.pt"
    argv = [str(a) for a in make(case, ck)]
    inputs = [case] + ([trained.parent] if any(str(trained.parent) in a for a in argv) else [])
    before = snapshot(*inputs)
    got, out, err = _run(capsys, *argv)
    assert got == code, err
    _one_error(err, phrase)
    assert snapshot(*inputs) == before
    return argv, out


@pytest.mark.parametrize(("make", "code", "phrase"), CATALOGUE)
def test_bad_input_exits_with_one_error_line_and_changes_nothing(make, code, phrase, trained, tmp_path, capsys,
                                                                  monkeypatch):
    run_case(make, code, phrase, trained, tmp_path, capsys, monkeypatch)


@pytest.mark.parametrize("command", ["train", "demo"])
def test_on_error_skip_trains_and_lists_the_skipped_row_in_skipped_json(command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    data = _csv(tmp_path, _row(label="9"))
    before = snapshot(data)
    argv = _train_on(data, "--on-error", "skip", *TINY[2:], "--batch-size", "8", "--out", tmp_path / "runs",
                     "--name", "sk")
    argv[0] = command
    code, out, err = _run(capsys, *argv, *(["--no-explain", "--tta", "none"] if command == "demo" else []))
    assert code == 0, err
    assert [ln for ln in out.splitlines() if ln.startswith("skipped ")] == [
        f"skipped 1 malformed data item(s) (--on-error skip), e.g. fer2013.csv:23: emotion 9 is outside 0-6; all "
        f"listed in {tmp_path / 'runs' / 'sk' / 'skipped.json'}"]
    skipped = json.loads((tmp_path / "runs" / "sk" / "skipped.json").read_text())
    assert skipped == [{"item": "fer2013.csv:23", "reason": "emotion 9 is outside 0-6"}]
    assert snapshot(data) == before


def test_on_error_skip_evaluates_and_lists_the_skipped_row_in_the_report(trained, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    data = _csv(tmp_path, _row(pixels="1 2 3"), _row(usage="Validation"))
    before = snapshot(data)
    code, out, err = _run(capsys, *_evaluate(trained / "best.pt", data, "--on-error", "skip", "--out", tmp_path / "ev"))
    assert code == 0, err
    assert "skipped: 2 malformed data item(s)" in out and "error" not in err
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["n"] == 7 and report["skipped"] == [
        {"item": "fer2013.csv:23", "reason": "pixels has 3 values, expected 2304 (48x48)"},
        {"item": "fer2013.csv:24", "reason": "unknown Usage 'Validation' (expected Training, PublicTest or PrivateTest)"}]
    assert snapshot(data) == before


def test_odd_but_valid_images_load_and_are_noted(trained, tmp_path, capsys, monkeypatch):
    """An RGBA PNG (composited on white, as predict does: tests/test_data_loaders.py) and a 96x96 image count."""
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    rgba = np.zeros((48, 48, 4), np.uint8)  # fully transparent
    big = np.random.default_rng(2).integers(0, 256, (96, 96), dtype=np.uint8)
    root = _folders(tmp_path, {"test/happy/rgba.png": cv2.imencode(".png", rgba)[1].tobytes(),
                               "test/sad/big.png": cv2.imencode(".png", big)[1].tobytes()})
    before = snapshot(root)
    with pytest.warns(UserWarning, match="resized 1 image"):
        code, out, err = _run(capsys, *_evaluate(trained / "best.pt", root, "--split", "Test", "--out",
                                                tmp_path / "ev"))
    assert code == 0, err
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["n"] == 9 and report["skipped"] == []
    assert any("resized 1 image(s)" in n for n in report["notes"]) and "resized 1 image(s)" in out
    assert snapshot(root) == before
