"""Evaluation: metrics against hand computations and sklearn, ECE, TTA, and the JSON report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, precision_recall_fscore_support
from torch import nn

from fer_lib import EMOTIONS
from fer_lib.data import FERSplit, load_synthetic, preprocess
from fer_lib.evaluate import EvalReport, evaluate_model, predict_proba, save_figures, tta_views
from fer_lib.metrics import (
    classification_metrics,
    expected_calibration_error,
    normalize_confusion,
    reliability_bins,
)
from fer_lib.plots import plot_confusion


def test_classification_metrics_by_hand_and_sklearn():
    y = [0, 0, 0, 1, 1, 2, 3, 3]
    p = [0, 0, 1, 1, 2, 2, 3, 0]
    m = classification_metrics(y, p)
    assert m["accuracy"] == pytest.approx(5 / 8)
    # class 0: predicted 3 times (2 right) -> precision 2/3; 3 true (2 found) -> recall 2/3
    assert m["per_class"]["angry"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["angry"]["recall"] == pytest.approx(2 / 3)
    assert m["per_class"]["angry"]["support"] == 3
    assert m["per_class"]["fear"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert m["per_class"]["neutral"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}  # absent class
    prec, rec, f1, sup = precision_recall_fscore_support(y, p, labels=range(7), zero_division=0)
    assert [m["per_class"][e]["f1"] for e in EMOTIONS] == pytest.approx(f1.tolist())
    assert m["macro_f1"] == pytest.approx(f1_score(y, p, labels=range(7), average="macro", zero_division=0))
    assert m["confusion"][0] == [2, 1, 0, 0, 0, 0, 0] and m["confusion"][3] == [1, 0, 0, 1, 0, 0, 0]
    norm = normalize_confusion(m["confusion"])
    assert norm[0].tolist() == pytest.approx([2 / 3, 1 / 3, 0, 0, 0, 0, 0]) and norm[6].sum() == 0


def test_ece_hand_computed():
    # 4 samples, 2 classes, 15 bins of width 1/15:
    #   conf 0.95 right, conf 0.95 wrong -> bin 14: acc 0.5, conf 0.95, |gap| 0.45, weight 2/4
    #   conf 0.55 right                  -> bin 8 ((0.533, 0.6])
    #   conf 0.58 wrong                  -> bin 8 too ((8/15, 9/15] = (0.533, 0.6]): bin acc 0.5, conf 0.565
    probs = torch.tensor([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.42, 0.58]])
    labels = torch.tensor([0, 1, 0, 0])
    expected = 2 / 4 * abs(0.5 - 0.95) + 2 / 4 * abs(0.5 - 0.565)
    assert expected_calibration_error(probs, labels, 15) == pytest.approx(expected)
    bins = reliability_bins(probs, labels, 15)
    assert bins["count"][14] == 2 and bins["count"][8] == 2 and sum(bins["count"]) == 4
    assert bins["accuracy"][0] is None
    perfect = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(perfect, torch.tensor([0, 1])) == 0.0


class FlipInvariant(nn.Module):
    def __init__(self):
        super().__init__()
        self.g = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 48 * 48, 7))

    def forward(self, x):
        return self.g(x) + self.g(x.flip(-1))


def test_flip_tta_equals_no_tta_for_a_flip_invariant_model():
    images = load_synthetic(n_train=16, n_val=7).splits["Training"].images
    model = FlipInvariant().eval()
    none, flip = predict_proba(model, images, "none"), predict_proba(model, images, "flip")
    torch.testing.assert_close(flip, none)
    assert flip.sum(1).sub(1).abs().max() < 1e-5
    # a model that is not flip-invariant does change
    plain = model.g
    assert not torch.allclose(predict_proba(plain, images, "flip"), predict_proba(plain, images, "none"))
    # batch size does not change the result
    torch.testing.assert_close(predict_proba(plain, images, "tencrop", batch_size=5),
                               predict_proba(plain, images, "tencrop", batch_size=64))


def test_tencrop_views():
    x = torch.arange(2 * 48 * 48, dtype=torch.float32).view(2, 1, 48, 48)
    views = tta_views(x, "tencrop")
    assert len(views) == 10 and all(v.shape == x.shape for v in views)
    big = torch.nn.functional.interpolate(x, size=(52, 52), mode="bilinear", align_corners=False)
    torch.testing.assert_close(views[0], big[..., :48, :48])
    torch.testing.assert_close(views[3], big[..., 4:, 4:])
    torch.testing.assert_close(views[4], big[..., 2:50, 2:50])
    torch.testing.assert_close(views[9], big[..., 2:50, 2:50].flip(-1))
    const = torch.full((1, 1, 48, 48), 0.3)
    assert all(torch.allclose(v, const) for v in tta_views(const, "tencrop"))
    with pytest.raises(ValueError, match="unknown tta 'rotate'"):
        tta_views(x, "rotate")


def test_report_names_split_data_checkpoint_and_tta(tmp_path):
    data = load_synthetic(n_train=8, n_val=40)
    split = data.splits["PublicTest"]
    model = FlipInvariant()
    report = evaluate_model(model, split, "flip", data=data, checkpoint="runs/x/best.pt")
    d = json.loads(report.to_json())
    assert d["split"] == "PublicTest" and d["tta"] == "flip" and d["checkpoint"] == "runs/x/best.pt"
    assert d["data"]["synthetic"] is True and d["data"]["fingerprint"] == data.fingerprint
    assert d["n"] == 40 and "probs" not in d
    m = classification_metrics(split.labels, report.probs.argmax(1))
    assert d["accuracy"] == pytest.approx(m["accuracy"]) and d["confusion"] == m["confusion"]
    assert d["ece"] == pytest.approx(expected_calibration_error(report.probs, split.labels))
    saved = json.loads(report.save(tmp_path / "r" / "report.json").read_text())
    assert saved == d and EvalReport(**saved).summary().startswith(f"{report.model_name} on SYNTHETIC")
    paths = save_figures(report, tmp_path / "r")
    assert [p.name for p in paths] == ["confusion.png", "reliability.png"] and all(p.stat().st_size > 0 for p in paths)
    train_split = FERSplit("Training", split.images, split.labels, split.ids)
    assert "TRAINING split" in evaluate_model(model, train_split).notes[0]


def test_confusion_plot_uses_class_names():
    fig = plot_confusion(np.eye(7, dtype=int) * 3)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(EMOTIONS)


def test_batched_logits_is_one_forward_per_batch_in_eval_mode_and_restores_modes():
    from fer_lib.inference import batched_logits

    images = load_synthetic(n_train=23, n_val=7).splits["Training"].images
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Flatten(),
                          nn.Linear(4 * 48 * 48, 7))
    model.train()
    model[1].eval()  # frozen BatchNorm: must come back frozen
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append((len(i[0]), m.training, torch.is_grad_enabled())))
    out = list(batched_logits(model, images, "flip", batch_size=10, channels_last=True))
    assert [o.shape for o in out] == [(2, 10, 7), (2, 10, 7), (2, 3, 7)]  # views, batch, classes
    assert calls == [(20, False, False), (20, False, False), (6, False, False)]  # one forward per batch
    assert model.training and not model[1].training and model[2].training
    x = preprocess(images)
    with torch.no_grad():
        ref = model.eval()(x)
    torch.testing.assert_close(torch.cat([o[0] for o in out]), ref)
    torch.testing.assert_close(torch.cat([o[1] for o in out]), model(x.flip(-1)))
    model.train()
    model[1].eval()
    loop = batched_logits(model, images, batch_size=10)
    next(loop)
    assert not model.training
    loop.close()  # a caller that stops early (break) gets its modes back too
    assert model.training and not model[1].training


def test_validate_is_the_mean_nll_and_accuracy_of_the_batched_logits():
    from types import SimpleNamespace

    from fer_lib.train import TrainConfig
    from fer_lib.train.setup import precision_for
    from fer_lib.train.steps import validate

    split = load_synthetic(n_train=8, n_val=37).splits["PublicTest"]
    model = nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 7))
    cfg = TrainConfig(eval_batch_size=16, channels_last=False)
    info = SimpleNamespace(rank=0, world_size=1, enabled=False)
    loss, acc = validate(model, split.images, split.labels, cfg, torch.device("cpu"),
                         precision_for("off", torch.device("cpu")), info)
    with torch.no_grad():
        logits = model(preprocess(split.images))
    assert loss == pytest.approx(float(torch.nn.functional.cross_entropy(logits, split.labels)), rel=1e-5)
    assert acc == pytest.approx(float((logits.argmax(1) == split.labels).float().mean()))
    # rank 1 of 2 takes every second image
    info2 = SimpleNamespace(rank=1, world_size=2, enabled=False)
    _, acc2 = validate(model, split.images, split.labels, cfg, torch.device("cpu"),
                       precision_for("off", torch.device("cpu")), info2)
    assert acc2 == pytest.approx(float((logits[1::2].argmax(1) == split.labels[1::2]).float().mean()))


def test_mcnemar_by_hand_and_the_paired_bootstrap():
    from math import comb

    from fer_lib.metrics import compare_models, mcnemar_test

    y = np.array([0, 1, 2, 3, 4, 5, 6] * 6)
    a = y.copy()
    b = y.copy()
    a[:3] = (y[:3] + 1) % 7  # A wrong on 3 faces where B is right
    b[3:12] = (y[3:12] + 1) % 7  # B wrong on 9 faces where A is right
    res = mcnemar_test(y, a, b)
    assert (res["a_only"], res["b_only"]) == (9, 3)
    by_hand = 2 * sum(comb(12, k) for k in range(4)) / 2**12  # two-sided exact binomial, n = 12, k <= 3
    assert res["p_value"] == pytest.approx(by_hand)
    assert mcnemar_test(y, a, a)["p_value"] == 1.0

    small = compare_models(y, a, b, n_boot=500, seed=1)["rows"][0]  # 12 discordant faces: the interval holds 0
    assert small["diff"] == pytest.approx(-6 / 42) and small["low"] < small["diff"] < 0 < small["high"]
    y = np.tile(np.arange(7), 60)  # 420 faces: A alone wrong on 30, B alone wrong on 90
    a, b = y.copy(), y.copy()
    a[:30] = (y[:30] + 1) % 7
    b[30:120] = (y[30:120] + 1) % 7
    cmp = compare_models(y, a, b, n_boot=500, seed=1)
    acc = cmp["rows"][0]
    assert acc["metric"] == "accuracy" and acc["a"] == pytest.approx(390 / 420) and acc["b"] == pytest.approx(330 / 420)
    assert acc["diff"] == pytest.approx(-60 / 420) and acc["low"] <= acc["diff"] <= acc["high"] < 0
    sk = classification_metrics(y, b)
    assert cmp["rows"][1]["b"] == pytest.approx(sk["macro_f1"])
    for row, name in zip(cmp["rows"][2:], EMOTIONS):
        assert row["metric"] == f"f1_{name}" and row["b"] == pytest.approx(sk["per_class"][name]["f1"])
    assert compare_models(y, a, b, n_boot=500, seed=1) == cmp  # the seed fixes the interval
    same = compare_models(y, a, a, n_boot=200)
    assert all(r["diff"] == r["low"] == r["high"] == 0 for r in same["rows"])
    with pytest.raises(ValueError, match="same non-zero length"):
        compare_models(y, a, b[:-1])
