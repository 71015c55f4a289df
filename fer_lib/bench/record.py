"""What a benchmark records beside its numbers: the machine it ran on, and a training run measured.

:func:`environment` names the software and hardware (Python, torch, CUDA and cuDNN versions, each visible GPU with
its compute capability and memory (:func:`list_gpus`), CPU threads, and the precision a preset trains in on the
device); :func:`measure_training` trains a recipe and reports what a throughput and accuracy check needs (epochs,
best and last validation accuracy, training images/s after the first epoch, peak GPU memory, wall time).
``scripts/gpu_check.py`` (the GPU acceptance run) records both; both work on a CPU too.
"""

from __future__ import annotations

import platform
import time
from typing import Any

import torch

from fer_lib.inference import resolve_device
from fer_lib.train import TrainConfig, preset_config, train
from fer_lib.train.setup import precision_for

__all__ = ["environment", "list_gpus", "measure_training"]


def list_gpus() -> list[dict[str, Any]]:
    """Each visible CUDA GPU as ``{"name", "capability", "memory_gib"}`` (capability ``"8.0"`` for an A100);
    ``[]`` without CUDA."""
    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            gpus.append({"name": p.name, "capability": f"{p.major}.{p.minor}",
                         "memory_gib": round(p.total_memory / 2**30, 1)})
    return gpus


def environment(device: str | torch.device = "auto", preset: str = "gpu") -> dict[str, Any]:
    """The software and hardware a measurement ran on.

    Args:
        device: the device measured (``"auto"``, ``"cpu"``, ``"cuda"``, ...; resolved as training resolves it).
        preset: the recipe whose precision is reported (a name in :data:`fer_lib.train.PRESETS`).

    Returns:
        ``{"python", "torch", "cuda", "cudnn", "device", "gpus", "cpu_threads", "amp"}``: versions (``cuda`` and
        ``cudnn`` are ``None`` without them), the resolved device, :func:`list_gpus`, ``torch.get_num_threads()``,
        and the precision ``preset`` trains in on ``device`` (``str`` of :func:`fer_lib.train.setup.precision_for`:
        ``"bfloat16"`` on compute capability >= 8, ``"float16"`` (with a GradScaler) below, ``"fp32"`` on a CPU).
    """
    dev = resolve_device(device)
    return {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "device": str(dev), "gpus": list_gpus(), "cpu_threads": torch.get_num_threads(),
            "amp": str(precision_for(preset_config(preset).amp, dev))}


def measure_training(cfg: TrainConfig, data=None, **train_kwargs: Any) -> dict[str, Any]:
    """Train ``cfg`` (:func:`fer_lib.train.train`, plain log lines) and report the run.

    Args:
        cfg: the recipe (its folder ``cfg.out_dir/cfg.name`` gets the checkpoints, as with ``train``).
        data: a :class:`fer_lib.data.FERData`; ``None`` loads what ``cfg`` names.
        **train_kwargs: more arguments of ``train`` (e.g. ``model=``).

    Returns:
        ``model``, ``batch_size``, ``lr``, ``compile``, ``max_minutes`` and ``val_split`` (from ``cfg``);
        ``epochs_run``; ``best_val_acc`` and ``best_epoch`` (1-based), ``last_val_acc``;
        ``train_images_per_sec``, the mean over the epochs after the first (the first holds the warm-up: cuDNN
        autotuning, compilation; a one-epoch run reports its only epoch); ``first_epoch_s``; ``wall_s`` (the
        whole call, rounded to 0.1 s); ``peak_gpu_memory_gib`` (``None`` off CUDA); ``stop_reason``; ``run_dir``
        (a ``Path``).

    Raises:
        ValueError: no epoch finished (a time budget too small for one).
    """
    cuda = torch.cuda.is_available() and cfg.device != "cpu"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result = train(cfg, data, progress=False, **train_kwargs)
    wall = time.perf_counter() - t0
    h = result.history
    if not h:
        raise ValueError(f"no epoch of run {cfg.name!r} finished: {result.stop_reason or 'none was planned'}")
    steady = h[1:] or h  # epoch 1 holds the warm-up (cuDNN autotuning, compilation)
    best = max(h, key=lambda r: r["val_acc"])
    return {
        "model": cfg.model, "batch_size": cfg.batch_size, "lr": cfg.lr, "compile": cfg.compile,
        "max_minutes": cfg.max_minutes, "epochs_run": len(h),
        "best_val_acc": best["val_acc"], "best_epoch": best["epoch"], "last_val_acc": h[-1]["val_acc"],
        "val_split": cfg.val_split, "train_images_per_sec": sum(r["images_per_sec"] for r in steady) / len(steady),
        "first_epoch_s": h[0]["seconds"], "wall_s": round(wall, 1),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "stop_reason": result.stop_reason, "run_dir": result.run_dir,
    }
