"""Export a trained model to TorchScript and ONNX, check that they compute the same logits, and time them.

* TorchScript: ``torch.jit.trace`` of the eval-mode model (https://pytorch.org/docs/stable/jit.html). Tracing
  records the operations for one input; fer_lib models have no data-dependent control flow in eval mode,
  and the parity check below runs a *different* batch size than the one traced, which would expose a
  baked-in shape.
* ONNX: ``torch.onnx.export`` with a dynamic batch axis (https://pytorch.org/docs/stable/onnx.html), run with
  ONNX Runtime's CPU provider (https://onnxruntime.ai).

Both take the model input ``float32 [B, C, 48, 48]`` made by ``fer_lib.data.preprocess`` and return logits
``[B, 7]``; preprocessing (and softmax) stay outside the exported graph, so the deployment code must apply the
same normalisation. ``python -m fer_lib export runs/demo/best.pt --out exports/`` prints the report as JSON
(without a checkpoint it exports the bundled model).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fer_lib.inference.models import LogitsOnly, eval_mode, model_in_chans

FORMATS = ("torchscript", "onnx")


def _latency_ms(fn, x, warmup: int, runs: int) -> float:
    """Median wall time of ``fn(x)`` in milliseconds over ``runs`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000.0)


def export_torchscript(model: nn.Module, path, example: torch.Tensor) -> Path:
    """Trace the eval-mode model (wrapped to return one logits tensor) and save it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with eval_mode(model), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is in maintenance mode and warns about it
        traced = torch.jit.trace(LogitsOnly(model).eval(), example, check_trace=False)
        traced.save(str(path))
    return path


def export_onnx(model: nn.Module, path, example: torch.Tensor, opset: int = 18) -> Path:
    """Export to ONNX with input ``"input"`` ``[batch, C, 48, 48]`` and output ``"logits"`` ``[batch, 7]``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stale = path.with_name(path.name + ".data")  # weights file of an earlier external-data export
    if stale.exists():
        stale.unlink()
    kwargs = {}
    if "external_data" in inspect.signature(torch.onnx.export).parameters:  # torch >= 2.5 (dynamo exporter)
        kwargs = {"external_data": False, "verbose": False}  # one self-contained file; no progress prints
    # The dynamo exporter prints progress lines on stdout; keep stdout clean for the CLI's JSON.
    with eval_mode(model), torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(LogitsOnly(model).eval(), (example,), str(path), input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=opset, **kwargs)
    return path


def load_torchscript(path) -> torch.jit.ScriptModule:
    """Load a TorchScript file on the CPU (silencing torch.jit's deprecation warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu")


def export_model(model: nn.Module, out_dir, *, formats=FORMATS, batch_size: int = 8, latency_batch: int = 1,
                 warmup: int = 3, runs: int = 20, seed: int = 0, opset: int = 18) -> dict:
    """Export ``model`` and report parity and CPU latency.

    Args:
        model: a fer_lib classifier (its mode is restored afterwards).
        out_dir: folder for ``model.ts`` and ``model.onnx``.
        formats: any of ``"torchscript"``, ``"onnx"``.
        batch_size: batch of the parity check (random normalised inputs; the trace uses batch 2, so a
            different batch also tests the dynamic batch axis).
        latency_batch: batch size of the latency measurement.
        warmup, runs: latency calls discarded / measured (the median is reported).
        seed: seed of the random inputs.
        opset: ONNX opset.

    Returns:
        ``{"model": name, "input": [B, C, 48, 48], "threads": n, "eager_ms": t, "torchscript": {"path",
        "max_abs_diff", "ms"}, "onnx": {...}}``; ``ms`` is the median latency for ``latency_batch`` images.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown export format(s) {unknown}; choose from {FORMATS}")
    out_dir = Path(out_dir)
    device = torch.device("cpu")
    model = model.to(device)
    chans = model_in_chans(model)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, chans, 48, 48, generator=gen)
    x_lat = torch.randn(latency_batch, chans, 48, 48, generator=gen)
    example = torch.randn(2, chans, 48, 48, generator=gen)
    report: dict = {"model": getattr(model, "model_name", type(model).__name__), "input": [batch_size, chans, 48, 48],
                    "latency_batch": latency_batch, "threads": torch.get_num_threads(), "device": "cpu"}
    wrapped = LogitsOnly(model)
    with eval_mode(model), torch.no_grad():
        ref = wrapped(x).numpy()
        report["eager_ms"] = _latency_ms(wrapped, x_lat, warmup, runs)
        if "torchscript" in formats:
            path = export_torchscript(model, out_dir / "model.ts", example)
            ts = load_torchscript(path)
            diff = float(np.abs(ts(x).numpy() - ref).max())
            report["torchscript"] = {"path": str(path), "max_abs_diff": diff,
                                     "ms": _latency_ms(ts, x_lat, warmup, runs)}
    if "onnx" in formats:
        try:
            import onnxruntime as ort  # optional (the export extra)
        except ImportError as e:
            raise ImportError("ONNX export needs onnx, onnxscript and onnxruntime: pip install 'fer_lib[export]'") from e
        path = export_onnx(model, out_dir / "model.onnx", example, opset=opset)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        run = lambda a: sess.run(None, {"input": a.numpy()})[0]  # noqa: E731
        diff = float(np.abs(run(x) - ref).max())
        report["onnx"] = {"path": str(path), "max_abs_diff": diff, "ms": _latency_ms(run, x_lat, warmup, runs),
                          "opset": opset}
    return report
