"""SOTAResEmote and the registry: output contract, ablations, gradients, checkpoints, baselines, errors."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

from fer_lib.models import (
    CBAM,
    GRADCAM_TARGETS,
    ModelOutput,
    SOTAResEmoteConfig,
    build_model,
    count_parameters,
    create_model,
    gradcam_target_layer,
    list_models,
)

SWITCHES = SOTAResEmoteConfig.SWITCHES
ALL_OFF = {s: False for s in SWITCHES}


def _x(b, c=1):
    return torch.randn(b, c, 48, 48)


def test_registry_names():
    names = list_models()
    for size in ("small", "medium", "large"):
        assert f"sota_resemote_{size}" in names
    for depth in (18, 34, 50):
        assert f"baseline_resnet{depth}" in names
    assert set(GRADCAM_TARGETS) == set(names)
    with pytest.raises(ValueError, match="unknown model 'resnet18'"):
        create_model("resnet18")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['cbma'\]"):
        create_model("sota_resemote_small_v1", cbma=False)


@pytest.mark.parametrize("name", [n for n in list_models() if n != "sota_resemote_large"])
def test_every_variant_eval_and_train_contract(name):
    model = create_model(name)
    assert model.model_name == name and isinstance(model.config, SOTAResEmoteConfig)
    for b in (1, 2):
        out = model.eval()(_x(b))
        assert isinstance(out, torch.Tensor) and out.shape == (b, 7)
    logits = model.train()(_x(2))
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 7)  # logits in train mode too
    out = model.forward_train(_x(2))
    assert isinstance(out, ModelOutput) and out.logits.shape == (2, 7)
    via_forward = model(_x(2), return_aux=True)  # the route the trainer takes (DDP syncs through forward only)
    assert isinstance(via_forward, ModelOutput) and len(via_forward.aux_logits) == len(out.aux_logits)
    if name.startswith("baseline"):
        assert out.aux_logits == ()
    else:
        assert len(out.aux_logits) == 2 and all(a.shape == (2, 7) for a in out.aux_logits)


def test_large_variant_one_forward():
    model = create_model("sota_resemote_large").eval()
    with torch.no_grad():
        assert model(_x(1)).shape == (1, 7)


@pytest.mark.parametrize("switch", SWITCHES)
def test_small_with_one_module_off(switch):
    model = create_model("sota_resemote_small_v1", **{switch: False})
    with torch.no_grad():
        for b in (1, 2):
            assert model.eval()(_x(b)).shape == (b, 7)
        out = model.train().forward_train(_x(2))
    assert len(out.aux_logits) == (0 if switch == "aux" else 2)
    maps = model.eval().attention_maps(_x(2))
    expected = {"cbam": "cbam", "region": "regions", "anchor": "anchors", "transformer": "transformer"}
    for sw, key in expected.items():
        assert (key in maps) == (sw != switch), f"{key} present={key in maps} with {switch} off"


def test_attention_maps_contract():
    model = create_model("sota_resemote_small_v1").eval()
    with torch.no_grad():
        maps = model.attention_maps(_x(2))
        logits = model(_x(2))
    h, w = maps["token_grid"]
    assert maps["logits"].shape == logits.shape
    assert len(maps["cbam"]) == 1 and maps["cbam"][0].shape == (2, 1, h, w)
    assert maps["regions"].shape == (2, len(maps["region_names"]), h, w)
    assert maps["anchors"].shape == (len(maps["anchor_names"]), 2)
    assert ((maps["anchors"] >= 0) & (maps["anchors"] <= 1)).all()
    t = 1 + h * w + len(maps["region_names"]) + len(maps["anchor_names"])
    heads = model.config.transformer_heads
    assert [a.shape for a in maps["transformer"]] == [(2, heads, t, t)] * model.config.transformer_depth
    baseline_maps = create_model("baseline_resnet18").eval().attention_maps(_x(1))
    assert set(baseline_maps) == {"token_grid", "logits"}


def test_gradients_reach_every_parameter_and_anchors_move():
    # drop_path off so that no residual branch is skipped for the whole (tiny) batch.
    model = create_model("sota_resemote_small_v1", drop_path_rate=0.0).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    y = torch.tensor([3, 5])
    before = model.anchor.anchor_positions().detach().clone()
    # timm zero-initialises the last BN of every residual block (zero_init_last), so at step 0 the convs
    # inside the blocks get exactly zero gradient; after one step every parameter must receive one.
    for _ in range(2):
        opt.zero_grad()
        out = model.forward_train(_x(2))
        loss = F.cross_entropy(out.logits, y) + sum(0.3 * F.cross_entropy(a, y) for a in out.aux_logits)
        loss.backward()
        opt.step()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not (p.grad != 0).any()]
    assert not missing, f"no gradient for: {missing}"
    assert (model.anchor.anchor_positions().detach() - before).abs().max() > 1e-4


@pytest.mark.parametrize("name", ["sota_resemote_small_v1", "baseline_resnet18"])
def test_gradcam_target_is_a_conv_map_feeding_the_logits(name):
    model = create_model(name).eval()
    layer = gradcam_target_layer(model)
    assert layer is model.get_submodule(GRADCAM_TARGETS[name])
    grabbed = []
    handle = layer.register_forward_hook(lambda m, i, o: grabbed.append(o))
    logits = model(_x(1))
    handle.remove()
    fmap = grabbed[0]
    assert fmap.ndim == 4 and fmap.shape[-2:] == model.grid
    (g,) = torch.autograd.grad(logits[0, 3], fmap)
    assert (g != 0).any()


def test_checkpoint_round_trip(tmp_path):
    model = create_model("sota_resemote_small_v1", cbam=False, in_chans=3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    out = model.train()(_x(4, 3))
    F.cross_entropy(out, torch.tensor([0, 1, 2, 3])).backward()
    opt.step()  # BN statistics and GeM p are no longer at their initial values
    path = tmp_path / "ckpt.pt"
    torch.save({"model_name": model.model_name, "model_config": model.config.to_dict(),
                "model": model.state_dict()}, path)
    ckpt = torch.load(path, weights_only=True)
    clone = build_model(ckpt["model_name"], ckpt["model_config"])
    clone.load_state_dict(ckpt["model"])
    assert clone.config == model.config and clone.model_name == "sota_resemote_small_v1"
    x = _x(3, 3)
    with torch.no_grad():
        torch.testing.assert_close(clone.eval()(x), model.eval()(x), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="unknown field"):
        build_model("sota_resemote_small_v1", {**ckpt["model_config"], "cmab": True})


@pytest.mark.parametrize("depth", [18, 50])
def test_all_off_is_the_baseline(depth):
    small = {18: "sota_resemote_small_v1", 50: "sota_resemote_large"}[depth]
    off = create_model(small, **ALL_OFF, dropout=0.0)
    base = create_model(f"baseline_resnet{depth}")
    assert count_parameters(off) == count_parameters(base)
    off.load_state_dict(base.state_dict())  # strict: the very same modules
    x = _x(2)
    with torch.no_grad():
        torch.testing.assert_close(off.eval()(x), base.eval()(x))


@pytest.mark.parametrize("chans", [1, 3])
def test_one_and_three_channels(chans):
    model = create_model("sota_resemote_small_v1", in_chans=chans).eval()
    with torch.no_grad():
        assert model(_x(2, chans)).shape == (2, 7)
    with pytest.raises(ValueError, match=rf"expected input \[B, {chans}, 48, 48\]"):
        model(_x(2, 4 - chans))


def test_pretrained_without_hub_gives_clear_message(monkeypatch):
    real = timm.create_model

    def offline(name, pretrained=False, **kw):
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return real(name, pretrained=False, **kw)

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(RuntimeError, match="no internet / HF hub unreachable; use pretrained=False"):
        create_model("sota_resemote_small_v1", pretrained=True)
    assert create_model("baseline_resnet18", pretrained=False).model_name == "baseline_resnet18"


def test_config_round_trip_and_validation():
    cfg = SOTAResEmoteConfig(cbam=False, fusion_dim=128)
    assert SOTAResEmoteConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="stem='nomax'"):
        SOTAResEmoteConfig(stem="nomax")
    with pytest.raises(ValueError, match="in_chans=2"):
        SOTAResEmoteConfig(in_chans=2)


def test_upsampled_input_size_changes_grid():
    model = create_model("sota_resemote_small_v1", input_size=96, stem="default", fusion_grid="last").eval()
    assert model.grid == (3, 3)
    with torch.no_grad():
        assert model(_x(1)).shape == (1, 7)  # still fed 48x48; the model resizes inside


def test_cbam_inside_the_residual_blocks_as_in_the_paper():
    """cbam_where="blocks": one CBAM per residual block of layer2-4, applied before the residual sum."""
    model = create_model("sota_resemote_small_v1", cbam_where="blocks", stem="default", input_size=64).eval()
    blocks = model.block_cbams()
    assert len(blocks) == 6 and model.cbam is None  # resnet18: 2 blocks in each of layer2, layer3, layer4
    assert [b.channel.fc2.out_channels for b in blocks] == [128, 128, 256, 256, 512, 512]
    assert not any(isinstance(m, CBAM) for m in model.backbone.layer1.modules())
    x = _x(2)
    with torch.no_grad():
        maps = model.attention_maps(x)
        logits = model(x)
    torch.testing.assert_close(maps["logits"], logits)  # the hooks that collect the gates change nothing
    assert [tuple(g.shape[-2:]) for g in maps["cbam"]] == [(8, 8), (8, 8), (4, 4), (4, 4), (2, 2), (2, 2)]
    assert all(((g > 0) & (g < 1)).all() for g in maps["cbam"])
    # the block's output really goes through the gate: closing every gate changes the logits (timm zero-initialises
    # each block's last BN, which would make the residual branch 0 whatever the gate: give it a weight first)
    with torch.no_grad():
        for layer in (model.backbone.layer2, model.backbone.layer3, model.backbone.layer4):
            for block in layer:
                block.bn2.weight.fill_(1.0)
        opened = model(x)
        for b in blocks:
            b.channel.fc2.bias.fill_(-1e4)
        assert not torch.allclose(model(x), opened, atol=1e-3)
    both = create_model("sota_resemote_small_v1", cbam_where="both", stem="default", input_size=64)
    assert len(both.block_cbams()) == 6 and both.cbam is not None
    off = create_model("sota_resemote_small_v1", cbam_where="blocks", cbam=False, stem="default", input_size=64)
    assert off.block_cbams() == [] and off.cbam is None
    with pytest.raises(ValueError, match="cbam_where"):
        SOTAResEmoteConfig(cbam_where="everywhere")


def test_lean_design_fusion_on_the_first_grid_and_transformer_without_map_tokens():
    model = create_model("sota_resemote_small").eval()
    assert model.grid == (8, 8) and model.config.input_size == 64  # layer2's grid at 64 px, stock stem
    with torch.no_grad():
        maps = model.attention_maps(_x(2))
    assert maps["regions"].shape[-2:] == (8, 8)
    t = 1 + len(maps["region_names"]) + len(maps["anchor_names"])  # class + regions + anchors, no map cells
    assert [a.shape for a in maps["transformer"]] == [(2, model.config.transformer_heads, t, t)]
    with pytest.raises(ValueError, match="map_tokens=False needs"):
        create_model("sota_resemote_small_v1", transformer_map_tokens=False, region=False, anchor=False)
