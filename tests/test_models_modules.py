"""The attention building blocks against hand-written references (weights copied, formulas written out)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fer_lib.layers.transformer_refine import SelfAttention
from fer_lib.models import (
    CBAM,
    FER_ANCHORS,
    FER_REGIONS,
    AnchorAttention,
    GeM,
    RegionAttention,
    StageFusion,
    TransformerRefine,
)


def _randomise_bn(bn: nn.BatchNorm2d) -> None:
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)


def cbam_reference(x, w1, b1, w2, b2, k, bn_mean, bn_var, bn_w, bn_b, eps):
    """CBAM written out: per-sample MLP on the pooled vectors, a padded conv as a double loop over offsets."""
    B, C, H, W = x.shape
    out = torch.empty_like(x)
    maps = torch.empty(B, 1, H, W)
    r = k.shape[-1] // 2
    for b in range(B):
        avg = x[b].reshape(C, -1).mean(1)
        mx = x[b].reshape(C, -1).max(1).values

        def mlp(v):
            return w2 @ torch.relu(w1 @ v + b1) + b2

        xc = x[b] * torch.sigmoid(mlp(avg) + mlp(mx))[:, None, None]
        desc = torch.stack([xc.mean(0), xc.max(0).values])  # [2, H, W]
        padded = torch.zeros(2, H + 2 * r, W + 2 * r)
        padded[:, r:r + H, r:r + W] = desc
        z = torch.zeros(H, W)
        for di in range(k.shape[-2]):
            for dj in range(k.shape[-1]):
                z += (k[0, :, di, dj, None, None] * padded[:, di:di + H, dj:dj + W]).sum(0)
        z = (z - bn_mean) / math.sqrt(bn_var + eps) * bn_w + bn_b
        maps[b, 0] = torch.sigmoid(z)
        out[b] = xc * maps[b, 0]
    return out, maps


@pytest.mark.parametrize("hw,kernel", [(6, 7), (3, 3)])
def test_cbam_matches_reference(hw, kernel):
    cbam = CBAM(32, reduction=4, kernel_size=kernel)
    _randomise_bn(cbam.spatial.bn)
    cbam.eval()
    x = torch.relu(torch.randn(2, 32, hw, hw))
    y, where = cbam.forward_with_map(x)
    ch, sp = cbam.channel, cbam.spatial
    ref, ref_map = cbam_reference(
        x, ch.fc1.weight[:, :, 0, 0], ch.fc1.bias, ch.fc2.weight[:, :, 0, 0], ch.fc2.bias, sp.conv.weight,
        sp.bn.running_mean.item(), sp.bn.running_var.item(), sp.bn.weight.item(), sp.bn.bias.item(), sp.bn.eps,
    )
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(where, ref_map, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cbam(x), y)
    assert where.shape == (2, 1, hw, hw) and (where > 0).all() and (where < 1).all()


def test_cbam_rejects_even_kernel():
    with pytest.raises(ValueError, match="odd"):
        CBAM(16, kernel_size=4)


def test_gem_matches_formula_and_limits():
    x = torch.rand(2, 3, 4, 5) + 0.01
    gem = GeM(p=3.0)
    y = gem(x)
    for b in range(2):
        for c in range(3):
            vals = [float(v) for v in x[b, c].flatten()]
            ref = (sum(v**3 for v in vals) / len(vals)) ** (1 / 3)
            assert abs(float(y.detach()[b, c]) - ref) < 1e-5
    torch.testing.assert_close(GeM(p=1.0)(x), x.mean(dim=(2, 3)))  # p = 1 is average pooling
    big = GeM(p=60.0)(x)
    mx = x.amax(dim=(2, 3))
    assert ((mx - big) >= -1e-5).all() and ((mx - big) / mx < 0.05).all()  # large p approaches max
    y.sum().backward()
    assert gem.p.grad is not None and gem.p.grad.abs() > 0  # p is learned
    with pytest.raises(ValueError, match="p must be > 0"):
        GeM(p=0.0)


def test_region_attention_priors_and_pooling():
    torch.manual_seed(1)
    mod = RegionAttention(8)
    x = torch.randn(2, 8, 6, 6)
    feats, maps = mod(x)
    assert feats.shape == (2, 4, 8) and maps.shape == (2, 4, 6, 6)
    torch.testing.assert_close(maps.sum(dim=(2, 3)), torch.ones(2, 4))
    names = mod.region_names
    # Untrained (zero refinement) maps are the priors: eyes above nose above mouth.
    rows = (maps[0].sum(dim=2) * torch.arange(6.0)).sum(dim=1)  # expected row of each region
    assert rows[names.index("eyes_brows")] < rows[names.index("nose")] < rows[names.index("mouth")]
    # Hand-written prior for the mouth at cell (i, j): centres (j + .5)/6, (i + .5)/6.
    _, cx, cy, sx, sy = next(r for r in FER_REGIONS if r[0] == "mouth")
    logp = torch.tensor([[-((j + .5) / 6 - cx) ** 2 / (2 * sx**2) - ((i + .5) / 6 - cy) ** 2 / (2 * sy**2)
                          for j in range(6)] for i in range(6)])
    torch.testing.assert_close(maps[1, names.index("mouth")], logp.flatten().softmax(0).view(6, 6))
    # Pooled feature = map-weighted sum of the cells.
    r = names.index("nose")
    ref = (x[1] * maps[1, r]).sum(dim=(1, 2))
    torch.testing.assert_close(feats[1, r], ref)


def test_anchor_attention_moves_towards_evidence():
    """Toy task: channel 0 lights up around (0.8, 0.8); maximising anchor 0's channel-0 feature moves it there."""
    torch.manual_seed(0)
    mod = AnchorAttention(4, sigma=0.15)
    h = w = 12
    ys, xs = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij")
    blob = torch.exp(-((xs - 0.8) ** 2 + (ys - 0.8) ** 2) / (2 * 0.1**2))
    x = torch.zeros(2, 4, h, w)
    x[:, 0] = blob
    target = torch.tensor([0.8, 0.8])
    start = mod.anchor_positions().detach().clone()
    assert start.shape == (len(FER_ANCHORS), 2) and ((start > 0) & (start < 1)).all()
    torch.testing.assert_close(start[0], torch.tensor(FER_ANCHORS[0][1:]))
    opt = torch.optim.Adam(mod.parameters(), lr=0.05)
    for _ in range(15):
        feats, maps = mod(x)
        loss = -feats[:, 0, 0].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    end = mod.anchor_positions().detach()
    assert (end - start).abs().max() > 1e-3  # anchors move when trained
    assert (end[0] - target).norm() < (start[0] - target).norm() - 0.05  # ... towards the evidence
    torch.testing.assert_close(maps.sum(dim=(2, 3)), torch.ones(2, len(FER_ANCHORS)))


def test_self_attention_matches_torch_mha():
    torch.manual_seed(0)
    ours = SelfAttention(16, heads=4)
    mha = nn.MultiheadAttention(16, 4, bias=True, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(ours.qkv.weight)
        mha.in_proj_bias.zero_()
        mha.out_proj.weight.copy_(ours.proj.weight)
        mha.out_proj.bias.copy_(ours.proj.bias)
    x = torch.randn(2, 5, 16)
    y, w = ours(x)
    y_ref, w_ref = mha(x, x, x, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w, w_ref, rtol=1e-5, atol=1e-5)


def test_transformer_refine_shapes_and_errors():
    tr = TransformerRefine(32, grid=(3, 3), dim=16, depth=2, heads=4, num_extra=5)
    cls, attn = tr(torch.randn(2, 32, 3, 3), torch.randn(2, 5, 32))
    assert cls.shape == (2, 16) and len(attn) == 2
    assert all(a.shape == (2, 4, 15, 15) for a in attn)
    torch.testing.assert_close(attn[0].sum(-1), torch.ones(2, 4, 15))
    with pytest.raises(ValueError, match="built for a"):
        tr(torch.randn(2, 32, 4, 4), torch.randn(2, 5, 32))
    with pytest.raises(ValueError, match="divisible"):
        TransformerRefine(32, grid=(3, 3), dim=10, heads=4)


def test_stage_fusion_matches_reference():
    torch.manual_seed(0)
    fus = StageFusion((4, 8, 16), out_channels=6, target_index=-2).eval()
    with torch.no_grad():
        fus.weight_logits.copy_(torch.tensor([0.3, -0.2, 0.5]))
    feats = [torch.randn(2, 4, 12, 12), torch.randn(2, 8, 6, 6), torch.randn(2, 16, 3, 3)]
    out = fus(feats)
    w = torch.softmax(torch.tensor([0.3, -0.2, 0.5]), 0)
    p = [fus.proj[i](f) for i, f in enumerate(feats)]
    ref = w[0] * F.avg_pool2d(p[0], 2) + w[1] * p[1] + w[2] * F.interpolate(p[2], size=(6, 6), mode="bilinear")
    assert out.shape == (2, 6, 6, 6)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fus.fusion_weights().sum(), torch.tensor(1.0))


