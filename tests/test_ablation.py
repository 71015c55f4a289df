"""The equal-budget ablation driver: its commands, its table, and a real (tiny, synthetic) run end to end."""

from __future__ import annotations

import json
import sys

from fer_lib import ablation


def _args(**kw) -> ablation.AblationPlan:
    return ablation.AblationPlan(**{"threads": 1, **kw})


def _main(argv: list[str]) -> int:
    from fer_lib.cli import main

    return main(["ablation", *argv])


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


#: The recipe of the measured table's ``full`` run (runs/ablation/full/config.json of commit 1b362d9, runtime fields
#: left out). That run's driver passed no input_size; 48 is the model's default, so the model is the same.
MEASURED_FULL = {
    "model": "sota_resemote_small_v1", "model_overrides": {"stem": "default", "input_size": 48}, "in_chans": 1,
    "data": "fer2013", "train_split": "Training", "val_split": "PublicTest", "subset_train": None, "subset_val": None,
    "synthetic_train": 2000, "synthetic_val": 500, "epochs": 20, "batch_size": 128, "eval_batch_size": 512,
    "optimizer": "adamw", "lr": 0.002, "weight_decay": 0.05, "momentum": 0.9, "warmup_epochs": 1.0,
    "min_lr_ratio": 0.01, "label_smoothing": 0.1, "aux_weight": 0.3, "augment": True, "augment_overrides": {},
    "mixup_alpha": 0.0, "cutmix_alpha": 0.0, "mix_prob": 0.0, "ema": True, "ema_decay": 0.999, "grad_clip": 5.0,
    "amp": "auto", "channels_last": True, "class_balance": "none", "class_balance_power": 0.5, "seed": 0,
    "deterministic": False, "fit_budget": True,
}


def _train_config(cmd: list[str]):
    """The TrainConfig that the driver's ``python -m fer_lib train ...`` command line builds (parsed, not run)."""
    from fer_lib.cli import build_parser
    from fer_lib.cli.train import config_from_args

    assert cmd[1:4] == ["-m", "fer_lib", "train"]
    return config_from_args(build_parser("train").parse_args(cmd[3:]))


def test_default_driver_reproduces_the_measured_recipe():
    """Whatever the cpu preset becomes, the driver's defaults rebuild the recipe of the published table."""
    from fer_lib.cli import build_parser

    args = build_parser("ablation").parse_args(["ablation"])
    defaults = ablation.AblationPlan(args.minutes, args.threads, args.preset, args.stem, args.input_size, args.data,
                                     args.out, args.base)
    assert defaults == ablation.AblationPlan()  # the command line's defaults are the plan's
    full = _train_config(ablation.train_command("full", defaults))
    assert full.recipe_diff(MEASURED_FULL) == {}
    assert full.max_minutes == 15.0 and full.name == "full"
    baseline = _train_config(ablation.train_command("baseline", defaults))
    assert baseline.recipe_diff(MEASURED_FULL) == {"model": ("baseline_resnet18", "sota_resemote_small_v1")}
    # the cpu preset is a different recipe: starting from it would not reproduce the table
    assert _train_config(ablation.train_command("full", _args(preset="cpu"))).recipe_diff(MEASURED_FULL)


def test_table_reports_differences_against_the_full_model():
    row = dict(params_m=12.5, epochs=3.0, images_per_sec=100.0, minutes=15.0, epoch1_val_acc=0.4)
    md = ablation.table([{**row, "variant": "full", "best_val_acc": 0.55},
                         {**row, "variant": "no_cbam", "best_val_acc": 0.5612}])
    assert "| no_cbam |" in md and "+1.12 |" in md
    assert md.splitlines()[2].endswith("|  |")  # the full row has no difference to itself


def test_ablation_runs_and_tables_real_runs(tmp_path, capsys):
    out = tmp_path / "abl"
    rc = _main(["--data", "synthetic", "--minutes", "0.2", "--only", "baseline", "no_gem", "--parallel", "2",
                        "--threads", "1",
                        "--out", str(out), "--", "--synthetic-train", "256", "--synthetic-val", "64"])
    assert rc == 0, capsys.readouterr()
    report = json.loads((out / "ablation.json").read_text())
    assert [r["variant"] for r in report["rows"]] == ["baseline", "no_gem"]
    for r in report["rows"]:
        config = json.loads((out / r["variant"] / "config.json").read_text())
        assert config["fit_budget"] and config["max_minutes"] == 0.2 and config["data"] == "synthetic"
        # the budget is checked between steps, so a run may end up to one step (well under a second here) late:
        # 0.2006 minutes was seen once while another job loaded the CPU
        assert r["minutes"] <= 0.2 + 0.01 and r["images_seen"] >= 128 and 0.0 <= r["best_val_acc"] <= 1.0  # >= 1 batch
    assert json.loads((out / "no_gem" / "config.json").read_text())["model_overrides"] == {"stem": "default",
                                                                                          "input_size": 48, "gem": False}
    assert "| no_gem |" in (out / "ablation.md").read_text()
    header = (out / "no_gem.log").read_text().splitlines()[0]  # the command, rerunnable, without this machine's path
    assert header.startswith("$ python -m fer_lib train ") and sys.executable not in header, header
    # a run that fails (an unknown flag) is reported, and the driver exits non-zero
    assert _main(["--data", "synthetic", "--minutes", "0.1", "--only", "no_aux", "--out", str(out), "--",
                          "--no-such-flag"]) == 1
    assert "failed runs: no_aux" in capsys.readouterr().err


def test_paired_mode_plans_one_group_per_seed_with_every_variant():
    groups = ablation.plan_jobs(["baseline", "full"], [0, 1])
    assert groups == [[("baseline", 0), ("full", 0)], [("baseline", 1), ("full", 1)]]
    assert ablation.plan_jobs(["baseline", "full"], None) == [[("baseline", None), ("full", None)]]
    cmd = ablation.train_command("full", _args(), seed=1)
    assert cmd[cmd.index("--seed") + 1] == "1" and cmd[cmd.index("--name") + 1] == "full_seed1"
    assert ablation.parse_run_name("no_cbam_seed3") == ("no_cbam", 3)
    assert ablation.parse_run_name("full_seed1") == ("full_seed1", None)  # the unpaired noise variant keeps its name
    assert ablation.parse_run_name("full_seed1", paired=True) == ("full", 1)  # in a paired folder: full, seed 1


def test_paired_folders_keep_seed_1_of_the_full_model(tmp_path):
    """Seed 1 of ``full`` is named like the unpaired noise variant ``full_seed1``; a paired report must keep it."""
    for run in ("baseline_seed0", "full_seed0", "baseline_seed1", "full_seed1"):
        (tmp_path / run).mkdir()
        (tmp_path / run / "history.json").write_text("[]")
    assert ablation.finished_runs(tmp_path, paired=True) == ["baseline_seed0", "baseline_seed1", "full_seed0",
                                                             "full_seed1"]


def test_paired_summary_takes_differences_seed_by_seed():
    def row(variant, seed, acc):
        return dict(variant=variant, seed=seed, best_val_acc=acc, epochs=30.0, images_per_sec=150.0, params_m=11.2)

    rows = [row("baseline", 0, 0.60), row("full", 0, 0.62), row("baseline", 1, 0.64), row("full", 1, 0.63),
            row("full", 2, 0.99)]  # seed 2 has no baseline run: not part of the paired difference
    full = {v["variant"]: v for v in ablation.paired_summary(rows)}["full"]
    assert full["seeds"] == [0, 1, 2] and abs(full["mean_diff"] - 0.005) < 1e-12
    assert [round(d, 6) for d in full["diffs"]] == [0.02, -0.01]
    md = ablation.paired_table(rows)
    assert "| baseline |" in md and "+2.00 / -1.00" in md and "**+0.50**" in md


def test_paired_run_end_to_end_writes_table_json_and_plot(tmp_path, capsys):
    out = tmp_path / "paired"
    rc = _main(["--data", "synthetic", "--minutes", "0.15", "--only", "baseline", "no_gem", "--paired",
                        "--seeds", "0", "1", "--threads", "1", "--out", str(out), "--",
                        "--synthetic-train", "256", "--synthetic-val", "64"])
    assert rc == 0, capsys.readouterr()
    report = json.loads((out / "ablation.json").read_text())
    assert sorted(r["run"] for r in report["rows"]) == ["baseline_seed0", "baseline_seed1", "no_gem_seed0",
                                                        "no_gem_seed1"]
    for r in report["rows"]:
        assert json.loads((out / r["run"] / "config.json").read_text())["seed"] == r["seed"]
        assert r["curve"] and all(0 <= acc <= 1 for _, acc in r["curve"])
    summary = {s["variant"]: s for s in report["summary"]}
    assert summary["no_gem"]["seeds"] == [0, 1] and len(summary["no_gem"]["diffs"]) == 2
    assert (out / "ablation.png").stat().st_size > 5000
    assert "vs baseline, paired" in (out / "ablation.md").read_text()
    # the reference must be one of the variants
    assert _main(["--paired", "--only", "full", "--out", str(out), "--report-only"]) == 2
    assert "--reference 'baseline'" in capsys.readouterr().err


def test_ablation_and_export_are_subcommands_of_the_cli(capsys):
    from fer_lib.cli import COMMANDS, main

    assert {"train", "evaluate", "predict", "bench", "demo", "export", "ablation"} <= set(COMMANDS)
    assert main(["ablation", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--paired" in out and "--base" in out and "--seeds" in out
    assert main(["export", "--help"]) == 0 and "--formats" in capsys.readouterr().out
    assert main(["ablation", "--seeds", "0"]) == 2 and "--seeds needs --paired" in capsys.readouterr().err
