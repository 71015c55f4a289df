"""Benchmark the data layer: ``python -m fer_lib bench --data [--data-args="--root PATH --batch-size 256"]``.

Measures FER2013 load time with an empty cache (cold: decode every image) and with a filled one (warm), the
throughput of :class:`~fer_lib.data.Augment` (+ :func:`~fer_lib.data.mixup_cutmix`) at the given batch size,
batching with :class:`~fer_lib.data.TensorBatches`, and synthetic-face generation. Prints a Markdown table.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time

import torch

from fer_lib import paths

from .augment import Augment, AugmentConfig, mixup_cutmix
from .batching import TensorBatches
from .loaders import load_fer2013
from .synthetic import make_synthetic_faces
from .transforms import normalize, to_unit


def _timed(fn, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def run_data_bench(root=None, batch_size: int = 256, iters: int = 30, device: str = "cpu",
                   threads: int | None = None, log=print) -> list[tuple[str, str, str]]:
    """Time the data layer; returns ``(what, time, throughput)`` rows (see the module docstring).

    Args:
        root: FER2013 location (default: ``FER2013_DIR`` or ``../shared/fer2013``); without it, synthetic faces.
        batch_size: images per augmentation / batching step.
        iters: augmentation batches timed.
        device: where augmentation runs.
        threads: ``torch.set_num_threads`` (``None``: torch's choice).
        log: where the header line goes.
    """
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    log(f"# fer_lib.data bench: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), device {dev}")
    rows = []
    root = paths.find_fer2013(root)
    if root is not None and root.exists():
        with tempfile.TemporaryDirectory() as tmp:
            cold, data = _timed(lambda: load_fer2013(root, cache_dir=tmp))
            warm, data2 = _timed(lambda: load_fer2013(root, cache_dir=tmp), repeat=3)
        assert data2.from_cache
        n = sum(len(s) for s in data.splits.values())
        rows += [(f"load FER2013 cold (decode {n} images, empty cache)", f"{cold:.2f} s", f"{n / cold:,.0f} img/s"),
                 ("load FER2013 warm (from cache, best of 3)", f"{warm:.3f} s", f"{n / warm:,.0f} img/s")]
        images, labels = data["Training"].images, data["Training"].labels
    else:
        log("FER2013 not found: timing augmentation on synthetic faces only")
        images, labels = make_synthetic_faces(4096, seed=0)

    t, _ = _timed(lambda: make_synthetic_faces(5000, seed=0))
    rows.append(("make_synthetic_faces(5000)", f"{t:.2f} s", f"{5000 / t:,.0f} img/s"))

    bs = batch_size
    batches = TensorBatches(images, labels, bs, shuffle=True, device=dev)
    it = iter(batches)
    xb = [to_unit(next(it)[0]) for _ in range(min(iters, len(batches) - 1))]
    yb = labels[:bs].to(dev)
    aug, g = Augment(AugmentConfig()), torch.Generator().manual_seed(0)
    aug(xb[0], g)  # warm-up

    def run_aug(mix: bool):
        for x in xb:
            out = aug(x, g)
            if mix:
                out, _ = mixup_cutmix(out, yb[: len(out)], 7, prob=1.0, generator=g)
            normalize(out)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    n_img = sum(len(x) for x in xb)
    for mix in (False, True):
        t, _ = _timed(lambda mix=mix: run_aug(mix), repeat=2)
        name = "Augment(AugmentConfig()) + normalize" + (" + mixup_cutmix" if mix else "")
        rows.append((f"{name}, batch {bs}", f"{t / len(xb) * 1e3:.1f} ms/batch", f"{n_img / t:,.0f} img/s"))
    t, _ = _timed(lambda: sum(len(lb) for _, lb in TensorBatches(images, labels, bs, shuffle=True, device=dev)), 3)
    rows.append((f"TensorBatches over {len(labels)} images, batch {bs}", f"{t:.3f} s/epoch (best of 3)", f"{len(labels) / t:,.0f} img/s"))

    return rows


def format_table(rows: list[tuple[str, str, str]]) -> str:
    """The rows of :func:`run_data_bench` as a Markdown table."""
    return "\n".join(["| what | time | throughput |", "| --- | --- | --- |"] + [f"| {a} | {b} | {c} |" for a, b, c in rows])
