"""Cost benchmark: each SOTAResEmote variant against its baseline, measured in the same run.

For every variant and the baseline on the same backbone, stem and input size it reports parameters, GFLOPs
per image (counted by ``torch.utils.flop_counter.FlopCounterMode`` on one eval forward; 1 multiply-add = 2
FLOPs), training throughput (images/s for forward + backward + AdamW step, with the auxiliary losses) and
inference latency (ms/image, eval, ``torch.no_grad``), each also as a ratio to the baseline. Models are timed
in interleaved rounds (A, B, then B, A, ...: the order rotates every round) and each model's *fastest* round is reported (as ``timeit`` advises:
other jobs on a shared CPU only ever add time), so a busy machine disturbs the ratios less than the absolute
numbers; the median round is kept in the JSON too, and ``paired x`` is the median over rounds of the ratio
within each round (the steadiest training-cost ratio on a machine whose speed drifts). On the CPU it also reports training images per second of
*process CPU time* (``time.process_time``), which time-slicing by other jobs does not inflate; with
``--threads 1`` that is the steadiest cost measure on a shared machine.

Usage::

    python -m fer_lib bench                          # small, medium, large vs their baselines on the CPU
    python -m fer_lib bench --variants small --ablate --batch-size 32 --iters 6
    python -m fer_lib bench --json results.json      # also write the rows as JSON ("-" for stdout)
    python -m fer_lib bench --variants baseline_resnet18 --stem default --batch-size 128 \
        --precisions fp32,bf16,bf16-nhwc                # mixed precision / memory format, ratios to fp32
    python -m fer_lib bench --data                   # the data-pipeline benchmark (fer_lib.data.bench)
    python -m fer_lib bench --step-overhead          # the training loop's own cost per step (fer_lib.bench.overhead)
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from fer_lib.inference.models import resolve_device  # noqa: F401 - part of this module's API
from fer_lib.models.registry import count_parameters, create_model, model_config
from fer_lib.models.sota_resemote import ModelOutput, SOTAResEmoteConfig

SHORT = {"small": "sota_resemote_small", "small_v1": "sota_resemote_small_v1", "medium": "sota_resemote_medium", "large": "sota_resemote_large"}

#: ``--precisions`` names -> (autocast dtype or None for fp32, channels_last). On a CPU, bf16 autocast is fast only
#: with native bf16 instructions (AVX512-BF16 or AMX); fp16 needs CUDA.
PRECISIONS = {
    "fp32": (None, False),
    "fp32-nhwc": (None, True),
    "bf16": (torch.bfloat16, False),
    "bf16-nhwc": (torch.bfloat16, True),
    "fp16": (torch.float16, False),
    "fp16-nhwc": (torch.float16, True),
}


def precision_name(dtype: torch.dtype | None, channels_last: bool = False) -> str:
    """The :data:`PRECISIONS` name of an autocast dtype (``None``: fp32) and memory format, e.g. ``"bf16-nhwc"``
    for what a training precision (``fer_lib.train.setup.Precision.dtype``) and ``channels_last`` make.

    Raises:
        ValueError: a dtype :data:`PRECISIONS` does not list.
    """
    for name, spec in PRECISIONS.items():
        if spec == (dtype, channels_last):
            return name
    raise ValueError(f"no benchmark precision for autocast dtype {dtype} with channels_last={channels_last}; "
                     f"known: {', '.join(PRECISIONS)}")


def count_gflops(model: torch.nn.Module, in_chans: int, device: torch.device) -> float:
    """Forward GFLOPs for one ``[1, in_chans, 48, 48]`` image in eval mode (FlopCounterMode, not estimated)."""
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, in_chans, 48, 48, device=device))
    model.train(was_training)
    return counter.get_total_flops() / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


AUX_WEIGHT = 0.3  # as fer_lib.train's default TrainConfig.aux_weight: loss = CE + 0.3 * mean aux CE


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None)


def _train_step(model, opt, x, y, dtype: torch.dtype | None = None) -> None:
    with _autocast(x.device, dtype):
        out = model.forward_train(x) if hasattr(model, "forward_train") else model(x)
    logits, aux = (out.logits, out.aux_logits) if isinstance(out, ModelOutput) else (out, ())
    loss = F.cross_entropy(logits.float(), y)
    if aux:
        loss = loss + AUX_WEIGHT * torch.stack([F.cross_entropy(a.float(), y) for a in aux]).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def time_models(models: dict, batch_size: int, iters: int, warmup: int, device: torch.device,
                precision: dict | None = None) -> dict:
    """Seconds per training step and per inference batch, interleaving the models round by round.

    ``precision`` maps a model's name to a :data:`PRECISIONS` name (default ``"fp32"``): its autocast dtype for
    training and inference, and whether model and input are channels_last.

    Returns ``{name: (min train, min infer, median train, median infer, min train CPU seconds, paired ratio)}`` over
    the timed rounds (wall-clock seconds; CPU seconds are ``time.process_time``, summed over all threads). The
    paired ratio is the median over rounds of (the first model's train time / this model's) *in the same round*:
    rounds are back to back, so a machine that drifts between rounds moves both times of a round together.
    """
    gen = torch.Generator().manual_seed(0)
    state = {}
    for name, m in models.items():
        cfg: SOTAResEmoteConfig = m.config
        x = torch.randn(batch_size, cfg.in_chans, 48, 48, generator=gen).to(device)
        y = torch.randint(0, cfg.num_classes, (batch_size,), generator=gen).to(device)
        dtype, nhwc = PRECISIONS[(precision or {}).get(name, "fp32")]
        if nhwc:
            m.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        state[name] = (m, torch.optim.AdamW(m.parameters(), lr=1e-4), x, y, dtype)
    train_t = {n: [] for n in models}
    infer_t = {n: [] for n in models}
    train_cpu = {n: [] for n in models}
    names = list(state)
    for r in range(warmup + iters):
        # rotate the order every round, so that no model is always timed first (right after the previous round's
        # last model freed its memory) -- a position effect that otherwise biases every ratio
        for name in names[r % len(names):] + names[:r % len(names)]:
            m, opt, x, y, dtype = state[name]
            m.train()
            _sync(device)
            c0, t0 = time.process_time(), time.perf_counter()
            _train_step(m, opt, x, y, dtype)
            _sync(device)
            t1, c1 = time.perf_counter(), time.process_time()
            m.eval()
            with torch.no_grad(), _autocast(device, dtype):
                m(x)
            _sync(device)
            t2 = time.perf_counter()
            if r >= warmup:
                train_t[name].append(t1 - t0)
                infer_t[name].append(t2 - t1)
                train_cpu[name].append(c1 - c0)
    ref = next(iter(models))
    return {n: (min(train_t[n]), min(infer_t[n]), statistics.median(train_t[n]), statistics.median(infer_t[n]),
                min(train_cpu[n]), statistics.median(r / t for r, t in zip(train_t[ref], train_t[n])))
            for n in models}


@dataclass
class BenchSettings:
    """How every model of a benchmark is timed.

    Attributes:
        batch_size: images per step (>= 2: BatchNorm in training).
        iters: timed rounds per model; each model's fastest round is reported.
        warmup: untimed rounds first.
        input_size / stem / in_chans: model-config overrides for every model (``None``: each model's own).
    """

    batch_size: int = 32
    iters: int = 5
    warmup: int = 2
    input_size: int | None = None
    stem: str | None = None
    in_chans: int | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 2 or self.iters < 1 or self.warmup < 0:
            raise ValueError("need --batch-size >= 2 (BatchNorm in training), --iters >= 1, --warmup >= 0")


def plan_groups(variants: list[str], ablate: bool = False, precisions: tuple[str, ...] = ("fp32",)) -> list[list]:
    """One group per variant: its baseline (same backbone) first, then the variant, then (``ablate``) the variant
    with each module off in turn and all off; every spec repeated in each precision.

    Raises:
        ValueError: an unknown model name or precision.
    """
    names = [SHORT.get(v.strip(), v.strip()) for v in variants if v.strip()]
    for n in names:
        model_config(n)  # validates the name with a clear message
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown or not precisions:
        raise ValueError(f"--precisions: unknown {unknown or list(precisions)}; choose from {', '.join(PRECISIONS)}")
    groups = []
    for name in names:
        base = "baseline_" + model_config(name).backbone
        specs = [(base, base, {})] + ([] if name == base else [(name, name, {})])
        if ablate and not name.startswith("baseline_"):
            specs += [(f"{name} -{s}", name, {s: False}) for s in SOTAResEmoteConfig.SWITCHES]
            specs.append((f"{name} all off", name, {s: False for s in SOTAResEmoteConfig.SWITCHES}))
        if list(precisions) != ["fp32"]:
            specs = [(label if p == "fp32" else f"{label} [{p}]", n, o, p) for p in precisions for label, n, o in specs]
        groups.append(specs)
    return groups


def bench_group(specs: list[tuple], args: BenchSettings, device: torch.device) -> list[dict]:
    """Benchmark ``(label, registry name, overrides[, precision])`` rows (precision: a :data:`PRECISIONS` name,
    default ``"fp32"``); the first row is the reference for the ratios."""
    common = dict(input_size=args.input_size, stem=args.stem, in_chans=args.in_chans)
    common = {k: v for k, v in common.items() if v is not None}
    models, rows = {}, []
    precision = {spec[0]: (spec[3] if len(spec) > 3 else "fp32") for spec in specs}
    for label, name, overrides, *_ in specs:
        torch.manual_seed(0)
        models[label] = create_model(name, **{**common, **overrides}).to(device)
    times = time_models(models, args.batch_size, args.iters, args.warmup, device, precision)
    for label, name, overrides, *_ in specs:
        m = models[label]
        t_train, t_infer, med_train, med_infer, cpu_train, paired = times[label]
        rows.append(dict(
            label=label, model=name, overrides=overrides, device=str(device), precision=precision[label],
            batch_size=args.batch_size,
            input_size=m.config.input_size, stem=m.config.stem, grid=list(m.grid),
            params_m=count_parameters(m) / 1e6, gflops=count_gflops(m, m.config.in_chans, device),
            train_img_s=args.batch_size / t_train, infer_ms_img=1000 * t_infer / args.batch_size,
            train_img_s_median=args.batch_size / med_train, infer_ms_img_median=1000 * med_infer / args.batch_size,
            train_img_cpu_s=args.batch_size / cpu_train, train_x_paired=paired,
        ))
    ref = rows[0]
    for row in rows:
        row["params_x"] = row["params_m"] / ref["params_m"]
        row["gflops_x"] = row["gflops"] / ref["gflops"]
        row["train_x"] = row["train_img_s"] / ref["train_img_s"]
        row["infer_x"] = row["infer_ms_img"] / ref["infer_ms_img"]
        row["train_cpu_x"] = row["train_img_cpu_s"] / ref["train_img_cpu_s"]
    return rows


def format_rows(rows: list[dict]) -> str:
    """A fixed-width table; ``x`` columns are ratios to the group's first row (the baseline)."""
    head = (f"{'model':34s} {'grid':>5s} {'params M':>9s} {'x':>5s} {'GFLOPs':>7s} {'x':>5s} "
            f"{'train img/s':>11s} {'x':>5s} {'paired x':>8s} {'img/cpu-s':>9s} {'x':>5s} {'infer ms/img':>12s} {'x':>5s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        grid = "x".join(map(str, r["grid"]))
        lines.append(
            f"{r['label']:34s} {grid:>5s} {r['params_m']:9.2f} {r['params_x']:5.2f} {r['gflops']:7.3f} "
            f"{r['gflops_x']:5.2f} {r['train_img_s']:11.1f} {r['train_x']:5.2f} {r['train_x_paired']:8.2f} "
            f"{r['train_img_cpu_s']:9.1f} "
            f"{r['train_cpu_x']:5.2f} {r['infer_ms_img']:12.2f} "
            f"{r['infer_x']:5.2f}"
        )
    return "\n".join(lines)
