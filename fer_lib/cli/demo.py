"""``python -m fer_lib demo``: train a preset, evaluate it with TTA, explain it, and save everything.

What ``make demo`` runs. Steps: first the trained model bundled with fer_lib on a real photo that ships with a
dependency (scikit-image's astronaut, else matplotlib's Grace Hopper), so a real prediction shows within a minute;
then load the data (FER2013 when found, else the synthetic faces -- the summary says
which, loudly), train the preset (:data:`fer_lib.train.PRESETS`), reload the best checkpoint from the file alone,
evaluate it on the validation split with test-time augmentation, draw a Grad-CAM grid, and write under
``runs/<name>/``::

    best.pt, last.pt, history.json, config.json      training (see fer_lib.train)
    report.json                                       metrics, calibration, data source, checkpoint, TTA
    history.png, confusion.png, reliability.png, gradcam.png
    bundled_<photo>.png                               the bundled model's prediction on the sample photo
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fer_lib.cli.train import (
    add_common_arguments,
    check_before_work,
    config_from_args,
    load_data,
    skipped_line,
    summarize,
    write_skipped,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, default_preset="demo")
    parser.add_argument("--tta", choices=("none", "flip", "tencrop"), default="flip", help="TTA for the evaluation")
    parser.add_argument("--no-explain", action="store_true", help="skip the Grad-CAM grid")


def explain(model, split, out: Path) -> str:
    """Save a Grad-CAM grid to ``out``; returns a one-line note."""
    from fer_lib.explain import cam_grid

    fig = cam_grid(model, split, per_class=3)  # a pyplot-free Figure: nothing to close
    fig.savefig(out, dpi=110)
    return f"Grad-CAM grid: {out}"


def bundled_on_photo(out_dir: Path) -> str:
    """The bundled FER2013 model on the first sample photo; returns what to print (saves the annotated photo)."""
    from fer_lib.faces import NoFaceError, annotate, predict_faces, sample_photos, save_png
    from fer_lib.inference import CheckpointError, describe_model, pretrained

    try:
        model = pretrained()
    except CheckpointError as e:
        return f"bundled model skipped: {e}"
    photos = sample_photos()
    if not photos:
        return "bundled model skipped: no sample photo found (install scikit-image or matplotlib's sample data)"
    name, photo = next(iter(photos.items()))
    try:
        preds = predict_faces(model, photo, select="largest")
    except NoFaceError as e:
        return f"bundled model: {e}"
    path = save_png(annotate(photo, preds), out_dir / f"bundled_{name}.png")
    top = ", ".join(f"{e} {p:.2f}" for e, p in preds[0].top_k)
    return f"{describe_model(model)}\n  on the sample photo '{name}': {top}  ({path})"


def run(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fer_lib.evaluate import evaluate_model, save_figures
    from fer_lib.inference import load_model
    from fer_lib.paths import find_fer2013
    from fer_lib.plots import plot_history
    from fer_lib.train.engine import train
    from fer_lib.train.setup import select_splits

    t0 = time.perf_counter()
    cfg = config_from_args(args)
    check_before_work(cfg)  # before the bundled model's photo is written into the run folder
    print("== the trained model that ships with fer_lib, on a real photo:", flush=True)
    bundled = bundled_on_photo(Path(cfg.out_dir) / cfg.name)
    print(bundled, flush=True)
    data = load_data(cfg)
    kind = "SYNTHETIC faces (NOT FER2013)" if data.synthetic else "FER2013"
    print(f"== fer_lib demo, preset {args.preset!r}: training on {kind}: {data.source}", flush=True)
    run_dir = Path(cfg.out_dir) / cfg.name
    if line := skipped_line(data, run_dir):
        print(line, flush=True)
    result = train(cfg, data, progress=not args.no_progress,
                   on_epoch_end=lambda epoch, row: write_skipped(data, run_dir))
    if result.last_path is None:
        raise RuntimeError(f"no epoch finished, nothing to evaluate ({result.stop_reason})")
    run_dir = result.run_dir
    chosen = result.best_path or result.last_path  # no best.pt here: resumed into a new folder, no better epoch yet
    model = load_model(chosen)
    _, val = select_splits(cfg, data)
    root = None if data.synthetic else find_fer2013(cfg.data_root)
    report = evaluate_model(model, val, args.tta, data=data, checkpoint=chosen, root=root)
    report.save(run_dir / "report.json")
    figures = save_figures(report, run_dir)
    fig = plot_history(result.history, title=f"{cfg.model} on {kind}")
    fig.savefig(run_dir / "history.png", dpi=110)
    plt.close(fig)
    figures.append(run_dir / "history.png")
    note = "Grad-CAM skipped (--no-explain)" if args.no_explain else explain(model, val, run_dir / "gradcam.png")
    minutes = (time.perf_counter() - t0) / 60
    print("\n" + "=" * 78)
    print(f"DATA: {kind}" + ("  -- these numbers say NOTHING about FER2013" if data.synthetic else ""))
    print(summarize(result))
    print(report.summary())
    print(note)
    print("bundled model:", bundled)
    print(f"report: {run_dir / 'report.json'}; figures: {', '.join(p.name for p in figures)}")
    print(f"total time {minutes:.1f} min")
    print("=" * 78)
    return 0
