"""Bad input at the command line: one ``error:`` line naming the problem and the fix, a non-zero exit, no traceback,
and nothing on disk lost or changed (part of the bad-input catalogue of issue 17)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from fer_lib import EMOTIONS, cli

skdata = pytest.importorskip("skimage.data")


def _run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error(err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture()
def photo(tmp_path):
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
