"""The model's own attention: rollout against a hand loop, the maps from attention_maps, and the figure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fer_lib.data import make_synthetic_faces, preprocess
from fer_lib.explain import attention_rollout, class_token_map, get_attention, plot_attention
from fer_lib.models import create_model


@pytest.fixture(scope="module")
def sota():
    torch.manual_seed(0)
    return create_model("sota_resemote_small_v1")


def _random_attention(b, heads, t, gen):
    return torch.softmax(torch.randn(b, heads, t, t, generator=gen) * 2, dim=-1)


def test_rollout_matches_a_hand_loop():
    gen = torch.Generator().manual_seed(0)
    layers = [_random_attention(2, 4, 5, gen) for _ in range(3)]
    ref = []
    for b in range(2):  # Abnar & Zuidema: R = prod_l rownorm(0.5 * mean_heads(A_l) + 0.5 * I), last layer leftmost
        r = np.eye(5)
        for a in layers:
            m = 0.5 * a[b].numpy().astype(np.float64).mean(0) + 0.5 * np.eye(5)
            m /= m.sum(1, keepdims=True)
            r = m @ r
        ref.append(r)
    out = attention_rollout(layers)
    np.testing.assert_allclose(out.numpy(), np.stack(ref), atol=1e-5)
    np.testing.assert_allclose(out.sum(-1).numpy(), 1.0, atol=1e-5)  # still a distribution over input tokens
    no_res = attention_rollout(layers[:1], residual=False)
    np.testing.assert_allclose(no_res.numpy(), layers[0].mean(1).numpy(), atol=1e-6)
    np.testing.assert_allclose(attention_rollout(layers[:1], head_fusion="max").numpy()[0, 0].sum(), 1, atol=1e-5)
    with pytest.raises(ValueError, match="head_fusion"):
        attention_rollout(layers, head_fusion="median")
    with pytest.raises(ValueError, match="at least one"):
        attention_rollout([])


def test_class_token_map_reads_the_grid_cells():
    # one layer, no residual: the class token's row, cells 1..h*w, row-major
    a = torch.zeros(1, 1, 1 + 6 + 2, 1 + 6 + 2)
    a[0, 0, 0, 1:7] = torch.arange(1, 7, dtype=torch.float32) / 21
    a[0, 0, 1:, 0] = 1.0
    got = class_token_map([a], (2, 3), residual=False)
    np.testing.assert_allclose(got[0], np.arange(1, 7).reshape(2, 3) / 21, atol=1e-6)


def test_get_attention_matches_the_model(sota):
    faces = make_synthetic_faces(3, seed=4)[0]
    sota.train()
    att = get_attention(sota, faces)
    assert sota.training  # mode restored
    h, w = att["token_grid"]
    assert att["cbam"].shape == (3, h, w) and ((att["cbam"] > 0) & (att["cbam"] < 1)).all()
    assert att["regions"].shape == (3, 4, h, w) and len(att["region_names"]) == 4
    np.testing.assert_allclose(att["regions"].sum((2, 3)), 1.0, atol=1e-5)  # a spatial softmax per region
    assert att["anchors"].shape == (len(att["anchor_names"]), 2)
    assert ((att["anchors"] >= 0) & (att["anchors"] <= 1)).all()
    with torch.no_grad():
        sota.eval()
        maps = sota.attention_maps(preprocess(faces))
        sota.train()
    ref = class_token_map(maps["transformer"], (h, w))
    np.testing.assert_allclose(att["rollout"], ref, atol=1e-6)
    np.testing.assert_allclose(att["probs"], torch.softmax(maps["logits"], 1).numpy(), atol=1e-5)


def test_plot_attention_draws_every_switched_on_module(sota):
    faces = make_synthetic_faces(2, seed=5)[0]
    fig = plot_attention(sota, faces, n=2)
    titles = [ax.get_title() for ax in fig.get_axes()[: len(fig.get_axes()) // 2]]
    assert titles == ["face", "CBAM spatial", "region: eyes_brows", "region: nose", "region: mouth",
                      "region: face", "anchors", "class-token rollout"]
    anchors_ax = fig.get_axes()[6]
    assert len(anchors_ax.texts) == len(sota.anchor.anchor_names)  # one name per anchor
    plain = create_model("sota_resemote_small_v1", cbam=False, region=False, anchor=False, transformer=False)
    fig = plot_attention(plain, faces, n=1)
    assert [ax.get_title() for ax in fig.get_axes()] == ["face"]
