"""What the bundled course model learned (fer_lib.explain.learned), against an untrained copy and the library's own
attention path; and notebook 10 draws these figures from the bundled file, not from a toy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import fer_lib
from fer_lib.explain import anchor_shift, cbam_gates, get_attention, learned_scalars, region_maps_by_class
from fer_lib.inference import bundled_names
from fer_lib.layers import FER_ANCHORS
from fer_lib.models import create_model

COURSE = "fer2013_sota_resemote_small"
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "10_gradcam_and_attention.ipynb"

pytestmark = pytest.mark.skipif(COURSE not in bundled_names(), reason="the course model is not bundled")


@pytest.fixture(scope="module")
def trained():
    return fer_lib.pretrained(COURSE)


@pytest.fixture(scope="module")
def untrained():
    torch.manual_seed(0)
    return create_model("sota_resemote_small").eval()


@pytest.fixture(scope="module")
def faces():
    from fer_lib.data import make_synthetic_faces

    return make_synthetic_faces(14, seed=3)[0]  # uint8 [14, 48, 48]


def test_cbam_gates_one_per_block_on_each_stage_grid_and_as_the_model_computes_them(trained, faces):
    gates = cbam_gates(trained, faces)
    assert [g["name"] for g in gates] == ["layer2.0", "layer2.1", "layer3.0", "layer3.1", "layer4.0", "layer4.1"]
    assert [g["spatial"].shape[1:] for g in gates] == [(8, 8)] * 2 + [(4, 4)] * 2 + [(2, 2)] * 2
    assert [g["channel"].shape[1] for g in gates] == [128] * 2 + [256] * 2 + [512] * 2
    with torch.no_grad():
        own = trained.attention_maps(fer_lib.inference.to_model_input(faces, trained))["cbam"]
    for g, ref in zip(gates, own):
        np.testing.assert_allclose(g["spatial"], ref[:, 0].numpy(), atol=1e-5)
    for g in gates:
        # sigmoid gates: in [0, 1] (trained channel gates saturate to 1.0 in float32)
        assert ((g["channel"] >= 0) & (g["channel"] <= 1)).all() and ((g["spatial"] >= 0) & (g["spatial"] <= 1)).all()


def test_training_moved_what_the_untrained_model_leaves_at_its_start(trained, untrained, faces):
    start = anchor_shift(untrained)
    assert start["names"] == [a[0] for a in FER_ANCHORS]
    np.testing.assert_allclose(start["initial"], [[a[1], a[2]] for a in FER_ANCHORS], atol=1e-6)
    assert start["moved_px"].max() < 1e-4 and np.allclose(start["sigma_learned"], start["sigma_initial"])
    moved = anchor_shift(trained)
    np.testing.assert_allclose(moved["initial"], start["initial"])
    assert moved["moved_px"].max() > 0.1  # training moved at least one anchor by a tenth of a pixel
    assert learned_scalars(untrained)["gem_p"] == pytest.approx(3.0)
    scalars = learned_scalars(trained)
    assert scalars["gem_p"] == pytest.approx(float(trained.pool.p.detach().clamp(min=1.0)))
    assert scalars["gem_p"] != pytest.approx(3.0, abs=1e-3)
    assert list(scalars["fusion"]) == ["layer2 8x8", "layer3 4x4", "layer4 2x2"]
    assert sum(scalars["fusion"].values()) == pytest.approx(1.0)
    assert list(learned_scalars(untrained)["fusion"].values()) == pytest.approx([1 / 3] * 3)
    spread = [g["spatial"].max() - g["spatial"].min() for g in cbam_gates(trained, faces)]
    assert max(spread) > 0.1  # trained spatial gates tell cells apart


def test_region_maps_by_class_and_the_token_rollout(trained, faces):
    by_class = region_maps_by_class(trained, faces)
    assert by_class["counts"].sum() == len(faces) and by_class["maps"].shape == (7, 4, 8, 8)
    for c in np.flatnonzero(by_class["counts"]):
        np.testing.assert_allclose(by_class["maps"][c].sum((1, 2)), 1.0, atol=1e-4)  # each map a softmax
    att = get_attention(trained, faces)
    assert att["rollout"].shape == (len(faces), 8, 8)
    np.testing.assert_allclose(att["rollout"].sum((1, 2)), 1.0, atol=1e-4)
    assert len(att["rollout_token_names"]) == att["rollout_tokens"].shape[1] == 4 + len(FER_ANCHORS)
    np.testing.assert_allclose(att["rollout_tokens"].sum(1), 1.0, atol=1e-5)


def test_notebook_10_draws_the_learned_modules_from_the_bundled_file():
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert f'course = fer_lib.pretrained("{COURSE}")' in code
    for call in ("cbam_gates(course", "anchor_shift(course", "learned_scalars(course", "region_maps_by_class(course",
                 "plot_attention(course"):
        assert call in code, call
    assert "course = " not in code.replace(f'course = fer_lib.pretrained("{COURSE}")', "")  # never rebound
