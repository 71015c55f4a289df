"""fer_lib.bench: FLOP counting, the rows and ratios it reports, JSON output, errors and --data delegation."""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch
from torch import nn

from fer_lib import bench
from fer_lib.cli import main as cli_main
from fer_lib.models import SOTAResEmoteConfig, count_parameters, create_model


def _bench(argv: list[str]) -> int:
    return cli_main(["bench", *argv])


def test_count_gflops_matches_hand_count():
    conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
    # 48*48 outputs x 4 channels x 9 multiply-adds (1 input channel), 2 FLOPs each.
    assert bench.count_gflops(conv, 1, torch.device("cpu")) * 1e9 == pytest.approx(2 * 48 * 48 * 4 * 9)
    model = create_model("baseline_resnet18")
    # The ResNet forward is dominated by convs: at least the stem conv (7x7, 64 ch, 24x24 out) is counted.
    assert bench.count_gflops(model, 1, torch.device("cpu")) * 1e9 > 2 * 24 * 24 * 64 * 49


def test_bench_rows_ratios_and_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = _bench(["--variants", "small_v1", "--ablate", "--batch-size", "2", "--iters", "1", "--warmup", "0",
                     "--json", str(out)])
    assert rc == 0
    table = capsys.readouterr().out
    assert "baseline_resnet18" in table and "sota_resemote_small_v1 -cbam" in table
    rows = json.loads(out.read_text())
    labels = [r["label"] for r in rows]
    switches = SOTAResEmoteConfig.SWITCHES
    assert labels == ["baseline_resnet18", "sota_resemote_small_v1"] + [f"sota_resemote_small_v1 -{s}" for s in switches] \
        + ["sota_resemote_small_v1 all off"]
    base, small, all_off = rows[0], rows[1], rows[-1]
    for key in ("params_x", "gflops_x", "train_x", "infer_x"):
        assert base[key] == 1.0
    assert small["params_m"] == pytest.approx(count_parameters(create_model("sota_resemote_small_v1")) / 1e6)
    assert small["gflops_x"] > 1.0 and small["params_x"] > 1.0
    assert all_off["params_x"] == pytest.approx(1.0) and all_off["gflops_x"] == pytest.approx(1.0, rel=1e-3)
    assert small["grid"] == [6, 6] and base["grid"] == [3, 3]
    assert all(r["train_img_s"] > 0 and r["infer_ms_img"] > 0 for r in rows)


def test_bench_bad_variant_and_device(capsys):
    assert _bench(["--variants", "tiny"]) == 2
    assert "error: unknown model 'tiny'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert _bench(["--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err


def test_bench_data_delegates(monkeypatch, capsys):
    seen = []
    fake = types.ModuleType("fer_lib.data.bench")
    fake.run_data_bench = lambda *a: seen.append(a) or [("what", "1 s", "2 img/s")]
    fake.format_table = lambda rows: f"table of {len(rows)} rows"
    monkeypatch.setitem(sys.modules, "fer_lib.data.bench", fake)
    assert _bench(["--data", "--data-args=--iters 3 --batch-size 16"]) == 0
    assert seen == [(None, 16, 3, "cpu", None)] and "table of 1 rows" in capsys.readouterr().out
    assert _bench(["--data", "--data-args=--quick"]) == 2  # an unknown option is one error line, not a crash
    assert "unrecognized arguments: --quick" in capsys.readouterr().err


class _Recorder(nn.Module):
    """A tiny model that records the conv output dtype and whether its input is channels_last."""

    def __init__(self):
        super().__init__()
        # 3 channels: a 1-channel tensor is channels_last-contiguous whatever its layout
        self.config = types.SimpleNamespace(in_chans=3, num_classes=7)
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4, 7)
        self.seen = set()

    def forward(self, x):
        y = self.conv(x)
        self.seen.add((y.dtype, x.is_contiguous(memory_format=torch.channels_last)))
        return self.head(y.mean((2, 3)))


def test_time_models_applies_each_precision():
    models = {"a": _Recorder(), "b": _Recorder(), "c": _Recorder()}
    times = bench.time_models(models, batch_size=4, iters=1, warmup=0, device=torch.device("cpu"),
                              precision={"b": "bf16", "c": "bf16-nhwc"})
    assert set(times) == {"a", "b", "c"}
    assert models["a"].seen == {(torch.float32, False)}
    assert models["b"].seen == {(torch.bfloat16, False)}
    assert models["c"].seen == {(torch.bfloat16, True)}


def test_bench_precisions_rows_and_errors(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = _bench(["--variants", "baseline_resnet18", "--batch-size", "2", "--iters", "1", "--warmup", "0",
                     "--precisions", "fp32,bf16-nhwc", "--json", str(out)])
    assert rc == 0
    rows = json.loads(out.read_text())
    assert [(r["label"], r["precision"]) for r in rows] == [
        ("baseline_resnet18", "fp32"), ("baseline_resnet18 [bf16-nhwc]", "bf16-nhwc")]
    assert rows[0]["train_x"] == 1.0 and rows[1]["gflops_x"] == pytest.approx(1.0)
    capsys.readouterr()
    assert _bench(["--variants", "small", "--precisions", "fp8"]) == 2
    assert "--precisions: unknown ['fp8']" in capsys.readouterr().err
    assert _bench(["--variants", "small", "--precisions", "fp16"]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--overhead-args", "--data-args"])
def test_bench_nested_options_have_a_help_that_the_error_names(flag, capsys):
    """The options inside ``--overhead-args "..."`` / ``--data-args "..."``: ``FLAG=--help`` lists them (exit 0,
    nothing timed), and a bad one is one error line pointing at that form (a bare ``--help`` after the flag would
    be bench's own)."""
    mode = "--step-overhead" if flag == "--overhead-args" else "--data"
    assert cli_main(["bench", mode, f"{flag}=--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m fer_lib bench {mode} {flag}") and "--batch-size" in out
    assert cli_main(["bench", mode, f"{flag}=--bogus"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: unrecognized arguments: --bogus (see `python -m fer_lib bench {mode} {flag}=--help`)\n")
