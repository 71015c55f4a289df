"""TorchScript and ONNX export: logits parity with eager PyTorch (also at other batch sizes), the report, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fer_lib.cli import main as cli_main
from fer_lib.data import make_synthetic_faces, preprocess
from fer_lib.export import export_model, load_torchscript

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def sota():
    """Every module switched on (fusion, CBAM, regions, anchors, transformer, GeM, aux heads)."""
    from fer_lib.models import create_model

    torch.manual_seed(0)
    return create_model("sota_resemote_small_v1")


@pytest.fixture(scope="module")
def exported(sota, tmp_path_factory):
    sota.train()  # export must use eval mode and give the training mode back
    report = export_model(sota, tmp_path_factory.mktemp("export"), batch_size=4, runs=3, warmup=1)
    assert sota.training
    return report


def test_parity_and_report(exported):
    assert exported["torchscript"]["max_abs_diff"] < 1e-4
    assert exported["onnx"]["max_abs_diff"] < 1e-3
    for key in ("eager_ms",):
        assert exported[key] > 0
    assert exported["torchscript"]["ms"] > 0 and exported["onnx"]["ms"] > 0
    assert exported["model"] == "sota_resemote_small_v1" and exported["input"] == [4, 1, 48, 48]
    json.dumps(exported)  # plain types only


def test_exported_files_agree_on_real_faces_at_other_batch_sizes(sota, exported):
    faces = make_synthetic_faces(5, seed=3)[0]
    x = preprocess(faces)
    sota.eval()
    with torch.no_grad():
        ref = sota(x).numpy()
    ts = load_torchscript(exported["torchscript"]["path"])
    with torch.no_grad():
        np.testing.assert_allclose(ts(x).numpy(), ref, atol=1e-4)  # traced at batch 2, run at 5
        np.testing.assert_allclose(ts(x[:1]).numpy(), ref[:1], atol=1e-4)
    sess = ort.InferenceSession(exported["onnx"]["path"], providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].name == "input" and sess.get_outputs()[0].name == "logits"
    np.testing.assert_allclose(sess.run(None, {"input": x.numpy()})[0], ref, atol=1e-3)
    np.testing.assert_allclose(sess.run(None, {"input": x[:1].numpy()})[0], ref[:1], atol=1e-3)
    sota.train()


def test_cli_prints_only_json(sota, tmp_path, capsys):
    from fer_lib.train import save_checkpoint

    ckpt = tmp_path / "best.pt"
    save_checkpoint({"model_name": sota.model_name, "model_config": sota.config.to_dict(),
                     "model": sota.state_dict()}, ckpt)
    code = cli_main(["export", str(ckpt), "--out", str(tmp_path / "ex"), "--formats", "torchscript", "--runs", "2"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["torchscript"]["max_abs_diff"] < 1e-4 and "onnx" not in report
    code = cli_main(["export", str(tmp_path / "missing.pt")])
    err = capsys.readouterr().err
    assert code == 1 and "missing.pt" in err and "does not exist" in err and "python -m fer_lib train" in err


def test_unknown_format_is_named(sota, tmp_path):
    with pytest.raises(ValueError, match="tflite"):
        export_model(sota, tmp_path, formats=("tflite",))
