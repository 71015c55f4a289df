"""The notebook session helpers: which model notebooks 09-11 study, uploaded data on Colab, the loud warning when
the Kaggle download fails, and notebook 08's refusal to start a full run on a CPU or on synthetic faces."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch

from fer_lib import colab
from fer_lib.colab import Session, check_full_run, course_model, find_uploaded
from fer_lib.paths import display_path


def _session(device="cpu", quick=False, tmp=Path("runs")) -> Session:
    return Session(device=device, gpu_name=None, in_colab=False, quick=quick, data_root=None, runs_dir=tmp)


def test_full_run_refuses_cpu_and_synthetic_unless_allowed():
    with pytest.raises(RuntimeError, match="no GPU.*ALLOW_CPU_OR_SYNTHETIC = True"):
        check_full_run(_session("cpu"), synthetic=False)
    with pytest.raises(RuntimeError, match="SYNTHETIC faces"):
        check_full_run(_session("cuda"), synthetic=True)
    check_full_run(_session("cuda"), synthetic=False)  # a GPU and FER2013: go
    check_full_run(_session("cpu"), synthetic=True, allow=True)  # asked for explicitly
    check_full_run(_session("cpu", quick=True), synthetic=True)  # quick mode is the one-minute check


def _toy_checkpoint(path: Path) -> Path:
    from fer_lib.models import create_model
    from fer_lib.train import save_checkpoint

    torch.manual_seed(1)
    m = create_model("baseline_resnet18")
    return save_checkpoint({"model_name": m.model_name, "model_config": m.config.to_dict(), "model": m.state_dict(),
                            "epoch": 1, "ema": None}, path)


def test_course_model_prefers_notebook_08s_full_run_and_never_the_toy(tmp_path, capsys):
    _toy_checkpoint(tmp_path / "gpu_quick" / "best.pt")
    chosen = course_model(tmp_path)
    assert chosen.bundled and chosen.path.suffix == ".safetensors"  # the toy is ignored
    out = capsys.readouterr().out
    assert "bundled model" in out and "no full run of notebook 08" in out and str(tmp_path) not in out
    assert chosen.path.stem == "fer2013_sota_resemote_small"  # the course's own model, trained

    full = _toy_checkpoint(tmp_path / "gpu" / "best.pt")
    chosen = course_model(tmp_path)
    assert not chosen.bundled and chosen.path == full and "notebook 08's full run" in chosen.description


def test_uploaded_csv_or_kaggle_folder_is_found(tmp_path):
    assert find_uploaded(tmp_path) is None
    (tmp_path / "fer2013.csv").write_text("")  # an empty upload is not data
    assert find_uploaded(tmp_path) is None
    (tmp_path / "fer2013.csv").write_text("emotion,pixels,Usage\n")
    assert find_uploaded(tmp_path) == tmp_path / "fer2013.csv"
    other = tmp_path / "k"
    (other / "fer2013" / "train").mkdir(parents=True)
    assert find_uploaded(other) == other / "fer2013"
    bare = tmp_path / "bare"
    (bare / "train").mkdir(parents=True)
    (bare / "test").mkdir()
    assert find_uploaded(bare) == bare


def test_failed_kaggle_download_is_a_banner_not_a_quiet_fallback(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))  # pretend to be Colab
    monkeypatch.setattr(colab, "find_fer2013", lambda: None)
    monkeypatch.setattr(colab, "is_quick", lambda: False)
    monkeypatch.delenv("FER2013_DIR", raising=False)
    monkeypatch.chdir(tmp_path)

    class FailingHub(types.ModuleType):
        def dataset_download(self, name):
            raise PermissionError("401 Unauthorized")

    monkeypatch.setitem(sys.modules, "kagglehub", FailingHub("kagglehub"))
    session = colab.setup(runs_dir=tmp_path / "runs")
    out = capsys.readouterr().out
    assert session.data_root is None
    assert "!" * 100 in out and "Kaggle download FAILED" in out and "401 Unauthorized" in out
    assert "upload fer2013.csv" in out and "SYNTHETIC" in out


def test_display_path_never_shows_a_far_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert display_path(tmp_path / "runs" / "x") == str(Path("runs") / "x")
    far = Path("/") / "a" / "b" / "c" / "d" / "e" / "f" / "g"
    shown = display_path(far)
    assert not shown.startswith("/") or shown.startswith("../")
