"""The trained model that ships inside fer_lib: its file, its loading (offline, no pickle), its accuracy as the
model card states it, its answers on real photos, and the CLI defaults that use it."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import fer_lib
from fer_lib import EMOTIONS
from fer_lib.inference import (
    PRETRAINED_FORMAT,
    WEIGHTS_DIR,
    CheckpointError,
    bundled_weights,
    describe_model,
    load_model,
    load_pretrained,
    predict_proba,
    pretrained,
    read_metadata,
    save_pretrained,
)

REPO = Path(__file__).resolve().parents[1]
CARD = WEIGHTS_DIR / "MODEL_CARD.md"
MAX_BYTES = 25 * 1024 * 1024


@pytest.fixture(scope="module")
def bundled():
    return pretrained()


@pytest.fixture(scope="module")
def meta():
    return read_metadata(bundled_weights())


def test_exactly_one_small_fp16_file_with_a_model_card(meta):
    files = sorted(WEIGHTS_DIR.glob("*.safetensors"))
    assert len(files) == 1, files  # one file, replaced only by a measured better model
    assert files[0].stat().st_size <= MAX_BYTES
    assert meta["format"] == PRETRAINED_FORMAT and meta["name"] == files[0].stem
    from safetensors import safe_open

    with safe_open(str(files[0]), framework="pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}
    assert torch.float16 in dtypes and torch.float32 not in dtypes
    assert CARD.is_file() and meta["name"] in CARD.read_text()


def test_pretrained_loads_offline_without_pickle(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network disabled by the test")

    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load (pickle) must not be used for the bundled weights")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(torch, "load", no_pickle)
    model = fer_lib.pretrained()
    assert not model.training and all(p.dtype == torch.float32 for p in model.parameters())
    probs = predict_proba(model, np.full((2, 48, 48), 128, np.uint8))
    assert probs.shape == (2, len(EMOTIONS)) and torch.allclose(probs.sum(1), torch.ones(2))
    assert "bundled model" in describe_model(model) and "/" not in describe_model(model).split("(")[0]


def test_load_model_without_a_path_is_the_bundled_model(bundled):
    other = load_model(None)
    x = torch.randn(3, 1, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(other(x), bundled(x))


def test_save_pretrained_round_trip_and_bad_files(tmp_path):
    from fer_lib.models import create_model
    from fer_lib.train import save_checkpoint

    torch.manual_seed(0)
    model = create_model("baseline_resnet18").eval()
    ckpt = save_checkpoint({"model_name": model.model_name, "model_config": model.config.to_dict(),
                            "model": model.state_dict(), "ema": None}, tmp_path / "best.pt")
    out = save_pretrained(ckpt, tmp_path / "mine.safetensors", metrics={"PublicTest": {}})
    back = load_model(out)
    x = torch.randn(4, 1, 48, 48)
    with torch.no_grad():
        ref, got = model(x), back(x)
    assert (ref - got).abs().max() < 0.05 * ref.abs().max()  # fp16 storage, fp32 compute
    assert back.weights_info["metrics"] == {"PublicTest": {}} and back.weights_info["model_name"] == model.model_name

    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="junk.safetensors is not a readable safetensors file"):
        load_model(junk)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not fer_lib weights"):
        load_pretrained(foreign)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="is a directory.*best.pt"):
        load_model(tmp_path)


def _card_number(label: str) -> float:
    """The accuracy the model card's PublicTest table gives in the row starting with ``label``."""
    for line in CARD.read_text().splitlines():
        if line.startswith(f"| {label} |"):
            return float(re.findall(r"\d\.\d{4}", line)[0])
    raise AssertionError(f"no row '| {label} |' in {CARD}")


def test_model_card_quotes_the_measured_header(meta):
    for tta, label in (("none", "one forward pass"), ("flip", "flip TTA"), ("tencrop", "ten-crop TTA")):
        measured = meta["metrics"]["PublicTest"][tta]["accuracy"]
        assert abs(_card_number(label) - measured) < 5e-5, (tta, measured)
    prov = meta["provenance"]
    text = CARD.read_text()
    assert prov["command"] in text and prov["commit"] in text


@pytest.mark.fer2013
@pytest.mark.slow
def test_bundled_accuracy_on_publictest_equals_the_model_card(bundled, fer2013_root):
    from fer_lib.data import load_fer2013, split_by_name
    from fer_lib.evaluate import evaluate_model

    data = load_fer2013(fer2013_root)
    report = evaluate_model(bundled, split_by_name(data, "PublicTest"), "none", data=data)
    assert report.n == 3589
    assert abs(report.accuracy - _card_number("one forward pass")) <= 0.001  # within 0.1 point


def test_real_photos_get_the_expected_emotions(bundled):
    from fer_lib.faces import predict_faces, sample_photos

    photos = sample_photos()
    if "astronaut" not in photos:
        pytest.skip("scikit-image is not installed")
    smile = predict_faces(bundled, photos["astronaut"], select="largest")[0]
    assert smile.label == "happy" and smile.probs["happy"] > 0.5, smile.top_k  # a broad, open smile
    mirrored = predict_faces(bundled, photos["astronaut"][:, ::-1], select="largest")[0]
    assert mirrored.label == "happy"
    # Grace Hopper's formal portrait: a composed face with at most a slight smile; no negative emotion
    portrait = predict_faces(bundled, photos["grace_hopper"], select="largest")[0]
    assert portrait.label in ("neutral", "happy"), portrait.top_k


def _fresh_env() -> dict:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("FER2013_DIR",)}
    env["PYTHONPATH"] = str(REPO)
    return env


def test_predict_without_checkpoint_uses_the_bundled_model(tmp_path):
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    Image.fromarray(skdata.astronaut()).save(tmp_path / "astronaut.png")
    proc = subprocess.run([sys.executable, "-m", "fer_lib", "predict", "astronaut.png", "--largest", "--out", "out"],
                          cwd=tmp_path, env=_fresh_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)
    assert records[0]["top_k"][0]["emotion"] == "happy"
    assert "model: bundled model" in proc.stderr and (tmp_path / "out" / "astronaut_annotated.png").is_file()


@pytest.mark.slow
def test_a_non_editable_wheel_ships_the_weights_and_card(tmp_path):
    """What `pip install .` and `pip install git+URL` install: a wheel built from the source tree."""
    base = [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--disable-pip-version-check", "-q",
            "-w", str(tmp_path)]
    errors = []
    for extra in ([], ["--no-build-isolation"]):  # isolated needs setuptools from the index; the other, installed
        proc = subprocess.run(base + extra, capture_output=True, text=True, timeout=600)
        if proc.returncode == 0:
            break
        errors.append(proc.stderr.strip()[-300:])
    else:
        pytest.skip(f"no wheel could be built here: {errors}")
    wheel = next(tmp_path.glob("fer_lib-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    name = bundled_weights().name
    assert f"fer_lib/weights/{name}" in names and "fer_lib/weights/MODEL_CARD.md" in names


def test_evaluate_without_checkpoint_uses_the_bundled_model(tmp_path, monkeypatch, capsys):
    from fer_lib import cli

    monkeypatch.chdir(tmp_path)  # the report goes to runs/ here, never into the installed package
    code = cli.main(["evaluate", "--data", "synthetic", "--split", "val", "--batch-size", "128"])
    out = capsys.readouterr().out
    assert code == 0 and "model: bundled model" in out
    name = bundled_weights().stem
    report = json.loads((tmp_path / "runs" / f"eval_{name}" / "PublicTest_none" / "report.json").read_text())
    assert report["model_name"] == read_metadata(bundled_weights())["model_name"] and report["data"]["synthetic"]
    assert not any(WEIGHTS_DIR.glob("eval_*"))
    code = cli.main(["evaluate", "--data", "synthetic", "--batch-size", "0"])
    assert code == 1 and "--batch-size 0" in capsys.readouterr().err
