"""The command line: one-line errors, train -> evaluate -> demo end to end on tiny synthetic data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fer_lib import cli


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(err: str, *fragments: str):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def test_help_is_fast_and_lists_commands():
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "fer_lib", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0
    for name in ("train", "evaluate", "predict", "bench", "demo"):
        assert name in proc.stdout
    assert "| torch\n" not in proc.stderr  # the top-level help does not import torch


def test_errors_are_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--preset", "fast")
    assert code != 0
    assert_one_error_line(err, "unknown preset 'fast'", "cpu", "demo", "gpu")
    code, _, err = run_cli(capsys, "train", "--preset", "demo", "--data-root", str(tmp_path / "missing"))
    assert code != 0
    # a data error: one error line naming what was not found, then the hint as indented lines, each a command or
    # a sentence on its own (not one ~1,100-character line merging two commands), and no synthetic-fallback
    # promise: an explicit --data-root never falls back
    first, *hint = err.strip().splitlines()
    assert first.startswith("error: FER2013 root ") and "missing does not exist" in first and len(first) < 300
    assert hint and all(line.startswith("  ") and len(line) < 120 for line in hint), err
    assert any(line.strip() == "pip install kagglehub" for line in hint)  # the two commands on their own lines
    assert "data/README.md" in err and "synthetic" not in err.lower()
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    code, _, err = run_cli(capsys, "evaluate", "--checkpoint", str(junk), "--data", "synthetic")
    assert code != 0
    assert_one_error_line(err, "junk.pt is not a readable fer_lib checkpoint")
    code, _, err = run_cli(capsys, "evaluate", "--checkpoint", str(tmp_path / "none.pt"), "--data", "synthetic")
    assert code != 0
    assert_one_error_line(err, "none.pt does not exist")
    code, _, err = run_cli(capsys, "train", "--epochs", "three")
    assert code == 2
    assert_one_error_line(err, "--epochs", "expected int, got 'three'")
    code, _, err = run_cli(capsys, "train", "--model-option", "cbam")
    assert code != 0
    assert_one_error_line(err, "KEY=VALUE")


def test_error_in_a_real_process_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fer_lib", "evaluate", "--checkpoint", str(tmp_path / "x.pt")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert_one_error_line(proc.stderr, "x.pt does not exist")


OWN_WARNING_SCRIPT = """
import sys, warnings
import torch
from fer_lib import cli
from fer_lib.train import setup

setup.cpu_has_native_bf16 = lambda: False  # so that --amp bf16 warns on any CPU, from inside train()
code = cli.main(sys.argv[1:])
with cli.one_line_warnings():  # another package's warning, under the CLI's formatting
    warnings.warn_explicit("an other package's warning", UserWarning, "/elsewhere/other_pkg/mod.py", 7)
print("--- outside the CLI", file=sys.stderr)
warnings.simplefilter("always")
setup.precision_for("bf16", torch.device("cpu"))
sys.exit(code)
"""


def test_own_warnings_are_one_line_without_the_machines_path(tmp_path):
    argv = ["train", "--data", "synthetic", "--synthetic-train", "32", "--synthetic-val", "16", "--epochs", "1",
            "--batch-size", "16", "--model", "baseline_resnet18", "--model-option", "stem=default", "--no-progress",
            "--device", "cpu", "--amp", "bf16", "--out", str(tmp_path), "--name", "warn"]
    proc = subprocess.run([sys.executable, "-c", OWN_WARNING_SCRIPT, *argv], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    inside, outside = proc.stderr.split("--- outside the CLI")
    lines = inside.strip().splitlines()
    own = [line for line in lines if "bf16" in line]
    assert len(own) == 1 and own[0].startswith("warning: amp='bf16' on a CPU without native bf16"), lines
    assert "fp32" in own[0] and "engine.py" not in own[0] and "UserWarning" not in own[0]
    assert "precision = " not in inside  # nor the source line Python repeats below its own form
    # another package's warning keeps Python's form: there the file says where to look
    assert any(line.startswith("/elsewhere/other_pkg/mod.py:7: UserWarning: an other package") for line in lines)
    # outside the CLI (notebooks, library callers) Python's own form is back
    assert "UserWarning: amp='bf16'" in outside and "warning: amp" not in outside


TINY = ["--data", "synthetic", "--synthetic-train", "64", "--synthetic-val", "40", "--epochs", "1",
        "--batch-size", "32", "--model", "baseline_resnet18", "--model-option", "stem=default", "--no-progress"]


@pytest.mark.slow
def test_train_evaluate_and_demo_end_to_end(capsys, tmp_path):
    code, out, err = run_cli(capsys, "train", *TINY, "--out", str(tmp_path), "--name", "cli")
    assert code == 0, err
    assert "SYNTHETIC" in out and "best val_acc" in out
    ckpt = tmp_path / "cli" / "best.pt"
    assert torch.load(ckpt, weights_only=True)["model_config"]["stem"] == "default"

    code, out, err = run_cli(capsys, "evaluate", "--checkpoint", str(ckpt), "--data", "synthetic", "--split", "val",
                             "--tta", "flip", "--out", str(tmp_path / "ev"))
    assert code == 0, err
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["split"] == "PublicTest" and report["tta"] == "flip" and report["checkpoint"] == str(ckpt)
    assert report["data"]["synthetic"] is True and (tmp_path / "ev" / "confusion.png").exists()

    code, _, err = run_cli(capsys, "evaluate", "--checkpoint", str(ckpt), "--data", "synthetic", "--split",
                           "PrivateTest")
    assert code != 0
    assert_one_error_line(err, "no split 'PrivateTest'", "PublicTest")

    code, out, err = run_cli(capsys, "demo", *TINY, "--out", str(tmp_path), "--name", "demo")
    assert code == 0, err
    assert "DATA: SYNTHETIC" in out and "NOT FER2013" in out
    run = tmp_path / "demo"
    for name in ("best.pt", "last.pt", "report.json", "history.png", "confusion.png", "reliability.png", "gradcam.png"):
        assert (run / name).exists(), name
    assert json.loads((run / "report.json").read_text())["tta"] == "flip"


def test_gpu_check_script_is_valid_bash():
    proc = subprocess.run(["bash", "-n", "scripts/gpu_check.sh"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr


def _cpu_config(*flags: str):
    """The TrainConfig that ``python -m fer_lib train --preset cpu FLAGS`` would build (parsed, not run)."""
    import argparse

    from fer_lib.cli.train import add_common_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_common_arguments(parser, default_preset="cpu")
    return config_from_args(parser.parse_args(list(flags)))


def test_switch_flags_override_the_preset_both_ways():
    preset = _cpu_config()
    assert preset.fit_budget and preset.channels_last and not preset.compile  # the cpu preset's values
    off = _cpu_config("--no-fit-budget", "--no-channels-last", "--compile")
    assert (off.fit_budget, off.channels_last, off.compile) == (False, False, True)


def test_augment_option_reaches_the_config_and_bad_keys_fail_early():
    cfg = _cpu_config("--augment-option", "erase_p=0", "--augment-option", "scale=[0.8,1.2]")
    assert cfg.augment_overrides == {"erase_p": 0, "scale": [0.8, 1.2]}
    with pytest.raises(ValueError, match=r"--augment-option \(TrainConfig.augment_overrides\): unknown AugmentConfig keys \['erase'\]"):
        _cpu_config("--augment-option", "erase=0")
    with pytest.raises(ValueError, match="flip_p must be a probability"):
        _cpu_config("--augment-option", "flip_p=2")


def test_model_option_changes_one_key_of_the_presets_model_overrides():
    assert _cpu_config().model_overrides == {"stem": "default", "input_size": 64}
    # the preset's stem must survive (it once silently fell back to the model's 3x slower no_maxpool stem)
    cfg = _cpu_config("--model-option", "input_size=48")
    assert cfg.model_overrides == {"stem": "default", "input_size": 48}
    cfg = _cpu_config("--model-option", "stem=no_maxpool", "--model-option", "dropout=0.3")
    assert cfg.model_overrides == {"stem": "no_maxpool", "input_size": 64, "dropout": 0.3}


def test_schedule_flags_override_only_their_field():
    from fer_lib.train.config import preset_config

    cfg = _cpu_config("--min-lr-ratio", "0.5", "--warmup-epochs", "2")
    assert (cfg.min_lr_ratio, cfg.warmup_epochs) == (0.5, 2.0)
    assert cfg.recipe_diff(preset_config("cpu")) == {"min_lr_ratio": (0.5, 0.3), "warmup_epochs": (2.0, 1.0)}
