"""The real FER2013 (skipped when absent): exact counts, normalisation constants, the cache."""

from __future__ import annotations

import time

import pytest
import torch

from fer_lib.data import FER_MEAN, FER_STD, load_dataset, load_fer2013

pytestmark = pytest.mark.fer2013

# /work/shared/README.md (Kaggle msambare/fer2013 without PrivateTest), in EMOTIONS order
TRAIN_COUNTS = [3995, 436, 4097, 7215, 4830, 3171, 4965]
PUBLIC_COUNTS = [467, 56, 496, 895, 653, 415, 607]


@pytest.fixture(scope="module")
def cold(fer2013_root, tmp_path_factory):
    cache = tmp_path_factory.mktemp("fer_cache")
    t = time.perf_counter()
    data = load_fer2013(fer2013_root, cache_dir=cache)
    return data, cache, time.perf_counter() - t


def test_exact_counts_and_splits(cold):
    data, _, _ = cold
    assert not data.from_cache and not data.synthetic
    assert "PrivateTest" not in data.splits  # deliberately absent from the shared copy
    assert len(data["Training"]) == 28709 and data["Training"].counts() == TRAIN_COUNTS
    assert len(data["PublicTest"]) == 3589 and data["PublicTest"].counts() == PUBLIC_COUNTS
    assert all(i.split("/")[-1].startswith("PublicTest_") for i in data["PublicTest"].ids)
    assert data["Training"].images.shape == (28709, 48, 48)


def test_normalisation_constants_match_training_split(cold):
    # exact mean/std from the 256-bin pixel histogram (no 500 MB float copy)
    hist = torch.bincount(cold[0]["Training"].images.flatten(), minlength=256).double()
    v = torch.arange(256, dtype=torch.float64) / 255
    mean = (hist * v).sum() / hist.sum()
    std = ((hist * (v - mean) ** 2).sum() / hist.sum()).sqrt()
    assert round(mean.item(), 3) == round(FER_MEAN, 3)
    assert round(std.item(), 3) == round(FER_STD, 3)


def test_warm_load_comes_from_cache(cold, fer2013_root):
    data, cache, cold_s = cold
    t = time.perf_counter()
    warm = load_fer2013(fer2013_root, cache_dir=cache)
    warm_s = time.perf_counter() - t
    assert warm.from_cache and warm.fingerprint == data.fingerprint
    assert warm["PublicTest"].ids == data["PublicTest"].ids
    assert warm_s < max(3.0, cold_s / 3), (warm_s, cold_s)  # ~0.3 s idle; loose for shared machines


def test_quick_mode_subsets(cold, fer2013_root):
    data = load_dataset(fer2013_root, quick=True, cache_dir=cold[1])
    assert not data.synthetic and len(data["train"]) == 2100 and len(data["val"]) == 700
    assert min(data["train"].counts()) > 0 and any("quick mode" in n for n in data.notes)
