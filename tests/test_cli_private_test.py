"""The command the project is judged with: `evaluate` on any data root, any split by name.

PrivateTest is withheld from this repository's data, so the tests write a tiny full Kaggle folder (``test/`` mixing
``PublicTest_`` and ``PrivateTest_`` files) and a tiny challenge CSV, and check that
``python -m fer_lib evaluate --checkpoint C --data-root ROOT --split PrivateTest`` evaluates exactly the PrivateTest
images, names the split and the data in its report, and agrees with the library's own evaluation.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from fer_lib import EMOTIONS, cli
from fer_lib.data import load_fer2013, make_synthetic_faces
from fer_lib.evaluate import evaluate_model
from fer_lib.train import load_model

# Counts per class in each split of the tiny fixtures: Training 2, PublicTest 3, PrivateTest 4.
PER_CLASS = {"Training": 2, "PublicTest": 3, "PrivateTest": 4}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    code = cli.main(["train", "--data", "synthetic", "--synthetic-train", "64", "--synthetic-val", "40",
                     "--epochs", "1", "--batch-size", "32", "--model", "baseline_resnet18",
                     "--model-option", "stem=default", "--no-progress", "--out", str(out), "--name", "tiny"])
    assert code == 0
    return out / "tiny" / "best.pt"


def _faces_by_split():
    images, labels = make_synthetic_faces(7 * sum(PER_CLASS.values()) * 2, seed=3)
    pools = {c: [im for im, lab in zip(images.numpy(), labels.tolist()) if lab == c] for c in range(7)}
    out = {}
    for split, k in PER_CLASS.items():
        out[split] = [(pools[c].pop(), c) for c in range(7) for _ in range(k)]
    return out


def write_kaggle_folder(root):
    """train/<Class>/Training_*.jpg and test/<class>/{PublicTest,PrivateTest}_*.jpg, as a full Kaggle download."""
    for split, items in _faces_by_split().items():
        sub = "train" if split == "Training" else "test"
        for i, (img, c) in enumerate(items):
            d = root / sub / (EMOTIONS[c].capitalize() if sub == "train" else EMOTIONS[c])
            d.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(d / f"{split}_{i:05d}.jpg"), img)


def write_challenge_csv(path):
    rows = ["emotion,pixels,Usage"]
    for split, items in _faces_by_split().items():
        rows += [f"{c},{' '.join(map(str, img.reshape(-1).tolist()))},{split}" for img, c in items]
    path.write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("form", ["kaggle_folder", "challenge_csv"])
def test_evaluate_private_test_on_any_root(form, checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    if form == "kaggle_folder":
        root = tmp_path / "fer2013"
        write_kaggle_folder(root)
    else:
        root = tmp_path / "fer2013.csv"
        write_challenge_csv(root)

    out = tmp_path / "eval"
    code = cli.main(["evaluate", "--checkpoint", str(checkpoint), "--data-root", str(root), "--split", "PrivateTest",
                     "--tta", "flip", "--out", str(out)])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["split"] == "PrivateTest" and report["tta"] == "flip"
    assert report["n"] == 7 * PER_CLASS["PrivateTest"]
    assert report["data"]["synthetic"] is False and report["data"]["form"] == ("folders" if form == "kaggle_folder"
                                                                               else "csv")
    assert [report["per_class"][e]["support"] for e in EMOTIONS] == [PER_CLASS["PrivateTest"]] * 7
    assert "PrivateTest" in stdout

    # The CLI's numbers are the library's numbers on exactly the PrivateTest images.
    data = load_fer2013(root)
    private = data["PrivateTest"]
    assert len(private) == 7 * PER_CLASS["PrivateTest"]
    lib = evaluate_model(load_model(checkpoint), private, tta="flip", data=data)
    assert report["accuracy"] == pytest.approx(lib.accuracy)
    assert report["confusion"] == lib.confusion
    assert np.isclose(report["ece"], lib.ece)


def test_public_and_private_are_disjoint_in_a_full_kaggle_folder(tmp_path):
    write_kaggle_folder(tmp_path)
    data = load_fer2013(tmp_path, cache_dir=tmp_path / "cache")
    ids = {name: set(split.ids) for name, split in data.splits.items()}
    assert set(ids) == {"Training", "PublicTest", "PrivateTest"}
    assert not ids["PublicTest"] & ids["PrivateTest"]
    assert all("PrivateTest_" in i for i in ids["PrivateTest"])
    assert data["PrivateTest"].counts() == [PER_CLASS["PrivateTest"]] * 7
