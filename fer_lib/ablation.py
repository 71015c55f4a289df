"""Equal-budget ablation: the baseline, the full model, and the full model minus one module at a time.

Every variant is trained by ``python -m fer_lib train --preset ablation`` (the recipe of the measured table,
pinned in :data:`fer_lib.train.PRESETS`) in its own process for the same wall-clock budget, with
``--fit-budget`` (after each epoch the cosine schedule is re-planned to end when the budget does), so a module that
costs time pays for it with fewer training steps, which is the trade-off a user with a fixed budget faces. The
table reports, per variant: parameters, epochs and images seen, training throughput, the best validation
accuracy (PublicTest by default, the EMA weights, as ``train`` selects), and its difference to the full model.
A second seed of the full model (``full_seed1``) shows how much of a difference is noise.

**Paired mode** (``--paired --seeds 0 1``) is for budgets long enough to judge an architecture (an hour, ~30
epochs): for each seed, every selected variant starts *at the same moment*, each in its own process with
``--threads`` threads, for the same wall-clock minutes. Variants that share a machine also share its speed drift
(one host ran 264-355 images/s on different days), so the paired difference per seed is the number to read;
the table gives each variant's mean and spread over seeds and its paired difference to ``--reference``
(default ``baseline``), and ``ablation.png`` plots PublicTest accuracy against wall time for every run.

Usage::

    python -m fer_lib ablation --minutes 15 --parallel 2 --threads 1       # 10 runs on FER2013, ~72 min on 2 cores
    python -m fer_lib ablation --paired --seeds 0 1 --only baseline full --base sota_resemote_small \
        --minutes 58 --threads 1 --preset cpu --input-size 64              # two seeds x two variants, ~2 h
    python -m fer_lib ablation --only baseline full no_cbam --minutes 5
    python -m fer_lib ablation --data synthetic --minutes 0.3              # a pipeline check, not a result

Outputs under ``--out`` (default ``runs/ablation``): one run folder and log per run, ``ablation.json``,
``ablation.md`` (the table, with the command that made it) and ``ablation.png`` (accuracy against wall time).
"""

from __future__ import annotations

import json
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from fer_lib.models.registry import count_parameters, create_model
from fer_lib.plots import plot_run_curves

#: variant name -> (model, model options beyond the base stem, extra ``train`` flags)
VARIANTS: dict[str, tuple[str, dict, list[str]]] = {
    "baseline": ("baseline_resnet18", {}, []),
    "full": ("sota_resemote_small_v1", {}, []),
    "no_fusion": ("sota_resemote_small_v1", {"fusion": False}, []),
    "no_cbam": ("sota_resemote_small_v1", {"cbam": False}, []),
    "no_region": ("sota_resemote_small_v1", {"region": False}, []),
    "no_anchor": ("sota_resemote_small_v1", {"anchor": False}, []),
    "no_transformer": ("sota_resemote_small_v1", {"transformer": False}, []),
    "no_gem": ("sota_resemote_small_v1", {"gem": False}, []),
    "no_aux": ("sota_resemote_small_v1", {"aux": False}, []),
    "full_seed1": ("sota_resemote_small_v1", {}, ["--seed", "1"]),
}

#: Resolution probes of the baseline (run with ``--only``; not part of the default list): the stock stem leaves
#: 2x2 maps at 48 px; these buy finer maps with compute, to see which trade pays within the same budget.
PROBES: dict[str, tuple[str, dict, list[str]]] = {
    "baseline_no_maxpool": ("baseline_resnet18", {"stem": "no_maxpool"}, []),  # 3x3 last stage, ~3x the cost
    "baseline_64px": ("baseline_resnet18", {"input_size": 64}, []),  # resized to 64: 16x16 after the stem, ~1.8x
}
ALL = {**VARIANTS, **PROBES}


def run_name(variant: str, seed: int | None = None) -> str:
    """The run folder of a variant: ``variant`` alone, or ``variant_seedN`` in paired mode."""
    return variant if seed is None else f"{variant}_seed{seed}"


def parse_run_name(run: str, paired: bool = False) -> tuple[str, int | None]:
    """Inverse of :func:`run_name`: ``"no_cbam_seed3"`` -> ``("no_cbam", 3)``, else ``(run, None)``.

    ``"full_seed1"`` is also the unpaired noise variant's name: it is ``("full", 1)`` in a paired ablation's folder
    (``paired=True``: every run there is ``variant_seedN``) and ``("full_seed1", None)`` otherwise."""
    head, sep, tail = run.rpartition("_seed")
    if sep and head in ALL and tail.isdigit() and (paired or run not in ALL):
        return head, int(tail)
    return run, None


@dataclass
class AblationPlan:
    """What every run of an ablation shares (the driver's defaults rebuild the measured 15-minute table).

    Attributes:
        minutes: wall-clock budget of each run (``--fit-budget``: the schedule ends with it).
        threads: torch CPU threads per run.
        preset: the recipe every variant starts from (the ``ablation`` preset: the measured table's).
        stem / input_size: stem and input size of every variant (the cpu preset: ``"default"`` at 64 px).
        data: ``"auto"``, ``"fer2013"`` or ``"synthetic"``.
        out: parent folder of the run folders and the report.
        base: registered model of the ``full`` variant and of every ``no_*`` variant.
        train_args: more ``train`` flags for every run.
    """

    minutes: float = 15.0
    threads: int = 2
    preset: str = "ablation"
    stem: str = "default"
    input_size: int = 48
    data: str = "fer2013"
    out: Path = Path("runs/ablation")
    base: str = "sota_resemote_small_v1"
    train_args: list[str] = field(default_factory=list)


def train_command(name: str, plan: AblationPlan, seed: int | None = None) -> list[str]:
    """The ``python -m fer_lib train`` command line of one variant (with ``seed``: the paired run of that seed)."""
    model, options, extra = ALL[name]
    if model == "sota_resemote_small_v1":  # the full model and its module-removal variants start from plan.base
        model = plan.base or model
    cmd = [sys.executable, "-m", "fer_lib", "train", "--preset", plan.preset, "--model", model,
           "--max-minutes", str(plan.minutes), "--fit-budget", "--threads", str(plan.threads),
           "--out", str(plan.out), "--name", run_name(name, seed), "--no-progress", "--data", plan.data]
    for key, value in {"stem": plan.stem, "input_size": plan.input_size, **options}.items():
        cmd += ["--model-option", f"{key}={json.dumps(value)}"]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    return cmd + extra + list(plan.train_args)


def plan_jobs(names: list[str], seeds: list[int] | None) -> list[list[tuple[str, int | None]]]:
    """Groups of ``(variant, seed)`` runs; each group starts together and finishes before the next.

    Unpaired (``seeds=None``): one group, the driver's ``--parallel`` sets how many run at once. Paired: one group
    per seed holding every variant, so the runs of a seed share the machine for the same minutes.
    """
    if seeds is None:
        return [[(n, None) for n in names]]
    return [[(n, s) for n in names] for s in seeds]


def summarize_run(name: str, run_dir: Path, paired: bool = False) -> dict:
    """One table row from a finished run folder (``history.json`` and ``config.json``).

    ``curve`` holds ``[wall minutes, PublicTest accuracy]`` after every epoch, for
    :func:`fer_lib.plots.plot_run_curves`.
    """
    history = json.loads((run_dir / "history.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    params = count_parameters(create_model(config["model"], **config["model_overrides"]))
    best = max(history, key=lambda h: h["val_acc"])
    images = sum(h.get("images", 0) for h in history)
    variant, _ = parse_run_name(name, paired)
    minutes, curve = 0.0, []
    for h in history:
        minutes += h["seconds"] / 60
        curve.append([round(minutes, 3), h["val_acc"]])
    return {
        "run": name, "variant": variant, "model": config["model"], "options": config["model_overrides"], "seed": config["seed"],
        "params_m": params / 1e6, "epochs": images / max(1, history[0].get("images", 1)),
        "images_seen": images, "images_per_sec": sum(h["images_per_sec"] for h in history) / len(history),
        "minutes": sum(h["seconds"] for h in history) / 60, "best_val_acc": best["val_acc"],
        "best_epoch": best["epoch"], "last_val_acc": history[-1]["val_acc"], "final_lr": history[-1]["lr"],
        "epoch1_val_acc": history[0]["val_acc"],  # after the same steps (one warmup epoch) for every variant
        "curve": curve,
    }


def _mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``nan`` for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else float("nan")


def paired_summary(rows: list[dict], reference: str = "baseline") -> list[dict]:
    """Per variant: best-accuracy mean and sd over seeds, and the paired difference to ``reference``.

    The difference of a variant is taken seed by seed (each against the ``reference`` run of the same seed, which
    shared the machine with it) and then averaged; seeds without a reference run are left out of it.
    """
    by_variant: dict[str, dict[int, dict]] = {}
    for r in rows:
        by_variant.setdefault(r["variant"], {})[r["seed"]] = r
    ref = by_variant.get(reference, {})
    out = []
    for variant, runs in by_variant.items():
        seeds = sorted(runs)
        accs = [runs[s]["best_val_acc"] for s in seeds]
        mean, sd = _mean_sd(accs)
        diffs = [runs[s]["best_val_acc"] - ref[s]["best_val_acc"] for s in seeds if s in ref]
        out.append({
            "variant": variant, "seeds": seeds, "best_val_acc": accs, "mean": mean, "sd": sd,
            "epochs": _mean_sd([runs[s]["epochs"] for s in seeds])[0],
            "images_per_sec": _mean_sd([runs[s]["images_per_sec"] for s in seeds])[0],
            "params_m": runs[seeds[0]]["params_m"],
            "diffs": diffs, "mean_diff": _mean_sd(diffs)[0] if diffs and variant != reference else None,
        })
    return out


def paired_table(rows: list[dict], reference: str = "baseline") -> str:
    """Markdown table of :func:`paired_summary` (accuracy: best epoch, PublicTest by default, EMA weights)."""
    out = [f"| variant | params (M) | epochs (mean) | train img/s (mean) | best val acc per seed | mean (sd) | "
           f"vs {reference}, paired (points, per seed) | mean vs {reference} (points) |",
           "|---|---:|---:|---:|---|---:|---|---:|"]
    for v in paired_summary(rows, reference):
        per_seed = " / ".join(f"{a:.4f}" for a in v["best_val_acc"])
        sd = "" if v["sd"] != v["sd"] else f" ({v['sd']:.4f})"
        diffs = " / ".join(f"{100 * d:+.2f}" for d in v["diffs"]) if v["variant"] != reference else ""
        mean_diff = "" if v["mean_diff"] is None else f"**{100 * v['mean_diff']:+.2f}**"
        out.append(f"| {v['variant']} | {v['params_m']:.2f} | {v['epochs']:.1f} | {v['images_per_sec']:.0f} | "
                   f"{per_seed} (seeds {', '.join(map(str, v['seeds']))}) | {v['mean']:.4f}{sd} | {diffs} | "
                   f"{mean_diff} |")
    return "\n".join(out)


def table(rows: list[dict]) -> str:
    """Markdown table; differences are against the ``full`` row (when present)."""
    ref = next((r["best_val_acc"] for r in rows if r["variant"] == "full"), None)
    out = ["| variant | params (M) | epochs | train img/s | minutes | val acc after epoch 1 | best val acc | "
           "vs full (points) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        diff = "" if ref is None or r["variant"] == "full" else f"{100 * (r['best_val_acc'] - ref):+.2f}"
        out.append(f"| {r['variant']} | {r['params_m']:.2f} | {r['epochs']:.2f} | {r['images_per_sec']:.0f} | "
                   f"{r['minutes']:.1f} | {r.get('epoch1_val_acc', float('nan')):.4f} | {r['best_val_acc']:.4f} | "
                   f"{diff} |")
    return "\n".join(out)


def write_report(plan: AblationPlan, command: str, paired: bool, reference: str = "baseline") -> tuple[str, list]:
    """Summarise every finished run in ``plan.out`` into ``ablation.json``, ``ablation.md`` and ``ablation.png``;
    returns ``(markdown, rows)``."""
    rows = [summarize_run(r, plan.out / r, paired) for r in finished_runs(plan.out, paired=paired)]
    report = {"command": command, "paired": paired, "reference": reference, "rows": rows}
    if paired and rows:
        report["summary"] = paired_summary(rows, reference)
    (plan.out / "ablation.json").write_text(json.dumps(report, indent=2))
    body = paired_table(rows, reference) if paired else table(rows)
    md = f"`{command}`\n\n{body}\n"
    if rows:
        plot_run_curves(rows, f"PublicTest accuracy vs wall time ({plan.minutes:g} min per run)").savefig(
            plan.out / "ablation.png", dpi=110)
        md += "\n![PublicTest accuracy against wall time](ablation.png)\n"
    (plan.out / "ablation.md").write_text(md)
    return md, rows


def finished_runs(out: Path, paired: bool) -> list[str]:
    """Run folders in ``out`` with a ``history.json``: the variants of :data:`ALL` (unpaired) or every
    ``variant_seedN`` (paired), so that runs made by separate invocations share one table."""
    if not paired:
        return [n for n in ALL if (out / n / "history.json").is_file()]
    return sorted(p.name for p in out.iterdir()
                  if (p / "history.json").is_file() and parse_run_name(p.name, paired=True)[1] is not None)


def run_group(group: list[tuple[str, int | None]], plan: AblationPlan, parallel: int) -> list[str]:
    """Run ``group``'s train commands, ``parallel`` at a time; returns the names of the runs that failed.

    Raises:
        ValueError: ``parallel`` below 1 (no run would ever start).
    """
    if parallel < 1:
        raise ValueError(f"--parallel {parallel}: must be at least 1 (the number of runs at once)")
    failed: list[str] = []
    queue, running = list(group), {}
    while queue or running:
        while queue and len(running) < parallel:
            name, seed = queue.pop(0)
            run = run_name(name, seed)
            cmd = train_command(name, plan, seed)
            log = open(plan.out / f"{run}.log", "w")  # noqa: SIM115 (closed when the run ends)
            shown = shlex.join(cmd[1:])  # without sys.executable: no machine paths in logs
            log.write(f"$ python {shown}\n")
            log.flush()
            print(f"[ablation] start {run}: {shown}", flush=True)
            running[run] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)
        time.sleep(2)
        for run, (proc, log) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                del running[run]
                status = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode}, see {log.name})"
                print(f"[ablation] {run}: {status}", flush=True)
                if proc.returncode:
                    failed.append(run)
    return failed
