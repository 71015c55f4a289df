"""Train flags generated from TrainConfig: every field reachable, documented, validated once, presets kept."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from fer_lib.cli import build_parser, main
from fer_lib.cli.flags import add_config_flags, config_overrides, field_docs, first_sentence
from fer_lib.cli.train import FLAGS, config_from_args
from fer_lib.train.config import PRESETS, TrainConfig


def _config(*flags: str, preset: str = "cpu") -> TrainConfig:
    return config_from_args(build_parser("train").parse_args(["train", "--preset", preset, *flags]))


def test_every_field_has_a_documented_flag():
    parser = build_parser("train")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(FLAGS) == fields
    help_text = parser._subparsers._group_actions[0].choices["train"].format_help()
    for name in fields:
        assert FLAGS[name] in help_text, name
    assert set(field_docs(TrainConfig)) == fields  # one docstring entry per field, none stale


def test_fields_the_old_hand_kept_table_missed_are_reachable():
    cfg = _config("--train-split", "PublicTest", "--val-split", "Training", "--eval-batch-size", "64",
                  "--momentum", "0.8", "--class-balance-power", "1", "--deterministic")
    assert (cfg.train_split, cfg.val_split, cfg.eval_batch_size, cfg.momentum, cfg.class_balance_power,
            cfg.deterministic) == ("PublicTest", "Training", 64, 0.8, 1.0, True)


def test_only_given_flags_override_the_preset_and_aliases_equal_long_forms():
    preset = _config()
    assert preset == TrainConfig(**PRESETS["cpu"])
    short = _config("--out", "o", "--threads", "1", "--subset", "100", "--mixup", "0.2")
    long = _config("--out-dir", "o", "--num-threads", "1", "--subset-train", "100", "--mixup-alpha", "0.2")
    assert short == long and (short.out_dir, short.num_threads, short.subset_train, short.mixup_alpha) == \
        ("o", 1, 100, 0.2)
    # dict fields change single keys on top of the preset's dict
    assert _config("--model-option", "input_size=48").model_overrides == {"stem": "default", "input_size": 48}
    # booleans both ways; 'none' unsets an optional field; --grad-clip 0 is "off" (None)
    assert _config("--no-ema", "--no-fit-budget").ema is False
    assert _config("--max-minutes", "none", "--no-fit-budget").max_minutes is None
    assert _config("--grad-clip", "0").grad_clip is None


def test_values_are_validated_once_and_errors_name_the_flag(capsys):
    with pytest.raises(ValueError, match=r"--batch-size \(TrainConfig.batch_size\) must be > 0"):
        _config("--batch-size", "0")
    assert main(["train", "--label-smoothing", "1.5"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --label-smoothing (TrainConfig.label_smoothing) must be in [0, 1)")
    assert main(["train", "--optimizer", "lion"]) == 2  # choices come from TrainConfig.CHOICES
    assert "invalid choice: 'lion'" in capsys.readouterr().err
    assert main(["train", "--epochs", "two"]) == 2
    assert "expected int, got 'two'" in capsys.readouterr().err


def test_a_field_without_documentation_cannot_be_added_silently():
    @dataclasses.dataclass
    class Recipe:
        """A recipe.

        Attributes:
            steps: how many steps. More words here.
            rate / decay: the rate and its decay.
        """

        steps: int = 1
        rate: float = 0.1
        decay: float = 0.9
        secret: bool = False

    assert field_docs(Recipe) == {"steps": "how many steps. More words here.", "rate": "the rate and its decay.",
                                  "decay": "the rate and its decay."}
    with pytest.raises(TypeError, match="Recipe.secret has no entry"):
        add_config_flags(argparse.ArgumentParser(), Recipe)
    parser = argparse.ArgumentParser()
    flags = add_config_flags(parser, Recipe, skip=frozenset({"secret"}))
    assert flags == {"steps": "--steps", "rate": "--rate", "decay": "--decay"}
    assert config_overrides(parser.parse_args(["--rate", "0.5"]), Recipe) == {"rate": 0.5}
    assert first_sentence("see e.g. ``x``. Then more.") == "see e.g. x."
