"""Shared pytest fixtures. Area-specific fixtures live in the test files that use them."""

from __future__ import annotations

import os

import pytest
import torch

from fer_lib.paths import find_fer2013

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _deterministic_threads():
    # 2 CPU cores on CI; keep torch from oversubscribing when pytest runs helpers.
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def fer2013_root():
    """The real FER2013 folder (``FER2013_DIR`` or ``../shared/fer2013``); skips cleanly when absent."""
    root = find_fer2013()
    if root is None or not root.exists():
        pytest.skip("FER2013 not found (set FER2013_DIR or place it at ../shared/fer2013)")
    return root
