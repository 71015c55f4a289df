"""The trained models that ship inside fer_lib, by name: their files, their loading (offline, no pickle), their
accuracy as the model card states it, the ensemble, their answers on real photos, and the CLI that uses them."""

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
    ENSEMBLE,
    PRETRAINED_FORMAT,
    WEIGHTS_DIR,
    CheckpointError,
    EnsembleModel,
    bundled_names,
    bundled_weights,
    describe_model,
    list_pretrained,
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
MAX_TOTAL = 50 * 1024 * 1024
FILES = sorted(WEIGHTS_DIR.glob("*.safetensors"))
NAMES = [f.stem for f in FILES] + ([ENSEMBLE] if len(FILES) >= 2 else [])
COURSE = "fer2013_sota_resemote_small"


@pytest.fixture(scope="module")
def bundled():
    return pretrained()


@pytest.fixture(scope="module")
def meta():
    return read_metadata(bundled_weights())


def test_small_fp16_files_each_with_a_model_card_section():
    assert [f.stem for f in FILES] == ["fer2013_resnet18", COURSE]  # each replaced only by a measured better model
    every = sorted(WEIGHTS_DIR.rglob("*.safetensors"))  # the face detector's weights too (weights/detector/)
    assert [f.relative_to(WEIGHTS_DIR).as_posix() for f in every if f not in FILES] == ["detector/mtcnn.safetensors"]
    assert sum(f.stat().st_size for f in every) <= MAX_TOTAL and all(f.stat().st_size <= MAX_BYTES for f in every)
    from safetensors import safe_open

    for path in FILES:
        meta = read_metadata(path)
        assert path.stat().st_size <= MAX_BYTES, path.name
        assert meta["format"] == PRETRAINED_FORMAT and meta["name"] == path.stem
        with safe_open(str(path), framework="pt") as f:
            dtypes = {f.get_tensor(k).dtype for k in f.keys()}
        assert torch.float16 in dtypes and torch.float32 not in dtypes, path.name
        assert _card_section(path.stem), path.stem
    assert bundled_names() == NAMES and _card_section(ENSEMBLE)


@pytest.mark.parametrize("name", NAMES)
def test_pretrained_loads_offline_without_pickle(name, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network disabled by the test")

    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load (pickle) must not be used for the bundled weights")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(torch, "load", no_pickle)
    model = fer_lib.pretrained(name)
    assert not model.training and all(p.dtype == torch.float32 for p in model.parameters())
    probs = predict_proba(model, np.full((2, 48, 48), 128, np.uint8))
    assert probs.shape == (2, len(EMOTIONS)) and torch.allclose(probs.sum(1), torch.ones(2))
    described = describe_model(model)
    assert described.startswith("bundled") and "/" not in described.split("(")[0]
    assert (name in described) if name != ENSEMBLE else all(f.stem in described for f in FILES)


def test_default_is_the_most_accurate_single_model_and_names_are_listed():
    rows = {r["name"]: r for r in list_pretrained()}
    assert list(rows) == NAMES
    singles = [rows[f.stem] for f in FILES]
    best = max(singles, key=lambda r: r["accuracy"])
    assert [r["name"] for r in rows.values() if r["default"]] == [best["name"]]
    assert fer_lib.pretrained().weights_info["name"] == best["name"] == bundled_weights().stem
    for f in FILES:
        assert rows[f.stem]["accuracy"] == read_metadata(f)["metrics"]["PublicTest"]["none"]["accuracy"]
    ens = json.loads((WEIGHTS_DIR / "ensemble.json").read_text())
    assert sorted(ens["members"]) == [f.stem for f in FILES]
    assert rows[ENSEMBLE]["accuracy"] == ens["metrics"]["PublicTest"]["none"]["accuracy"]
    assert rows[ENSEMBLE]["megabytes"] == 0 and rows[ENSEMBLE]["members"] == [f.stem for f in FILES]
    with pytest.raises(CheckpointError, match="bundled names: .*ensemble"):
        fer_lib.pretrained("fer2013_resnet19")


def test_ensemble_is_the_mean_of_its_members_probabilities():
    ens = fer_lib.pretrained(ENSEMBLE)
    assert isinstance(ens, EnsembleModel) and len(ens.members) == len(FILES)
    faces = torch.randint(0, 256, (5, 48, 48), dtype=torch.uint8)
    for tta in ("none", "flip"):
        members = torch.stack([predict_proba(m, faces, tta) for m in ens.members]).mean(0)
        torch.testing.assert_close(predict_proba(ens, faces, tta), members, atol=1e-6, rtol=1e-5)


def test_load_model_without_a_path_is_the_bundled_model(bundled):
    other = load_model(None)
    x = torch.randn(3, 1, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(other(x), bundled(x))
    # the package's lazy names: listed by dir() (tab completion) and resolved on first use
    assert {"pretrained", "load_model", "EMOTIONS"} <= set(dir(fer_lib)) and fer_lib.load_model is load_model


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


def _card_section(name: str) -> str:
    """The model card's section on ``name``: from its ``## `name``` heading to the next ``## `` heading."""
    lines, out, inside = CARD.read_text().splitlines(), [], False
    for line in lines:
        if line.startswith("## "):
            inside = line.startswith(f"## `{name}`")
        if inside:
            out.append(line)
    return "\n".join(out)


def _card_number(name: str, label: str) -> float:
    """The accuracy the model card's PublicTest table gives ``name`` in the row starting with ``label``."""
    for line in _card_section(name).splitlines():
        if line.startswith(f"| {label} |"):
            return float(re.findall(r"\d\.\d{4}", line)[0])
    raise AssertionError(f"no row '| {label} |' in the section on {name} of {CARD}")


def _stated(name: str) -> dict:
    """What the file (or, for the ensemble, ensemble.json) states was measured on PublicTest."""
    if name == ENSEMBLE:
        return json.loads((WEIGHTS_DIR / "ensemble.json").read_text())
    return read_metadata(bundled_weights(name))


@pytest.mark.parametrize("name", NAMES)
def test_model_card_quotes_the_measured_header(name):
    meta = _stated(name)
    for tta, label in (("none", "one forward pass"), ("flip", "flip TTA"), ("tencrop", "ten-crop TTA")):
        measured = meta["metrics"]["PublicTest"][tta]["accuracy"]
        assert abs(_card_number(name, label) - measured) < 5e-5, (name, tta, measured)
    prov = meta["provenance"]
    text = _card_section(name)
    assert prov["command"] in text and prov["commit"] in text


@pytest.fixture(scope="module")
def publictest(fer2013_root):
    from fer_lib.data import load_fer2013, split_by_name

    data = load_fer2013(fer2013_root)
    return data, split_by_name(data, "PublicTest")


@pytest.mark.fer2013
@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_bundled_accuracy_on_publictest_equals_the_model_card(name, publictest):
    from fer_lib.evaluate import evaluate_model

    data, split = publictest
    report = evaluate_model(fer_lib.pretrained(name), split, "none", data=data)
    assert report.n == 3589
    assert abs(report.accuracy - _card_number(name, "one forward pass")) <= 0.001  # within 0.1 point
    assert abs(report.accuracy - _stated(name)["metrics"]["PublicTest"]["none"]["accuracy"]) <= 0.001


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
    assert "fer_lib/weights/detector/mtcnn.safetensors" in names and "fer_lib/static/camera.js" in names


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


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_name_on_every_command_in_a_fresh_folder(name, tmp_path, monkeypatch, capsys):
    """`--checkpoint NAME` (a bundled name, no path) on predict, evaluate and export, run where nothing else is."""
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    from fer_lib import cli

    monkeypatch.chdir(tmp_path)
    Image.fromarray(skdata.astronaut()).save("astronaut.png")
    assert cli.main(["predict", "astronaut.png", "--largest", "--checkpoint", name, "--out", "pred"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)[0]["top_k"][0]["emotion"] == "happy" and "model: bundled" in err
    assert (name in err) if name != ENSEMBLE else "ensemble" in err

    assert cli.main(["evaluate", "--checkpoint", name, "--data", "synthetic", "--split", "val",
                     "--batch-size", "256"]) == 0
    capsys.readouterr()
    report = json.loads((tmp_path / "runs" / f"eval_{name}" / "PublicTest_none" / "report.json").read_text())
    assert report["model_name"] == (ENSEMBLE if name == ENSEMBLE else read_metadata(bundled_weights(name))["model_name"])

    assert cli.main(["export", "--checkpoint", name, "--formats", "torchscript", "--runs", "1", "--out", "ex"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert (tmp_path / "ex" / "model.ts").is_file() and exported["model"] == report["model_name"]
    assert not any(WEIGHTS_DIR.glob("eval_*")) and not (Path(name)).exists()


def test_models_command_lists_every_name_with_its_accuracy(capsys):
    from fer_lib import cli

    assert cli.main(["models"]) == 0
    table = capsys.readouterr().out
    for row in list_pretrained():
        line = next(line for line in table.splitlines() if line.strip().startswith(row["name"] + " "))
        assert f"{100 * row['accuracy']:.2f}%" in line and ("(default)" in line) == row["default"]
    assert cli.main(["models", "--json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == NAMES


def test_an_unknown_name_is_one_error_line_naming_the_bundled_ones(tmp_path, monkeypatch, capsys):
    from fer_lib import cli

    monkeypatch.chdir(tmp_path)
    assert cli.main(["evaluate", "--checkpoint", "resnet18", "--data", "synthetic"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "neither a file nor a bundled model name" in err[0] and ENSEMBLE in err[0]


def test_weights_stored_as_integers_or_nan_are_refused(tmp_path):
    """A .safetensors file whose float weights were stored as integers would predict 1/7 for every class."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    src = bundled_weights()
    with safe_open(str(src), framework="pt") as f:
        header, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    key = next(k for k, v in tensors.items() if v.is_floating_point() and v.ndim == 4)
    broken = dict(tensors, **{key: tensors[key].to(torch.int8)})
    save_file(broken, str(tmp_path / "ints.safetensors"), metadata=header)
    with pytest.raises(CheckpointError, match=f"ints.safetensors: tensor '{re.escape(key)}' is stored as torch.int8"):
        load_model(tmp_path / "ints.safetensors")
    nan = dict(tensors, **{key: torch.full_like(tensors[key], float("nan"))})
    save_file(nan, str(tmp_path / "nan.safetensors"), metadata=header)
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_model(tmp_path / "nan.safetensors")
    torch.save({"model": {}}, tmp_path / "renamed.safetensors")
    with pytest.raises(CheckpointError, match="renamed.safetensors is a torch checkpoint"):
        load_model(tmp_path / "renamed.safetensors")
    bad_json = dict(header, metrics="{not json")
    save_file(tensors, str(tmp_path / "badjson.safetensors"), metadata=bad_json)
    with pytest.raises(CheckpointError, match="badjson.safetensors: header field 'metrics' is not valid JSON"):
        load_model(tmp_path / "badjson.safetensors")
