"""Batching over in-memory tensors: :class:`TensorBatches` (fast, DDP-aware).

FER2013 fits in memory as ``uint8`` (83 MB), so the fastest loader is plain tensor indexing: no worker
processes, no per-sample Python. :class:`TensorBatches` moves the images to ``device`` once and yields
``(images uint8 [B, 48, 48], labels int64 [B])`` there; convert with :func:`fer_lib.data.preprocess` or
augment with :class:`fer_lib.data.Augment`. (A ``torch.utils.data.DataLoader`` over a split would add a
worker and a Python call per image for nothing: the split is already two tensors.)
"""

from __future__ import annotations

import math

import torch

__all__ = ["TensorBatches", "shard_indices"]


def shard_indices(n: int, *, shuffle: bool, seed: int, epoch: int, rank: int, world_size: int) -> torch.Tensor:
    """The sample indices of one rank for one epoch, exactly like ``torch.utils.data.DistributedSampler``.

    The (shuffled, with seed ``seed + epoch``) order is padded by repeating its start until its length is a
    multiple of ``world_size``; rank ``r`` takes every ``world_size``-th index starting at ``r``. So shards are
    disjoint, equal-sized (``ceil(n / world_size)``), and together cover every sample at least once.
    """
    if n <= 0:
        raise ValueError("cannot batch an empty set of samples")
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
    else:
        order = torch.arange(n)
    total = math.ceil(n / world_size) * world_size
    if total > n:
        order = torch.cat([order, order.repeat(math.ceil((total - n) / n))[: total - n]])
    return order[rank:total:world_size]


class TensorBatches:
    """Iterate ``(images, labels)`` mini-batches of in-memory tensors on ``device``.

    Args:
        images: ``uint8 [N, 48, 48]`` (any ``[N, ...]`` tensor works).
        labels: ``int64 [N]`` (or ``[N, K]`` soft targets).
        batch_size: samples per batch.
        shuffle: reshuffle every epoch (order depends on ``seed`` and :meth:`set_epoch`).
        drop_last: drop the last incomplete batch of this rank's shard.
        seed: base seed of the shuffle.
        device: where batches are yielded; the whole tensors are moved there once at construction.
        rank, world_size: DDP sharding as in ``DistributedSampler`` (see :func:`shard_indices`); call
            :meth:`set_epoch` on every rank with the same epoch so the shards stay disjoint.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, *, shuffle: bool,
                 drop_last: bool = False, seed: int = 0, device=None, rank: int = 0, world_size: int = 1):
        if len(images) != len(labels):
            raise ValueError(f"images and labels differ in length: {len(images)} vs {len(labels)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.images = images.to(device) if device is not None else images
        self.labels = labels.to(device) if device is not None else labels
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle of ``epoch`` (as ``DistributedSampler.set_epoch``)."""
        self.epoch = int(epoch)

    def indices(self) -> torch.Tensor:
        """This rank's sample indices for the current epoch, in iteration order."""
        return shard_indices(len(self.labels), shuffle=self.shuffle, seed=self.seed, epoch=self.epoch,
                             rank=self.rank, world_size=self.world_size)

    @property
    def num_samples(self) -> int:
        """Samples per epoch on this rank (after padding, before ``drop_last``)."""
        return math.ceil(len(self.labels) / self.world_size)

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        idx = self.indices().to(self.images.device)
        for b in range(len(self)):
            i = idx[b * self.batch_size:(b + 1) * self.batch_size]
            yield self.images.index_select(0, i), self.labels.index_select(0, i)

