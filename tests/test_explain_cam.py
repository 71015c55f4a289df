"""Grad-CAM / Grad-CAM++ / EigenCAM wrapper: hand-written references, mode restoration, bad targets, tokens,
overlays and the class grid. (That maps of a *trained* model land on the expression: test_explain_trained.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fer_lib.data import make_synthetic_faces, preprocess
from fer_lib.explain import FERCam, cam_grid, compute_cam, overlay_cam, tokens_to_map, upsample_face
from fer_lib.explain import cam as cam_module
from fer_lib.models import ModelOutput, create_model, gradcam_target_layer


@pytest.fixture(scope="module")
def faces():
    return make_synthetic_faces(6, seed=1)[0]


@pytest.fixture(scope="module")
def baseline():
    torch.manual_seed(0)
    return create_model("baseline_resnet18").eval()


@pytest.fixture(scope="module")
def sota():
    torch.manual_seed(0)
    return create_model("sota_resemote_small_v1").eval()


def _acts_and_grads(model, layer, x, targets):
    """Target-layer activations and d(score of target)/d(activations), by hand."""
    store = {}
    handle = layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        logits = model(x)
    finally:
        handle.remove()
    a = store["a"]
    if targets is None:
        targets = logits.argmax(1).tolist()
    (g,) = torch.autograd.grad(logits[torch.arange(len(x)), torch.tensor(targets)].sum(), a)
    return a.detach(), g


def _minmax(t):  # the package's per-image scaling: (x - min) / (max + 1e-7) after shifting
    t = t - t.amin((1, 2), keepdim=True)
    return t / (t.amax((1, 2), keepdim=True) + 1e-7)


def _finish(low_res):
    """ReLU -> scale -> bilinear to 48x48 (half-pixel centres, like cv2.resize) -> scale again."""
    up = F.interpolate(_minmax(low_res.clamp_min(0))[:, None], size=(48, 48), mode="bilinear", align_corners=False)
    return _minmax(up[:, 0]).numpy()


@pytest.mark.parametrize("targets", [None, [3, 0, 6, 1, 2, 5]])
def test_gradcam_matches_hand_reference(baseline, faces, targets):
    x = preprocess(faces)
    a, g = _acts_and_grads(baseline, gradcam_target_layer(baseline), x, targets)
    ref = _finish((g.mean((2, 3), keepdim=True) * a).sum(1))  # Selvaraju et al. eq. 1-2
    got = compute_cam(baseline, faces, target=targets, method="gradcam")
    assert got.shape == (6, 48, 48) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_gradcam_plusplus_and_eigencam_match_references(sota, faces):
    x = preprocess(faces)
    a, g = _acts_and_grads(sota, sota.feature_map, x, [4] * 6)
    # Grad-CAM++ (Chattopadhay et al. eq. 19 with the exponential score): alpha = g^2 / (2 g^2 + sum(A) g^3)
    alpha = g**2 / (2 * g**2 + a.sum((2, 3), keepdim=True) * g**3 + 1e-6)
    alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
    w = (alpha * g.clamp_min(0)).sum((2, 3), keepdim=True)
    np.testing.assert_allclose(compute_cam(sota, faces, target=4, method="gradcam++"),
                               _finish((w * a).sum(1)), atol=1e-4)
    # EigenCAM: projection on the first right-singular vector of the centred [h*w, C] activations,
    # sign chosen so that the larger magnitude is positive
    refs = []
    for act in a:
        m = act.flatten(1).T.double()
        m = m - m.mean(0)
        proj = m @ torch.linalg.svd(m, full_matrices=False).Vh[0]
        proj = -proj if proj.min().abs() > proj.max().abs() else proj
        refs.append(proj.reshape(act.shape[1:]).float())
    np.testing.assert_allclose(compute_cam(sota, faces, method="EigenCAM"), _finish(torch.stack(refs)), atol=1e-4)


def test_modes_grads_and_hooks_are_restored(sota, faces):
    sota.train()
    sota.backbone.bn1.eval()  # a deliberately frozen BatchNorm must stay frozen
    modes = {n: m.training for n, m in sota.named_modules()}
    p = next(sota.parameters())
    p.grad = torch.full_like(p, 0.5)  # a user's accumulated gradient must survive
    cam = FERCam(sota, method="gradcam")
    out = cam(faces[:2])
    assert out.shape == (2, 48, 48) and out.max() == pytest.approx(1.0, abs=1e-5)
    assert {n: m.training for n, m in sota.named_modules()} == modes
    assert torch.equal(p.grad, torch.full_like(p, 0.5))
    assert all(not m._forward_hooks for m in sota.modules())
    assert cam.last_targets.shape == (2,) and np.allclose(cam.last_probs.sum(1), 1, atol=1e-5)

    def boom(*args, **kwargs):
        raise RuntimeError("boom in the head")

    sota.forward_head = boom  # an exception inside the package's forward
    try:
        with pytest.raises(RuntimeError, match="boom"):
            cam(faces[:2])
    finally:
        del sota.forward_head
    assert {n: m.training for n, m in sota.named_modules()} == modes
    assert all(not m._forward_hooks for m in sota.modules())
    sota.eval()
    p.grad = None


def test_with_block_hooks_the_layer_once_and_removes_the_hooks_at_its_end(sota, faces):
    sota.train()
    modes = {n: m.training for n, m in sota.named_modules()}
    layer = gradcam_target_layer(sota)
    with FERCam(sota, method="gradcam") as cam:
        first = cam(faces[:2])
        hooks = dict(layer._forward_hooks)
        assert hooks  # held for the block
        second = cam(faces[:2])
        assert dict(layer._forward_hooks) == hooks  # the same hooks serve every call in the block
        assert np.allclose(first, second, atol=1e-5)
        assert {n: m.training for n, m in sota.named_modules()} == modes
    assert all(not m._forward_hooks for m in sota.modules())
    assert np.allclose(FERCam(sota, method="gradcam")(faces[:2]), first, atol=1e-5)  # same maps outside a block
    with pytest.raises(RuntimeError, match="inside"), FERCam(sota, method="gradcam"):
        raise RuntimeError("an error inside the block is not swallowed")
    assert all(not m._forward_hooks for m in sota.modules())
    sota.eval()


@pytest.mark.parametrize("bad, error", [(7, ValueError), (-1, ValueError), ([0, 1], ValueError),
                                        ([0, 1, 2, 3, 4, 99], ValueError), (True, TypeError), (2.0, TypeError)])
def test_bad_targets_raise_before_the_package(monkeypatch, baseline, faces, bad, error):
    def must_not_run(*args, **kwargs):
        raise AssertionError("pytorch_grad_cam was called with an invalid target")

    monkeypatch.setitem(cam_module.METHODS, "gradcam", must_not_run)
    with pytest.raises(error, match="target"):
        compute_cam(baseline, faces, target=bad)


def test_unknown_method_lists_the_choices(baseline):
    with pytest.raises(ValueError, match="gradcam"):
        FERCam(baseline, method="scorecam")


class _TokenNet(nn.Module):
    """Conv patch embedding -> tokens [B, 1 + 36, D] with a class token -> token layer (CAM target) -> head.

    The token layer is an identity on the conv map's cells, so CAM on the tokens must equal CAM on the map.
    """

    def __init__(self, always_model_output: bool = False):
        super().__init__()
        self.embed = nn.Conv2d(1, 16, 8, stride=8)  # 48 -> 6x6
        self.cls = nn.Parameter(torch.randn(1, 1, 16))
        self.feature_map = nn.Identity()
        self.tokens = nn.Identity()
        self.head = nn.Linear(16, 7)
        self.always_model_output = always_model_output

    def forward(self, x):
        fmap = self.feature_map(torch.relu(self.embed(x)))
        t = torch.cat([self.cls.expand(len(x), -1, -1), fmap.flatten(2).transpose(1, 2)], dim=1)
        logits = self.head(self.tokens(t)[:, 1:].mean(1))
        return ModelOutput(logits, ()) if self.always_model_output else logits


def test_tokens_to_map_and_cam_on_a_token_layer(faces):
    t = torch.arange(2 * 37 * 3, dtype=torch.float32).reshape(2, 37, 3)
    ref = t[:, 1:].reshape(2, 6, 6, 3).permute(0, 3, 1, 2)
    assert torch.equal(tokens_to_map(t), ref)  # class token dropped, row-major cells
    assert torch.equal(tokens_to_map(t[:, 1:]), ref)
    assert torch.equal(tokens_to_map(ref), ref)  # conv maps pass through
    with pytest.raises(ValueError, match="token grid"):
        tokens_to_map(t, grid=(5, 5))
    torch.manual_seed(0)
    net = _TokenNet().eval()
    on_map = compute_cam(net, faces, target=2, target_layer=net.feature_map)
    on_tokens = compute_cam(net, faces, target=2, target_layer=net.tokens)
    np.testing.assert_allclose(on_tokens, on_map, atol=1e-5)


def test_a_model_output_is_unwrapped(faces):
    torch.manual_seed(0)
    plain, wrapped = _TokenNet(), _TokenNet(always_model_output=True)
    wrapped.load_state_dict(plain.state_dict())
    np.testing.assert_allclose(compute_cam(wrapped.eval(), faces, target=1),
                               compute_cam(plain.eval(), faces, target=1), atol=1e-6)


def test_overlay_blends_bicubic_face_and_bilinear_map(faces):
    face, heat = faces[0].numpy(), np.linspace(0, 1, 36, dtype=np.float32).reshape(6, 6)
    out = overlay_cam(face, heat, size=192, alpha=0.0)
    assert out.shape == (192, 192, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], upsample_face(face, 192))  # alpha 0: the face only
    only_map = overlay_cam(face, heat, size=192, alpha=1.0, cmap="gray")
    ref = F.interpolate(torch.from_numpy(heat)[None, None], size=(192, 192), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(only_map[..., 0] / 255.0, ref[0, 0].numpy(), atol=1.5 / 255)
    with pytest.raises(ValueError, match="alpha"):
        overlay_cam(face, heat, alpha=2)


def test_cam_grid_has_one_row_per_emotion(baseline):
    from fer_lib.data import FERSplit

    images, labels = make_synthetic_faces(21, seed=2)
    split = FERSplit("PublicTest", images, labels, [str(i) for i in range(21)])
    fig = cam_grid(baseline, split, per_class=2, method="gradcam++", target="true")
    axes = fig.get_axes()
    assert len(axes) == 14 and axes[0].get_ylabel() == "angry" and axes[-2].get_ylabel() == "neutral"
    assert all(ax.get_title().startswith("->") for ax in axes)
    with pytest.raises(ValueError, match="target"):
        cam_grid(baseline, split, target="maybe")
