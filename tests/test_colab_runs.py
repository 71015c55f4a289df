"""Notebook 08 on Colab without surprises (issue 35, item 1): the run's time estimated before it starts
(``fer_lib.train.estimate_minutes``), the Colab-sized preset, runs on Google Drive by default on Colab (and local
elsewhere, with a one-line opt-out), one call that resumes after a disconnect, Kaggle credentials from Colab's
secrets, and a GPU asked for only by the notebook that trains."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import pytest

from fer_lib import colab
from fer_lib.colab import Session, runs_folder
from fer_lib.data import load_synthetic
from fer_lib.train import (
    PRESETS,
    Estimate,
    TrainConfig,
    estimate_minutes,
    preset_config,
    quick_config,
    steps_per_epoch,
)
from fer_lib.train.course import latest_checkpoint, resume_or_start

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))


def _tiny(tmp_path, **kw) -> TrainConfig:
    """The cheapest real recipe: the plain ResNet18 with the stride-4 stem at 48 px, fp32, 3 steps per epoch."""
    base = dict(name="tiny", out_dir=str(tmp_path), model="baseline_resnet18", model_overrides={"stem": "default"},
                data="synthetic", epochs=2, batch_size=16, eval_batch_size=32, amp="off", channels_last=False,
                device="cpu", warmup_epochs=0.5, ema_decay=0.9)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def data():
    return load_synthetic(n_train=48, n_val=24)  # 3 steps of 16 per epoch


# --- the estimate -------------------------------------------------------------------------------------------------

def test_estimate_times_real_steps_and_extrapolates_to_the_planned_epochs(tmp_path, data):
    cfg = _tiny(tmp_path, epochs=5)
    est = estimate_minutes(cfg, data, steps=3, warmup=1)
    assert est.steps_per_epoch == steps_per_epoch(48, 16) == 3  # train()'s own count
    assert (est.train_images, est.val_images, est.batch_size, est.epochs) == (48, 24, 16, 5)
    assert est.steps_timed == 3 and est.device == "cpu" and est.precision == "fp32"
    assert 0 < est.seconds_per_step < 30 and 0 < est.val_seconds < 30  # plausible for a ResNet18 step on a CPU
    assert est.checkpoint_mb > 3 * 40  # weights, EMA weights and AdamW's two moments of ~11 M floats
    train_only = est.epochs * est.steps_per_epoch * est.seconds_per_step / 60
    per_epoch = est.steps_per_epoch * est.seconds_per_step + est.val_seconds
    assert est.minutes == pytest.approx(est.epochs * per_epoch / 60)
    assert train_only < est.minutes < 3 * train_only  # validating 24 faces costs less than training 48
    assert est.run_minutes == est.minutes and est.run_epochs == 5  # no budget
    text = str(est)
    assert "tiny" in text and "5 epochs" in text and "estimated" in text
    assert not list(tmp_path.iterdir()), "the estimate writes nothing"


def test_the_estimate_predicts_a_real_run_that_resume_or_start_continues_after_a_disconnect(tmp_path, data, capsys):
    cfg = _tiny(tmp_path)
    est = estimate_minutes(cfg, data, steps=3, warmup=1)

    class Disconnect(Exception):
        pass

    def cut(epoch, row):
        if epoch == 0:
            raise Disconnect  # the session ends after epoch 1's checkpoints are written

    with pytest.raises(Disconnect):
        resume_or_start(cfg, data, progress=False, on_epoch_end=cut)
    assert "starting run 'tiny'" in capsys.readouterr().out
    last = latest_checkpoint(tmp_path, "tiny")
    assert last is not None
    result = resume_or_start(cfg, data, progress=False)  # the notebook run again: one call
    assert "resuming" in capsys.readouterr().out
    assert [h["epoch"] for h in result.history] == [1, 2]
    measured = sum(h["seconds"] for h in result.history) / 60  # training + validation, as the estimate counts
    assert measured / 4 < est.minutes < measured * 4, (est.minutes, measured)


def test_estimate_runs_the_whole_step_of_the_notebook_recipe(tmp_path, data):
    """The quick-mode toy of notebook 08's recipe (mixup/CutMix, auxiliary heads, EMA, channels_last) on the
    course's small model, shrunk to two batches of 8."""
    cfg = quick_config("colab", out_dir=str(tmp_path), model="sota_resemote_small", subset_train=16, subset_val=8,
                       batch_size=8, device="cpu")
    assert cfg.mix_prob > 0 and cfg.aux_weight > 0 and cfg.ema and cfg.channels_last
    est = estimate_minutes(cfg, data, steps=1, warmup=1)
    assert est.steps_per_epoch == 2 and est.steps_timed == 1 and est.seconds_per_step > 0
    assert est.max_minutes is None and est.run_epochs == 1  # the toy has no budget


def test_estimate_refuses_zero_steps(tmp_path, data):
    with pytest.raises(ValueError, match="steps >= 1"):
        estimate_minutes(_tiny(tmp_path), data, steps=0)


def test_a_budget_caps_the_run_and_fit_budget_fills_it():
    def est(**kw):
        base = dict(name="x", model="m", device="cuda (Tesla T4)", precision="fp16", batch_size=256,
                    train_images=28709, val_images=3589, steps_per_epoch=112, seconds_per_step=0.25, steps_timed=30,
                    val_seconds=2.0, epochs=80, max_minutes=None, fit_budget=False, checkpoint_mb=360.0)
        return Estimate(**{**base, **kw})

    plain = est()
    assert plain.epoch_seconds == pytest.approx(30.0) and plain.minutes == pytest.approx(40.0)
    fitted = est(max_minutes=60.0, fit_budget=True)
    assert fitted.run_minutes == 60.0 and fitted.run_epochs == pytest.approx(120.0)  # 60 min / 30 s per epoch
    assert "re-plans it to about 120 epochs" in str(fitted)
    capped = est(max_minutes=20.0)
    assert capped.run_minutes == 20.0 and capped.run_epochs == pytest.approx(40.0)
    assert est(max_minutes=60.0).run_epochs == 80  # without fit_budget a budget never adds epochs


# --- the Colab-sized preset ---------------------------------------------------------------------------------------

def test_colab_preset_is_the_gpu_recipe_within_a_one_session_budget():
    colab_cfg, gpu_cfg = preset_config("colab"), preset_config("gpu")
    assert list(PRESETS)[-1] == "colab"
    assert colab_cfg.fit_budget and 45 <= colab_cfg.max_minutes <= 75  # one free Colab session
    assert set(colab_cfg.recipe_diff(gpu_cfg)) == {"fit_budget"}  # same model, data, optimiser, schedule, mixing
    source = (Path(colab.__file__).parent / "train" / "config.py").read_text(encoding="utf-8")
    entry = source[source.index("# One free Colab session"):source.index('PRESETS["colab"] = ')]
    assert "ESTIMATED, NOT MEASURED" in entry, "say that its time on a T4 is estimated until it is measured"
    toy = quick_config("colab")
    assert toy.max_minutes is None and not toy.fit_budget  # the quick-mode toy never fills a 60-minute budget


# --- runs on Google Drive on Colab, local elsewhere ---------------------------------------------------------------

@pytest.fixture
def places(tmp_path, monkeypatch):
    """Drive and the local runs folder moved to ``tmp_path``; mounting only recorded."""
    drive, local = tmp_path / "MyDrive" / "fer_course" / "runs", tmp_path / "local" / "runs"
    mounts: list[int] = []
    monkeypatch.setattr(colab, "DRIVE_RUNS", drive)
    monkeypatch.setattr(colab, "_local_runs", lambda: local)
    monkeypatch.setattr(colab, "_mount_drive", lambda: mounts.append(1))
    return drive, local, mounts


def test_runs_go_to_drive_on_colab_local_elsewhere_and_the_opt_out_is_one_argument(places, monkeypatch, tmp_path):
    drive, local, mounts = places
    monkeypatch.setattr(colab, "in_colab", lambda: True)
    assert runs_folder() == (drive, True)  # the default (DRIVE = None): Drive on Colab
    assert runs_folder(True) == (drive, True)
    assert len(mounts) == 2
    assert runs_folder(False) == (local, False)  # DRIVE = False: the opt-out, nothing mounted
    assert runs_folder(None, tmp_path / "mine") == (tmp_path / "mine", False)  # an explicit folder wins
    assert len(mounts) == 2
    monkeypatch.setattr(colab, "in_colab", lambda: False)
    assert runs_folder() == (local, False) and runs_folder(True) == (local, False)  # no Colab: local, no mount
    assert len(mounts) == 2


def test_a_refused_drive_keeps_runs_local_with_a_banner_unless_drive_was_demanded(places, monkeypatch, capsys):
    drive, local, _ = places
    monkeypatch.setattr(colab, "in_colab", lambda: True)

    def refuse():
        raise ValueError("mount failed")

    monkeypatch.setattr(colab, "_mount_drive", refuse)
    assert runs_folder() == (local, False)
    out = capsys.readouterr().out
    assert "!" * 100 in out and "NOT mounted" in out and "LOST" in out
    with pytest.raises(ValueError, match="mount failed"):
        runs_folder(True)


def test_setup_on_colab_keeps_runs_on_drive_by_default(places, monkeypatch, tmp_path, capsys):
    drive, local, mounts = places
    monkeypatch.setattr(colab, "in_colab", lambda: True)
    monkeypatch.setattr(colab, "find_fer2013", lambda: tmp_path)  # data found: no Kaggle download
    _unset(monkeypatch, "FER2013_DIR")  # setup() sets it; restored after the test
    session = colab.setup()
    assert session.on_drive and session.runs_dir == drive and drive.is_dir() and mounts == [1]
    assert "Google Drive" in capsys.readouterr().out
    session = colab.setup(drive=False)
    assert not session.on_drive and session.runs_dir == local and mounts == [1]
    assert "lost when the session ends" in capsys.readouterr().out


# --- resuming after a disconnect ----------------------------------------------------------------------------------

def test_latest_checkpoint_finds_last_pt_and_none_without_it(tmp_path):
    assert latest_checkpoint(tmp_path, "colab") is None
    (tmp_path / "colab").mkdir()
    (tmp_path / "colab" / "best.pt").write_bytes(b"weights only")  # best.pt cannot resume
    assert latest_checkpoint(tmp_path, "colab") is None
    last = tmp_path / "colab" / "last.pt"
    last.write_bytes(b"state")
    assert latest_checkpoint(tmp_path, "colab") == last
    session = Session(device="cpu", gpu_name=None, in_colab=True, quick=False, data_root=None, runs_dir=tmp_path,
                      on_drive=True)
    assert latest_checkpoint(session, "colab") == last
    assert latest_checkpoint(session, "gpu") is None


def test_resume_or_start_passes_last_pt_to_train_only_when_asked(tmp_path, monkeypatch, capsys):
    import fer_lib.train.course

    calls = []
    monkeypatch.setattr(fer_lib.train.course, "train", lambda cfg, data, progress, resume=None: calls.append(resume))
    cfg = TrainConfig(name="colab", out_dir=str(tmp_path))
    resume_or_start(cfg)
    (tmp_path / "colab").mkdir()
    (tmp_path / "colab" / "last.pt").write_bytes(b"not a checkpoint")  # unreadable: still passed on to train()
    resume_or_start(cfg)
    resume_or_start(cfg, resume=False)  # quick mode: always a new run
    assert calls == [None, tmp_path / "colab" / "last.pt", None]
    out = capsys.readouterr().out
    assert out.count("starting run") == 2 and out.count("resuming") == 1


# --- Kaggle credentials -------------------------------------------------------------------------------------------

def _unset(monkeypatch, *names: str) -> None:
    """Remove environment variables for this test only (set first, so that monkeypatch restores them afterwards
    even when the code under test sets them)."""
    for name in names:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def _fake_colab(get) -> types.ModuleType:
    module = types.ModuleType("google.colab")
    module.userdata = types.SimpleNamespace(get=get)
    return module


def test_kaggle_credentials_from_the_environment_a_file_or_colab_secrets(tmp_path, monkeypatch):
    _unset(monkeypatch, *colab.KAGGLE_SECRETS)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path))
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert colab.kaggle_credentials() is None
    (tmp_path / "kaggle.json").write_text('{"username": "u", "key": "k"}')
    assert "kaggle.json" in colab.kaggle_credentials()
    (tmp_path / "kaggle.json").unlink()

    secrets = {"KAGGLE_USERNAME": "learner", "KAGGLE_KEY": "0123abcd"}
    monkeypatch.setitem(sys.modules, "google.colab", _fake_colab(lambda name: secrets[name]))
    found = colab.kaggle_credentials()
    assert found == "Colab secrets KAGGLE_USERNAME / KAGGLE_KEY" and "0123abcd" not in found  # never the key
    assert os.environ["KAGGLE_USERNAME"] == "learner" and os.environ["KAGGLE_KEY"] == "0123abcd"
    assert colab.kaggle_credentials().startswith("environment variables")


def test_missing_colab_secret_is_none_not_an_error(tmp_path, monkeypatch):
    _unset(monkeypatch, *colab.KAGGLE_SECRETS)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path))

    def missing(name):
        raise KeyError(name)  # Colab raises its SecretNotFoundError

    monkeypatch.setitem(sys.modules, "google.colab", _fake_colab(missing))
    assert colab.kaggle_credentials() is None
    assert "KAGGLE_KEY" not in os.environ


# --- the notebooks ------------------------------------------------------------------------------------------------

def _nb(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _code(nb: dict) -> list[str]:
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def test_only_the_training_notebook_asks_colab_for_a_gpu():
    assert len(NOTEBOOKS) == 11
    for path in NOTEBOOKS:
        meta = _nb(path)["metadata"]
        if path.stem.startswith("08_"):
            assert meta.get("accelerator") == "GPU" and meta.get("colab") == {"gpuType": "T4"}, path.name
        else:
            assert "accelerator" not in meta and "gpuType" not in meta.get("colab", {}), \
                f"{path.name} needs no GPU: its metadata must not ask Colab for one"


def test_notebooks_08_to_11_keep_runs_on_drive_by_default_with_a_one_line_opt_out():
    for path in NOTEBOOKS:
        first = _code(_nb(path))[0]
        if path.stem[:2] in ("08", "09", "10", "11"):
            assert "\nDRIVE = None" in first and "setup(drive=DRIVE)" in first, path.name
        else:
            assert "DRIVE = None" not in first, path.name


def test_notebook_08_estimates_before_it_trains_and_resumes_with_one_call():
    nb = _nb(NB_DIR / "08_training_on_gpu.ipynb")
    code = _code(nb)
    estimate = next(i for i, c in enumerate(code) if "estimate_minutes(" in c)
    run = next(i for i, c in enumerate(code) if "resume_or_start(cfg" in c)
    assert estimate < run, "the estimate is printed before the long run starts"
    assert "other_cfg" in code[estimate], "the estimate covers the other preset too (colab or gpu)"
    assert not any("= train(cfg" in c for c in code), "the run goes through resume_or_start"
    text = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert "Kaggle credentials, step by step" in text and "KAGGLE_KEY" in text and "Notebook access" in text
    assert "estimated, not measured" in text
