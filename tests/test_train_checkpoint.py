"""Checkpoints: atomic writes, weights_only loading, clear errors, named architecture mismatches, load_model."""

from __future__ import annotations

import os

import pytest
import torch

from fer_lib.data import load_synthetic
from fer_lib.models import create_model
from fer_lib.train import (
    CheckpointError,
    TrainConfig,
    load_checkpoint,
    load_model,
    load_weights,
    save_checkpoint,
    train,
)


def test_atomic_save_replaces_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "sub" / "ck.pt"
    save_checkpoint({"model_name": "x", "model_config": {}, "model": {"w": torch.ones(2)}}, path)
    save_checkpoint({"model_name": "x", "model_config": {}, "model": {"w": torch.zeros(2)}}, path)
    assert os.listdir(path.parent) == ["ck.pt"]
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.zeros(2))


def test_atomic_save_keeps_old_file_when_the_write_fails(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint({"model_name": "x", "model_config": {}, "model": {"w": torch.ones(2)}}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint({"model_name": "x", "model": Unpicklable()}, path)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
    assert os.listdir(tmp_path) == ["ck.pt"]


def test_load_errors_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt is not a readable fer_lib checkpoint"):
        load_checkpoint(junk)
    good = tmp_path / "good.pt"
    save_checkpoint({"model_name": "x", "model_config": {}, "model": {"w": torch.ones(3)}}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(CheckpointError, match="truncated.pt is not a readable"):
        load_checkpoint(truncated)
    bare = tmp_path / "bare.pt"
    torch.save({"w": torch.ones(1)}, bare)
    with pytest.raises(CheckpointError, match="not a fer_lib checkpoint.*bare state_dict"):
        load_checkpoint(bare)
    pickled = tmp_path / "pickled.pt"
    torch.save({"model_name": "x", "model_config": {}, "model": {}, "obj": TrainConfig()}, pickled)
    with pytest.raises(CheckpointError, match="pickled.pt is not a readable"):  # weights_only refuses objects
        load_checkpoint(pickled)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One short epoch of a registered model (baseline_resnet18, stock stem: 4x cheaper) on 64 synthetic faces."""
    out = tmp_path_factory.mktemp("runs")
    data = load_synthetic(n_train=64, n_val=32)
    cfg = TrainConfig(name="ck", out_dir=str(out), model="baseline_resnet18", model_overrides={"stem": "default"},
                      epochs=1, batch_size=32, ema_decay=0.5, device="cpu")
    return train(cfg, data, progress=False)


def test_checkpoint_holds_everything_and_loads_weights_only(trained_run):
    raw = torch.load(trained_run.last_path, weights_only=True)
    for key in ("model_name", "model_config", "model", "optimizer", "scheduler", "ema", "scaler", "epoch", "history",
                "data_fingerprint", "train_config", "rng"):
        assert key in raw, key
    assert raw["model_name"] == "baseline_resnet18" and raw["epoch"] == 1
    assert raw["train_config"]["model"] == "baseline_resnet18"
    assert raw["data_fingerprint"] == load_synthetic(n_train=64, n_val=32).fingerprint
    assert all(torch.isfinite(v).all() for v in raw["model"].values() if v.is_floating_point())


def test_load_model_rebuilds_from_the_file_alone(trained_run):
    model = load_model(trained_run.best_path)
    assert not model.training and model.model_name == "baseline_resnet18"
    ema_weights = torch.load(trained_run.best_path, weights_only=True)["ema"]["module"]
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, ema_weights[k])
    x = torch.randn(4, 1, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(model(x), trained_run.model(x))
    raw = load_model(trained_run.best_path, use_ema=False)
    raw_weights = torch.load(trained_run.best_path, weights_only=True)["model"]
    for k, v in raw.state_dict().items():
        torch.testing.assert_close(v, raw_weights[k])

def test_wrong_architecture_names_the_mismatch(trained_run):
    other = create_model("sota_resemote_small_v1")
    with pytest.raises(CheckpointError) as err:
        load_weights(other, trained_run.best_path)
    msg = str(err.value)
    assert "'baseline_resnet18' weights, the model is 'sota_resemote_small_v1'" in msg
    assert "missing keys (" in msg and "anchor.centre_logits" in msg
    deeper = create_model("baseline_resnet34", stem="default")
    with pytest.raises(CheckpointError, match=r"missing keys \(\d+\): backbone.layer1.2"):
        load_weights(deeper, trained_run.best_path)
    rgb = create_model("baseline_resnet18", in_chans=3, stem="default")
    with pytest.raises(CheckpointError, match=r"shape mismatches \(1\): backbone.conv1.weight: \(64, 1, 7, 7\)"):
        load_weights(rgb, trained_run.best_path)
