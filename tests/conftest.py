"""Shared pytest fixtures. Area-specific fixtures live in the test files that use them."""

from __future__ import annotations

import os

import pytest
import torch

from fer_lib.paths import find_fer2013

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    """One intra-op thread for the whole suite (``FER_TEST_THREADS`` overrides).

    The tests' models are tiny; on a 2-core machine that also runs other work, two threads spin-wait on each other
    and ran 5-13x slower in our measurements (docs/results/training.md), while one thread is never much slower.
    """
    old = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("FER_TEST_THREADS", "1")))
    yield
    torch.set_num_threads(old)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def fer2013_root():
    """The real FER2013 folder (``FER2013_DIR`` or ``../shared/fer2013``); skips cleanly when absent."""
    root = find_fer2013()
    if root is None or not root.exists():
        pytest.skip("FER2013 not found (set FER2013_DIR or place it at ../shared/fer2013)")
    return root
