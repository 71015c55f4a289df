"""Batched augmentation, mixup/CutMix, TensorBatches and preprocess, checked against references."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fer_lib.data import (
    FER_MEAN,
    FER_STD,
    Augment,
    AugmentConfig,
    TensorBatches,
    make_synthetic_faces,
    mixup_cutmix,
    preprocess,
    to_unit,
)


@pytest.fixture(scope="module")
def x01():
    images, _ = make_synthetic_faces(64, seed=3)
    return to_unit(images)  # float [64, 1, 48, 48]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_preprocess_matches_hand_formula_and_accepts_shapes():
    u8 = torch.randint(0, 256, (5, 48, 48), dtype=torch.uint8)
    ref = ((u8.float() / 255 - FER_MEAN) / FER_STD)[:, None]
    assert torch.allclose(preprocess(u8), ref, atol=1e-6)
    assert torch.allclose(preprocess(u8[:, None]), ref, atol=1e-6)
    assert torch.allclose(preprocess(u8[0]), ref[:1], atol=1e-6)
    assert torch.allclose(preprocess(u8.numpy()), ref, atol=1e-6)
    three = preprocess(u8, channels=3)
    assert three.shape == (5, 3, 48, 48) and all(torch.equal(three[:, c:c + 1], ref) for c in range(3))
    assert torch.allclose(ref * FER_STD + FER_MEAN, u8.float()[:, None] / 255, atol=1e-6)
    with pytest.raises(TypeError, match="normalize"):
        preprocess(u8.float())
    with pytest.raises(ValueError, match="grayscale"):
        preprocess(torch.zeros(2, 3, 48, 48, dtype=torch.uint8))


def test_augment_keeps_shape_dtype_range_and_is_seeded(x01):
    aug = Augment(AugmentConfig(flip_p=0.5, affine_p=1.0, color_p=1.0, erase_p=0.5))
    out = aug(x01, gen(1))
    assert out.shape == x01.shape and out.dtype == x01.dtype and out.device == x01.device
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, aug(x01, gen(1))) and not torch.equal(out, aug(x01, gen(2)))
    assert not torch.equal(out, x01)
    assert torch.equal(x01, to_unit(make_synthetic_faces(64, seed=3)[0]))  # input untouched
    assert torch.equal(Augment(AugmentConfig.off())(x01, gen(1)), x01)


def test_flip_is_torch_flip(x01):
    assert torch.equal(Augment(AugmentConfig.off(flip_p=1.0))(x01), torch.flip(x01, dims=[-1]))


def test_affine_matches_single_image_reference(x01):
    cfg = AugmentConfig.off(affine_p=1.0, rotate_deg=90.0, scale=(1.0, 1.0), translate=0.0)
    out = Augment(cfg)(x01[:8], gen(5))
    # reproduce the drawn angles and rotate each image on its own
    u = torch.rand(8, Augment._K, generator=gen(5))
    for i in range(8):
        a = torch.deg2rad(-90 + 180 * u[i, 2])
        theta = torch.tensor([[[torch.cos(a), -torch.sin(a), 0.0], [torch.sin(a), torch.cos(a), 0.0]]])
        grid = F.affine_grid(theta, [1, 1, 48, 48], align_corners=False)
        ref = F.grid_sample(x01[i:i + 1], grid, padding_mode="border", align_corners=False)
        assert torch.allclose(out[i:i + 1], ref, atol=1e-5)
    # no rotation, no zoom, no shift: the identity (bilinear sampling at the pixel centres)
    ident = Augment(AugmentConfig.off(affine_p=1.0, rotate_deg=0.0, scale=(1.0, 1.0), translate=0.0))
    assert torch.allclose(ident(x01, gen(0)), x01, atol=1e-5)


def test_random_erasing_fills_one_rectangle(x01):
    value = 0.123
    out = Augment(AugmentConfig.off(erase_p=1.0, erase_value=value, erase_area=(0.05, 0.2)))(x01, gen(2))
    changed = out != x01
    for i in range(len(x01)):
        ys, xs = torch.nonzero(out[i, 0] == value, as_tuple=True)
        h, w = int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)
        box = torch.zeros(48, 48, dtype=torch.bool)
        box[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
        assert torch.all(out[i, 0][box] == value)  # a full rectangle of the fill value ...
        assert not changed[i, 0][~box].any()  # ... and nothing else changed
        assert 0.04 * 48 * 48 <= h * w <= 0.22 * 48 * 48


def test_brightness_contrast_is_affine_per_image(x01):
    out = Augment(AugmentConfig.off(color_p=1.0, brightness=0.1, contrast=0.2))(x01 * 0.5 + 0.25, gen(4))
    inp = x01 * 0.5 + 0.25
    for i in range(4):  # out = a * in + b exactly (no clipping in this mid-range input)
        A = torch.stack([inp[i].flatten(), torch.ones(48 * 48)], 1)
        sol = torch.linalg.lstsq(A, out[i].flatten()[:, None]).solution.flatten()
        assert 0.8 - 1e-4 <= sol[0] <= 1.2 + 1e-4
        assert torch.allclose(A @ sol, out[i].flatten(), atol=1e-5)


def test_mixup_cutmix_soft_labels(x01):
    y = torch.arange(64) % 7
    for alpha_m, alpha_c in ((0.4, 0.0), (0.0, 1.0), (0.4, 1.0)):
        xm, ys = mixup_cutmix(x01, y, 7, mixup_alpha=alpha_m, cutmix_alpha=alpha_c, prob=1.0, generator=gen(7))
        assert xm.shape == x01.shape and ys.shape == (64, 7)
        assert torch.allclose(ys.sum(1), torch.ones(64)) and (ys >= 0).all()
        assert torch.equal(xm, mixup_cutmix(x01, y, 7, alpha_m, alpha_c, 1.0, generator=gen(7))[0])
    # CutMix: lam equals the fraction of pixels that still come from the sample itself
    xm, ys = mixup_cutmix(x01, y, 7, mixup_alpha=0.0, cutmix_alpha=1.0, prob=1.0, generator=gen(11))
    kept = (xm == x01).flatten(1).float().mean(1)
    own = ys[torch.arange(64), y]
    mixed = own < 1  # rows whose partner has another label
    assert torch.allclose(own[mixed], kept[mixed], atol=0.02)
    # prob=0: untouched, one-hot targets
    xm, ys = mixup_cutmix(x01, y, 7, prob=0.0)
    assert xm is x01 and torch.equal(ys, F.one_hot(y, 7).float())


@pytest.mark.parametrize("n, bs, world", [(103, 10, 1), (103, 16, 4), (100, 7, 3)])
def test_tensor_batches_cover_and_shard(n, bs, world):
    images = torch.arange(n, dtype=torch.int64)[:, None].to(torch.uint8).expand(n, 4).contiguous()
    labels = torch.arange(n)
    seen = []
    shards = []
    for rank in range(world):
        tb = TensorBatches(images, labels, bs, shuffle=True, seed=3, rank=rank, world_size=world)
        tb.set_epoch(2)
        got = torch.cat([lab for _, lab in tb])
        assert len(got) == tb.num_samples == -(-n // world) and len(tb) == -(-tb.num_samples // bs)
        shards.append(got)
        seen.append(got)
    allidx = torch.cat(seen)
    assert set(allidx.tolist()) == set(range(n))  # every sample at least once
    assert len(allidx) - n == (-n) % world  # only the padding repeats
    if world == 1:
        assert sorted(allidx.tolist()) == list(range(n))  # exactly once
    # disjoint shards (padding aside): positions are disjoint
    pos = [TensorBatches(images, labels, bs, shuffle=True, seed=3, rank=r, world_size=world) for r in range(world)]
    for p in pos:
        p.set_epoch(2)
    flat = torch.cat([p.indices() for p in pos])
    assert flat.unique().numel() == n
    # shuffling changes with the epoch, not without
    tb = TensorBatches(images, labels, bs, shuffle=True, seed=3)
    e0 = torch.cat([lab for _, lab in tb])
    assert torch.equal(e0, torch.cat([lab for _, lab in tb]))
    tb.set_epoch(1)
    assert not torch.equal(e0, torch.cat([lab for _, lab in tb]))
    # images follow labels; drop_last drops the partial batch
    for im, lab in TensorBatches(images, labels, bs, shuffle=True, drop_last=True):
        assert len(lab) == bs and torch.equal(im[:, 0].long(), lab % 256)



def test_a_changed_config_takes_effect(x01):
    aug = Augment(AugmentConfig.off(affine_p=1.0, rotate_deg=0.0, scale=(1.0, 1.0), translate=0.0))
    assert torch.allclose(aug(x01, gen(0)), x01, atol=1e-5)  # the identity
    aug.cfg.rotate_deg = 30.0
    assert (aug(x01, gen(0)) - x01).abs().amax() > 0.05  # now rotated


def test_mixup_is_the_convex_combination_its_soft_labels_state(x01):
    """With one class per image, row ``i`` of the soft labels holds ``lam`` at ``i`` and ``1 - lam`` at its partner
    ``perm[i]``: the mixed image must be exactly ``lam * x[i] + (1 - lam) * x[perm[i]]``."""
    B = 16
    x, y = x01[:B], torch.arange(B)
    for seed in range(4):
        mixed, soft = mixup_cutmix(x, y, B, mixup_alpha=0.4, cutmix_alpha=0.0, prob=1.0, generator=gen(seed))
        own = soft.diagonal()
        lam = float(own[own < 1 - 1e-6][0])  # rows paired with themselves hold 1
        others = soft.clone().fill_diagonal_(0)
        partner = torch.where(own < 1 - 1e-6, others.argmax(1), torch.arange(B))
        torch.testing.assert_close(own[own < 1 - 1e-6], torch.full_like(own[own < 1 - 1e-6], lam))
        torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[partner], rtol=0, atol=1e-6)
