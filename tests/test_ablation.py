"""The equal-budget ablation driver: its commands, its table, and a real (tiny, synthetic) run end to end."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fer_lib import ablation


def _args(**kw) -> argparse.Namespace:
    base = dict(preset="cpu", minutes=15.0, threads=1, out=Path("runs/ablation"), data="fer2013", stem="default",
                input_size=48, train_args=[])
    return argparse.Namespace(**{**base, **kw})


def test_each_variant_switches_off_exactly_its_module():
    full = ablation.train_command("full", _args())
    assert "--fit-budget" in full and full[full.index("--max-minutes") + 1] == "15.0"
    for name, (_, options, _) in ablation.VARIANTS.items():
        cmd = ablation.train_command(name, _args())
        switched = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--model-option" and "false" in cmd[i + 1]]
        assert switched == [f"{k}=false" for k in options], name
    assert ablation.train_command("baseline", _args())[ablation.train_command("baseline", _args()).index("--model") + 1] \
        == "baseline_resnet18"
    probe = ablation.train_command("baseline_no_maxpool", _args())
    assert 'stem="no_maxpool"' in probe and 'stem="default"' not in probe  # the probe's stem wins
    assert "input_size=48" in full  # not the cpu preset's 64: the measured table is at 48 px
    probe64 = ablation.train_command("baseline_64px", _args())
    assert "input_size=64" in probe64 and "input_size=48" not in probe64


def test_table_reports_differences_against_the_full_model():
    row = dict(params_m=12.5, epochs=3.0, images_per_sec=100.0, minutes=15.0, epoch1_val_acc=0.4)
    md = ablation.table([{**row, "variant": "full", "best_val_acc": 0.55},
                         {**row, "variant": "no_cbam", "best_val_acc": 0.5612}])
    assert "| no_cbam |" in md and "+1.12 |" in md
    assert md.splitlines()[2].endswith("|  |")  # the full row has no difference to itself


def test_ablation_runs_and_tables_real_runs(tmp_path, capsys):
    out = tmp_path / "abl"
    rc = ablation.main(["--data", "synthetic", "--minutes", "0.3", "--only", "baseline", "no_gem", "--parallel", "2",
                        "--threads", "1",
                        "--out", str(out), "--", "--synthetic-train", "256", "--synthetic-val", "64"])
    assert rc == 0, capsys.readouterr()
    report = json.loads((out / "ablation.json").read_text())
    assert [r["variant"] for r in report["rows"]] == ["baseline", "no_gem"]
    for r in report["rows"]:
        config = json.loads((out / r["variant"] / "config.json").read_text())
        assert config["fit_budget"] and config["max_minutes"] == 0.3 and config["data"] == "synthetic"
        assert r["minutes"] <= 0.3 and r["images_seen"] >= 128 and 0.0 <= r["best_val_acc"] <= 1.0  # >= 1 batch
    assert json.loads((out / "no_gem" / "config.json").read_text())["model_overrides"] == {"stem": "default",
                                                                                          "input_size": 48, "gem": False}
    assert "| no_gem |" in (out / "ablation.md").read_text()
    # a run that fails (an unknown flag) is reported, and the driver exits non-zero
    assert ablation.main(["--data", "synthetic", "--minutes", "0.1", "--only", "no_aux", "--out", str(out), "--",
                          "--no-such-flag"]) == 1
    assert "failed runs: no_aux" in capsys.readouterr().err
