"""``python -m fer_lib predict``: JSON on stdout, PNGs written, exit 2 without a face, clear checkpoint errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from fer_lib import EMOTIONS
from fer_lib.cli import main
from fer_lib.faces import available_backends

skdata = pytest.importorskip("skimage.data")
pytestmark = pytest.mark.skipif(not available_backends(), reason="no face detector (OpenCV Haar or scikit-image)")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained but complete checkpoint (the CLI's job is plumbing, not accuracy)."""
    from fer_lib.models import create_model
    from fer_lib.train import save_checkpoint

    torch.manual_seed(0)
    model = create_model("baseline_resnet18")
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    save_checkpoint({"format": "fer_lib.checkpoint/1", "model_name": model.model_name,
                     "model_config": model.config.to_dict(), "model": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    Image.fromarray(skdata.astronaut()).save(d / "astronaut.jpg", quality=92)
    Image.fromarray(np.full((300, 400, 3), 180, np.uint8)).save(d / "wall.png")
    return d


def test_predict_prints_json_and_writes_pngs(checkpoint, photos, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["predict", str(photos / "astronaut.jpg"), "--checkpoint", str(checkpoint), "--out", str(out),
                 "--top-k", "2", "--cam"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    records = json.loads(captured.out)  # stdout is pure JSON
    assert len(records) == 1
    rec = records[0]
    assert rec["file"].endswith("astronaut.jpg") and rec["face"] == 0 and len(rec["box"]) == 4
    assert [t["emotion"] for t in rec["top_k"]] == sorted(rec["probs"], key=rec["probs"].get, reverse=True)[:2]
    assert list(rec["probs"]) == list(EMOTIONS) and abs(sum(rec["probs"].values()) - 1) < 1e-4
    annotated = np.array(Image.open(rec["annotated"]))
    assert annotated.shape == (512, 512, 3)
    cam = np.array(Image.open(rec["cam"]))
    assert cam.shape == (192, 384, 3)  # face | overlay, 192 px each


def test_no_face_exits_2_with_one_line_but_keeps_other_photos(checkpoint, photos, tmp_path, capsys):
    code = main(["predict", str(photos / "wall.png"), str(photos / "astronaut.jpg"), "--checkpoint",
                 str(checkpoint), "--out", str(tmp_path), "--largest"])
    captured = capsys.readouterr()
    assert code == 2
    model_line, *lines = captured.err.strip().splitlines()  # first: which model answered
    assert model_line.startswith("model: checkpoint ") and "(baseline_resnet18)" in model_line
    assert len(lines) == 1 and lines[0].startswith("error: no face found in") and "wall.png" in lines[0]
    assert "--no-detect" in lines[0]
    assert [r["file"].endswith("astronaut.jpg") for r in json.loads(captured.out)] == [True]


def test_no_detect_accepts_a_cropped_face(checkpoint, photos, tmp_path, capsys):
    code = main(["predict", str(photos / "wall.png"), "--no-detect", "--checkpoint", str(checkpoint),
                 "--out", str(tmp_path)])
    records = json.loads(capsys.readouterr().out)
    assert code == 0 and records[0]["box"] == [50, 0, 300, 300]  # the central square


def test_missing_checkpoint_says_how_to_train(photos, tmp_path, capsys):
    code = main(["predict", str(photos / "astronaut.jpg"), "--checkpoint", str(tmp_path / "none.pt")])
    err = capsys.readouterr().err
    assert code == 1 and "none.pt" in err and "does not exist" in err and "python -m fer_lib train" in err


def test_unreadable_photo_exits_1(checkpoint, tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really")
    code = main(["predict", str(bad), "--checkpoint", str(checkpoint), "--out", str(tmp_path)])
    assert code == 1 and "cannot read image" in capsys.readouterr().err
