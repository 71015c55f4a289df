"""Multi-process data-parallel training (DistributedDataParallel) helpers.

``torchrun --nproc_per_node N -m fer_lib train ...`` starts N processes and sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. :func:`init_distributed` reads them, joins the process
group (``nccl`` on CUDA, ``gloo`` on CPU) and picks the device. Each rank then trains on its own shard
(``TensorBatches(rank=, world_size=)``), DDP averages the gradients (Li et al. 2020,
https://arxiv.org/abs/2006.15704), metrics are summed across ranks with :func:`all_reduce_sum`, and only rank 0
writes checkpoints and shows progress bars.
Without those variables everything is a no-op and ``world_size == 1``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from fer_lib.inference.models import resolve_device  # noqa: F401 - re-exported (it lives with inference)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, its ``device``, and ``is_main`` (rank 0)."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when unset)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: str | torch.device = "auto") -> DistInfo:
    """Join the process group when launched by ``torchrun`` (``RANK``/``WORLD_SIZE`` set and > 1).

    Returns:
        A :class:`DistInfo`; ``world_size == 1`` outside ``torchrun``. Calling it again reuses the group.
    """
    world_size = env_world_size()
    if world_size <= 1:
        return DistInfo(0, 1, 0, resolve_device(device))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world_size)
    return DistInfo(rank, world_size, local_rank, dev)


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``t`` over all ranks in place (no-op for one process) and return it."""
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


@torch.no_grad()
def average_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over ranks, in place.

    DDP keeps *parameters* identical, but each rank updates its BatchNorm running mean/var from its own last
    batch; averaging them at the end of every epoch (as timm's ``distribute_bn`` does) makes validation and the
    saved checkpoint identical on every rank and uses the statistics of all shards.
    """
    if not info.enabled:
        return
    for buf in module.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            buf.div_(info.world_size)


def all_true(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True only when ``flag`` is true on every rank (so all ranks take the same branch)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item() > 0.5)


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op for one process)."""
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    """Leave the process group (call once at the end of a torchrun process)."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
