"""``steps_per_epoch``: the number of optimiser steps an epoch of ``train`` takes (notebook 08 plans with it)."""

from __future__ import annotations

import math

import pytest
from torch import nn

from fer_lib.data import load_synthetic
from fer_lib.train import TrainConfig, load_checkpoint, steps_per_epoch, train


@pytest.mark.parametrize("n, batch, world, steps", [
    (28709, 256, 1, 112),  # FER2013 Training at the gpu preset's batch: the last 37 images are dropped
    (128, 32, 1, 4),       # notebook 08's quick mode: four full batches
    (100, 32, 1, 3),       # 100 = 3 * 32 + 4: the incomplete fourth batch is dropped
    (256, 256, 1, 1),      # exactly one batch
    (100, 256, 1, 1),      # fewer images than one batch: one short step, not none
    (513, 256, 2, 2),      # two processes, shards of 257: 513 // 2 = 256 is not over one batch, so 256 + 1 are kept
    (1000, 256, 2, 1),     # shards of 500: one full batch each, the 244 left over are dropped
])
def test_steps_per_epoch(n, batch, world, steps):
    assert steps_per_epoch(n, batch, world_size=world) == steps


def test_steps_per_epoch_refuses_nonsense():
    with pytest.raises(ValueError, match="positive"):
        steps_per_epoch(0, 32)


def test_train_takes_steps_per_epoch_steps(tmp_path):
    """What the function says is what the loop does: its schedule counts that many steps per finished epoch."""
    data = load_synthetic(n_train=100, n_val=20)
    cfg = TrainConfig(name="steps", out_dir=str(tmp_path), epochs=2, batch_size=32, warmup_epochs=0.5, ema=False,
                      augment=False, aux_weight=0.0, device="cpu")
    res = train(cfg, data, progress=False, model=nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 7)))
    per_epoch = steps_per_epoch(100, 32)
    assert per_epoch == 3 != math.ceil(100 / 32)
    assert load_checkpoint(res.last_path)["scheduler"]["step_count"] == cfg.epochs * per_epoch
    assert [row["images"] for row in res.history] == [per_epoch * 32] * cfg.epochs
