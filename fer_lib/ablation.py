"""Equal-budget ablation: the baseline, the full model, and the full model minus one module at a time.

Every variant is trained by ``python -m fer_lib train --preset ablation`` (the recipe of the measured table,
pinned in :data:`fer_lib.train.PRESETS`) in its own process for the same wall-clock budget, with
``--fit-budget`` (after each epoch the cosine schedule is re-planned to end when the budget does), so a module that
costs time pays for it with fewer training steps, which is the trade-off a user with a fixed budget faces. The
table reports, per variant: parameters, epochs and images seen, training throughput, the best validation
accuracy (PublicTest by default, the EMA weights, as ``train`` selects), and its difference to the full model.
A second seed of the full model (``full_seed1``) shows how much of a difference is noise.

Usage::

    python -m fer_lib.ablation --minutes 15 --parallel 2 --threads 1       # 10 runs on FER2013, ~72 min on 2 cores
    python -m fer_lib.ablation --only baseline full no_cbam --minutes 5
    python -m fer_lib.ablation --data synthetic --minutes 0.3              # a pipeline check, not a result

Outputs under ``--out`` (default ``runs/ablation``): one run folder and log per variant, ``ablation.json`` and
``ablation.md`` (the table, with the command that made it).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

#: variant name -> (model, model options beyond the base stem, extra ``train`` flags)
VARIANTS: dict[str, tuple[str, dict, list[str]]] = {
    "baseline": ("baseline_resnet18", {}, []),
    "full": ("sota_resemote_small", {}, []),
    "no_fusion": ("sota_resemote_small", {"fusion": False}, []),
    "no_cbam": ("sota_resemote_small", {"cbam": False}, []),
    "no_region": ("sota_resemote_small", {"region": False}, []),
    "no_anchor": ("sota_resemote_small", {"anchor": False}, []),
    "no_transformer": ("sota_resemote_small", {"transformer": False}, []),
    "no_gem": ("sota_resemote_small", {"gem": False}, []),
    "no_aux": ("sota_resemote_small", {"aux": False}, []),
    "full_seed1": ("sota_resemote_small", {}, ["--seed", "1"]),
}

#: Resolution probes of the baseline (run with ``--only``; not part of the default list): the stock stem leaves
#: 2x2 maps at 48 px; these buy finer maps with compute, to see which trade pays within the same budget.
PROBES: dict[str, tuple[str, dict, list[str]]] = {
    "baseline_no_maxpool": ("baseline_resnet18", {"stem": "no_maxpool"}, []),  # 3x3 last stage, ~3x the cost
    "baseline_64px": ("baseline_resnet18", {"input_size": 64}, []),  # resized to 64: 16x16 after the stem, ~1.8x
}
ALL = {**VARIANTS, **PROBES}


def train_command(name: str, args: argparse.Namespace) -> list[str]:
    """The ``python -m fer_lib train`` command line of one variant."""
    model, options, extra = ALL[name]
    cmd = [sys.executable, "-m", "fer_lib", "train", "--preset", args.preset, "--model", model,
           "--max-minutes", str(args.minutes), "--fit-budget", "--threads", str(args.threads),
           "--out", str(args.out), "--name", name, "--no-progress", "--data", args.data]
    for key, value in {"stem": args.stem, "input_size": args.input_size, **options}.items():
        cmd += ["--model-option", f"{key}={json.dumps(value)}"]
    return cmd + extra + list(args.train_args)


def summarize_run(name: str, run_dir: Path) -> dict:
    """One table row from a finished run folder (``history.json`` and ``config.json``)."""
    from fer_lib.models.registry import count_parameters, create_model

    history = json.loads((run_dir / "history.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    params = count_parameters(create_model(config["model"], **config["model_overrides"]))
    best = max(history, key=lambda h: h["val_acc"])
    images = sum(h.get("images", 0) for h in history)
    return {
        "variant": name, "model": config["model"], "options": config["model_overrides"], "seed": config["seed"],
        "params_m": params / 1e6, "epochs": images / max(1, history[0].get("images", 1)),
        "images_seen": images, "images_per_sec": sum(h["images_per_sec"] for h in history) / len(history),
        "minutes": sum(h["seconds"] for h in history) / 60, "best_val_acc": best["val_acc"],
        "best_epoch": best["epoch"], "last_val_acc": history[-1]["val_acc"], "final_lr": history[-1]["lr"],
        "epoch1_val_acc": history[0]["val_acc"],  # after the same steps (one warmup epoch) for every variant
    }


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


def build_parser() -> argparse.ArgumentParser:
    """The driver's command line (its defaults rebuild the measured table's recipe)."""
    p = argparse.ArgumentParser(prog="python -m fer_lib.ablation", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", choices=list(ALL),
                   help=f"variants to run (default: all of {list(VARIANTS)}; probes: {list(PROBES)})")
    p.add_argument("--minutes", type=float, default=15.0, help="wall-clock budget of each run")
    p.add_argument("--parallel", type=int, default=1, help="runs at once (each with --threads threads)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads per run")
    p.add_argument("--preset", default="ablation",
                   help="recipe every variant starts from (default: the 'ablation' preset, the measured table's)")
    p.add_argument("--stem", default="default", help="stem of every variant (the cpu preset's is 'default')")
    p.add_argument("--input-size", type=int, default=48,
                   help="input size of every variant (the measured table: 48; the cpu preset trains at 64)")
    p.add_argument("--data", default="fer2013", choices=("auto", "fer2013", "synthetic"))
    p.add_argument("--out", type=Path, default=Path("runs/ablation"))
    p.add_argument("--report-only", action="store_true", help="only rebuild the table from finished runs")
    p.add_argument("train_args", nargs=argparse.REMAINDER, help="after --: more flags for every train command")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.train_args[:1] == ["--"]:
        args.train_args = args.train_args[1:]
    names = args.only or list(VARIANTS)
    args.out.mkdir(parents=True, exist_ok=True)

    failed: list[str] = []
    if not args.report_only:
        queue, running = list(names), {}
        while queue or running:
            while queue and len(running) < args.parallel:
                name = queue.pop(0)
                cmd = train_command(name, args)
                log = open(args.out / f"{name}.log", "w")  # noqa: SIM115 (closed when the run ends)
                log.write("$ " + shlex.join(cmd) + "\n")
                log.flush()
                print(f"[ablation] start {name}: {shlex.join(cmd[1:])}", flush=True)
                running[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)
            time.sleep(2)
            for name, (proc, log) in list(running.items()):
                if proc.poll() is not None:
                    log.close()
                    del running[name]
                    status = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode}, see {log.name})"
                    print(f"[ablation] {name}: {status}", flush=True)
                    if proc.returncode:
                        failed.append(name)

    # the table covers every finished variant in --out, so runs made by separate invocations share one table
    rows = [summarize_run(n, args.out / n) for n in ALL if (args.out / n / "history.json").is_file()]
    command = "python -m fer_lib.ablation " + shlex.join(argv if argv is not None else sys.argv[1:])
    (args.out / "ablation.json").write_text(json.dumps({"command": command, "rows": rows}, indent=2))
    md = f"`{command}`\n\n{table(rows)}\n"
    (args.out / "ablation.md").write_text(md)
    print(md, flush=True)
    if failed:
        print(f"[ablation] failed runs: {', '.join(failed)}; their logs are in {args.out}", file=sys.stderr)
    return 1 if failed or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
