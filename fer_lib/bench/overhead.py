"""Per-step framework overhead of the training loop: the time of one optimiser step when the model costs ~nothing.

On a fast GPU a ResNet18 at 48-64 px computes a batch in a few milliseconds, so the Python side of each step (data
indexing, augmentation and mixing launches, the loss, clipping, the optimiser, EMA, logging, checks) sets the
pace. :func:`step_overhead` measures that side on any device: it trains a one-layer model (a linear map of the
image: its forward and backward are a few million multiply-adds) with
:func:`fer_lib.train.train`, exactly as a real run does (same recipe, augmentation, EMA, checkpoints), and divides
each epoch's training time (``history["images"] / history["images_per_sec"]``, validation and checkpoint writing
excluded) by its number of steps. It also times the tiny model alone (forward, backward, AdamW step on one
preprocessed batch), so ``overhead_ms = step_ms - model_ms`` is what the framework adds.

Only the public API is used (``train``, ``preset_config``, ``FERData``; ``create_model`` and ``ModelEMA`` for the
EMA's cost), so this file, loaded by path, measures an older checkout of fer_lib (put it first on ``PYTHONPATH``:
:func:`compare_checkouts`) for a before/after comparison.

On a CPU the augmentation's arithmetic is real work (a bilinear warp of every image); on a GPU it is a handful of
kernel launches. So the CPU figure is an upper bound of the Python-side cost, and host-device synchronisations,
which cost nothing on a CPU, do not show in it. What does show on a CPU is how many tensor operations a step
dispatches (on a GPU, about one kernel launch each) and how many of them read a value back to the host (on a GPU, a
synchronisation): ``count_ops=True`` counts both, per step, in a second run (counting slows it, so it is not
timed). ``.tolist()`` and ``.numpy()``, which read without the dispatcher, are counted too; a ``.cpu()`` of what is
already on the host is not seen. Which reads are synchronisations on a GPU depends on where the tensor read lives
there, so the reads are also listed by source.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from fer_lib.data import FERData, FERSplit
from fer_lib.models import create_model
from fer_lib.train import TrainConfig, preset_config, train
from fer_lib.train.ema import ModelEMA

__all__ = ["OneLayer", "compare_checkouts", "ema_update_cost", "format_overhead", "paired_ratios", "step_overhead"]


class OneLayer(nn.Module):
    """The cheapest model the loop accepts: one ``Linear(in_chans * 48 * 48, 7)`` on the flattened face.

    (A ``Conv2d`` with a 48x48 kernel computes the same map, but oneDNN's backward for such a kernel takes ~15 ms
    per batch of 256 on one CPU core, which would hide the loop's own cost; the linear layer takes ~1.3 ms.)
    """

    model_name = "one_layer"

    def __init__(self, in_chans: int = 1, num_classes: int = 7, size: int = 48) -> None:
        super().__init__()
        self.fc = nn.Linear(in_chans * size * size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


#: aten ops whose result the host must wait for: a value read back, or an output shape that depends on the data
SYNC_OPS = frozenset({"_local_scalar_dense", "nonzero", "masked_select", "is_nonzero", "equal", "unique_dim",
                      "_unique2", "unique_consecutive", "nonzero_static"})


class _OpCounter:
    """Counts dispatched aten ops, and the :data:`SYNC_OPS` among them, between marks (one mark per training
    forward, so the interval between two marks is one whole step: backward, optimiser, EMA, logging, the next
    batch and its augmentation)."""

    def __init__(self) -> None:
        counter = self
        self.ops = 0
        self.reads: list[str] = []  # the source of each read, in order
        self.marks: list[tuple[int, int]] = []

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                counter.ops += 1
                if func._schema.name.split("::")[-1] in SYNC_OPS:
                    counter.reads.append(_read_source())
                return func(*args, **(kwargs or {}))

        self.mode = Mode()

    def __enter__(self) -> _OpCounter:
        """Count inside: the dispatcher's ops, plus ``Tensor.tolist`` and ``Tensor.numpy`` (host reads that do
        not go through the dispatcher)."""
        self._patched = {}
        for name in ("tolist", "numpy"):
            original = getattr(torch.Tensor, name)
            self._patched[name] = original

            def read(t, *args, _original=original, **kwargs):
                self.reads.append(_read_source())
                return _original(t, *args, **kwargs)

            setattr(torch.Tensor, name, read)
        self.mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.mode.__exit__(*exc)
        for name, original in self._patched.items():
            setattr(torch.Tensor, name, original)

    def mark(self) -> None:
        self.marks.append((self.ops, len(self.reads)))

    def per_step(self) -> tuple[float, dict[str, float]]:
        """Median ops per step, and reads per step by source (mean over steps within an epoch: a read every N
        steps shows as 1/N)."""
        pairs = list(zip(self.marks, self.marks[1:]))
        ops = [b[0] - a[0] for a, b in pairs]
        steady = sorted(range(len(ops)), key=ops.__getitem__)[: max(1, len(ops) * 3 // 4)]  # no epoch boundaries
        by_source: dict[str, float] = {}
        for i in steady:
            for src in self.reads[pairs[i][0][1]:pairs[i][1][1]]:
                by_source[src] = by_source.get(src, 0.0) + 1 / len(steady)
        return float(statistics.median(ops)), dict(sorted(by_source.items()))


def _read_source() -> str:
    """Where a host read comes from: ``torch.optim`` when inside an optimiser, else the innermost fer_lib
    function (``module:function``), else ``other``."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename.replace("\\", "/")
        if "/torch/optim/" in name:
            return "torch.optim"
        if "/fer_lib/" in name:
            return f"fer_lib/{name.rsplit('/fer_lib/', 1)[1]}:{frame.f_code.co_name}"
        frame = frame.f_back
    return "other"


class _CountingOneLayer(OneLayer):
    def __init__(self, counter: _OpCounter, in_chans: int = 1) -> None:
        super().__init__(in_chans)
        self._counter = [counter]  # in a list: not a submodule, and deepcopy (EMA) shares it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self._counter[0].mark()
        return super().forward(x)

    def __deepcopy__(self, memo):  # the EMA copy: a plain OneLayer with the same weights
        twin = OneLayer(self.fc.in_features // (48 * 48)).to(self.fc.weight.device)
        twin.load_state_dict(self.state_dict())
        return twin


def _random_data(n_train: int, n_val: int, seed: int):
    g = torch.Generator().manual_seed(seed)

    def split(name: str, n: int) -> FERSplit:
        images = torch.randint(0, 256, (n, 48, 48), dtype=torch.uint8, generator=g)
        labels = torch.randint(0, 7, (n,), generator=g)
        return FERSplit(name, images, labels, [f"{name}:{i}" for i in range(n)])

    return FERData({"Training": split("Training", n_train), "PublicTest": split("PublicTest", n_val)},
                   form="synthetic", synthetic=True, source=f"{n_train} + {n_val} random uint8 images")


def _model_alone_ms(batch_size: int, device: torch.device, iters: int) -> float:
    """Median ms of forward + backward + AdamW step of :class:`OneLayer` on one preprocessed batch."""
    model = OneLayer().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch_size, 1, 48, 48, device=device)
    y = torch.randint(0, 7, (batch_size,), device=device)
    times = []
    for _ in range(iters + 2):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times[2:])


def ema_update_cost(model_name: str = "baseline_resnet18", iters: int = 20) -> dict[str, Any]:
    """One :meth:`fer_lib.train.ema.ModelEMA.update` of a real model: median ms (on a CPU mostly memory traffic)
    and the tensor ops it dispatches (on a GPU about one kernel launch each: a Python loop over the state dict
    launches one per tensor, ``torch._foreach_*`` a few in all)."""
    model = create_model(model_name)
    ema = ModelEMA(model, decay=0.999)
    times = []
    for _ in range(iters + 3):
        t = time.perf_counter()
        ema.update(model)
        times.append(time.perf_counter() - t)
    counter = _OpCounter()
    with counter:
        ema.update(model)
    return {"ema_model": model_name, "ema_tensors": len(model.state_dict()),
            "ema_update_ms": 1000 * statistics.median(times[3:]), "ema_update_ops": counter.ops}


def step_overhead(steps: int = 20, batch_size: int = 256, *, epochs: int = 3, preset: str = "gpu",
                  overrides: dict[str, Any] | None = None, device: str = "cpu", threads: int | None = 1,
                  seed: int = 0, count_ops: bool = False) -> dict[str, Any]:
    """Time one optimiser step of the training loop with a model whose compute is negligible.

    Args:
        steps: optimiser steps per epoch (the training set is ``steps * batch_size`` random images).
        batch_size: images per step.
        epochs: epochs to train; the first is a warm-up and is not counted (at least 2).
        preset: the recipe (a name in :data:`fer_lib.train.PRESETS`); its augmentation, mixing, EMA, clipping,
            precision and memory format are what is timed. The model is always :class:`OneLayer`.
        overrides: :class:`fer_lib.train.TrainConfig` fields to change (e.g. ``{"augment": False}``).
        device: ``"cpu"``, ``"cuda"``, ... (``TrainConfig.device``).
        threads: ``torch.set_num_threads`` for the run on a CPU (``None``: leave as is).
        seed: seed of the random images and of the run.
        count_ops: also count, in a second (untimed) run of 2 epochs, the tensor ops each step dispatches and the
            host reads among them.

    Returns:
        A dict: ``step_ms`` (median over the timed epochs), ``step_ms_per_epoch`` (each timed epoch),
        ``model_ms`` (the model alone), ``overhead_ms`` (``step_ms - model_ms``), ``batch_size``, ``steps``,
        ``epochs_timed``, ``preset``, ``overrides``, ``device``, ``threads``, ``torch`` (version); with
        ``count_ops``, ``ops_per_step`` (median), ``reads_per_step`` (mean over steps within an epoch) and
        ``reads_by_source`` (the same, by where the read happens: which are device synchronisations on a GPU
        depends on where the tensor read lives there, e.g. ``torch.optim`` reads its step counters, which stay
        on the host unless the optimiser is fused), and :func:`ema_update_cost` of ``baseline_resnet18`` (the
        one-layer model has too few tensors to show the EMA's cost).
    """
    if epochs < 2:
        raise ValueError(f"step_overhead needs epochs >= 2 (the first is a warm-up), got {epochs}")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps}, {batch_size}")
    overrides = dict(overrides or {})
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        data = _random_data(steps * batch_size, 64, seed)

        def run(n_epochs: int, model: nn.Module):
            with tempfile.TemporaryDirectory(prefix="fer_overhead_") as out:
                fixed = {
                    "name": "overhead", "out_dir": out, "epochs": n_epochs, "batch_size": batch_size,
                    "device": device, "num_threads": threads, "max_minutes": None, "fit_budget": False,
                    "compile": False, "log_every": 0, "subset_train": None, "subset_val": None, "in_chans": 1,
                    "model_overrides": {}, "overwrite": True, "seed": seed, "eval_batch_size": 64}
                known = {f.name for f in dataclasses.fields(TrainConfig)}  # an older fer_lib may lack a few
                cfg = preset_config(preset, **{k: v for k, v in fixed.items() if k in known}, **overrides)
                torch.manual_seed(seed)
                return cfg, train(cfg, data, progress=False, model=model)

        cfg, result = run(epochs, OneLayer())
        counts = {}
        if count_ops:
            counter = _OpCounter()
            with counter:
                run(2, _CountingOneLayer(counter))
            ops, reads = counter.per_step()
            counts = {"ops_per_step": ops, "reads_per_step": sum(reads.values()), "reads_by_source": reads,
                      **ema_update_cost()}
        per_epoch = [1000 * batch_size / row["images_per_sec"] for row in result.history[1:]]
        dev = torch.device(cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
        model_ms = _model_alone_ms(batch_size, dev, iters=max(5, steps))
    finally:
        torch.set_num_threads(old_threads)
    step_ms = statistics.median(per_epoch)
    return {
        "step_ms": step_ms, "step_ms_per_epoch": per_epoch, "model_ms": model_ms, "overhead_ms": step_ms - model_ms,
        "batch_size": batch_size, "steps": steps, "epochs_timed": len(per_epoch), "preset": preset,
        "overrides": overrides, "device": str(dev), "threads": threads, "torch": torch.__version__, **counts,
    }


#: run in a child process: load this file by path and time the fer_lib that the child's PYTHONPATH finds first
_CHILD = (
    "import importlib.util, json, sys\n"
    "spec = importlib.util.spec_from_file_location('fer_lib_step_overhead', sys.argv[1])\n"
    "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
    "import fer_lib\n"
    "print(json.dumps({**m.step_overhead(**json.loads(sys.argv[2])), 'fer_lib': fer_lib.__file__}))\n"
)


def compare_checkouts(checkouts: list, rounds: int = 2, **kwargs: Any) -> list[dict[str, Any]]:
    """:func:`step_overhead` of several fer_lib checkouts, alternated round by round (so that a change in the
    machine's speed hits every checkout alike), each in its own process with the checkout first on ``PYTHONPATH``.

    Args:
        checkouts: folders that hold a ``fer_lib/`` package (e.g. ``git worktree add ../before <commit>``).
        rounds: runs per checkout.
        **kwargs: arguments of :func:`step_overhead` (JSON-serialisable).

    Returns:
        One :func:`step_overhead` dict per run with ``checkout`` and ``round`` added, in the order run.

    Raises:
        FileNotFoundError: a checkout without ``fer_lib/``.
        RuntimeError: a run failed (its stderr is quoted).
    """
    for c in checkouts:
        if not (Path(c) / "fer_lib" / "__init__.py").is_file():
            raise FileNotFoundError(f"{c} holds no fer_lib/ package; pass the root of a checkout")
    rows = []
    for r in range(rounds):
        for c in checkouts:
            env = {**os.environ, "PYTHONPATH": str(Path(c).resolve())}
            # cwd: ``python -c`` puts the working folder first on sys.path, before PYTHONPATH
            proc = subprocess.run([sys.executable, "-c", _CHILD, __file__, json.dumps(kwargs)], env=env,
                                  cwd=Path(c).resolve(), capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"step_overhead of {c} failed:\n{proc.stderr.strip()[-2000:]}")
            rows.append({**json.loads(proc.stdout.strip().splitlines()[-1]), "checkout": str(c), "round": r})
    return rows


def paired_ratios(rows: list[dict[str, Any]], of: str, to: str) -> list[float]:
    """Checkout ``of``'s overhead over checkout ``to``'s within each round that timed both, in ``of``'s row order
    (:func:`compare_checkouts` rows): a drifting machine moves every checkout of a round alike, so these ratios
    are steadier than a ratio of medians."""
    ref = {r.get("round", 0): r["overhead_ms"] for r in rows if r.get("checkout", ".") == to}
    return [r["overhead_ms"] / ref[r.get("round", 0)] for r in rows
            if r.get("checkout", ".") == of and r.get("round", 0) in ref]


def format_overhead(rows: list[dict[str, Any]]) -> str:
    """A markdown table of :func:`step_overhead` / :func:`compare_checkouts` rows, with each checkout's median and
    its ratio to the first checkout's median; then, for each other checkout, the median and range of its ratio to
    the first checkout within each round (the steadier figure on a machine whose speed drifts)."""
    counted = all("ops_per_step" in r for r in rows)
    extra = " ops / step | host reads / step | EMA update ops (ms) |" if counted else ""
    lines = ["| checkout | round | step ms | model alone ms | overhead ms |" + extra,
             "| --- | ---: | ---: | ---: | ---: |" + (" ---: | ---: | ---: |" if counted else "")]
    lines += [f"| {r.get('checkout', '.')} | {r.get('round', 0)} | {r['step_ms']:.2f} | {r['model_ms']:.2f} | "
              f"{r['overhead_ms']:.2f} |" + (f" {r['ops_per_step']:.0f} | {r['reads_per_step']:.2f} | "
                                             f"{r['ema_update_ops']} ({r['ema_update_ms']:.1f}) |"
                                             if counted else "") for r in rows]
    order = list(dict.fromkeys(r.get("checkout", ".") for r in rows))
    med = {c: statistics.median(r["overhead_ms"] for r in rows if r.get("checkout", ".") == c) for c in order}
    lines += [f"| **{c}** median | | | | **{med[c]:.2f}** ({med[c] / med[order[0]]:.2f}x) |" + (" | | |" if counted else "")
              for c in order]
    for c in order[1:]:
        paired = paired_ratios(rows, c, order[0])
        if len(paired) > 1:
            lines.append(f"\n{c} / {order[0]}, round by round: median {statistics.median(paired):.2f}x "
                         f"(from {min(paired):.2f}x to {max(paired):.2f}x over {len(paired)} rounds)")
    return "\n".join(lines)
