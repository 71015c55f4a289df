"""The training and evaluation plots, in one place (Grad-CAM and attention figures: :mod:`fer_lib.explain`).

* :func:`plot_history`: loss, accuracy and learning rate per epoch of one run (``train()``'s history).
* :func:`plot_run_curves`: validation accuracy against wall time for several runs (the ablation's figure).
* :func:`plot_confusion`, :func:`plot_reliability`: an :class:`fer_lib.evaluate.EvalReport`'s two figures.

``plot_history`` and ``plot_run_curves`` build a ``matplotlib.figure.Figure`` without pyplot (a notebook shows it
once, as the cell's value; nothing stays open); the two evaluation plots draw into ``ax`` when given.
"""

from __future__ import annotations

from matplotlib.figure import Figure

from fer_lib import EMOTIONS
from fer_lib.metrics import normalize_confusion


def plot_history(history, title: str | None = None):
    """Loss, accuracy and learning rate per epoch (train vs validation) as one matplotlib figure.

    The training loss includes label smoothing and the auxiliary-head losses (and mixup/CutMix targets), so it
    sits *above* the validation loss (plain NLL) early on; that is not a bug. Training accuracy is measured on
    augmented batches with the live weights, validation with the EMA weights.

    Args:
        history: ``TrainResult.history`` (or the :class:`~fer_lib.train.TrainResult` itself, or the loaded
            ``history.json``).
        title: figure title.

    Returns:
        ``matplotlib.figure.Figure`` with three axes, made without pyplot: a notebook shows it once (as the cell's
        value), nothing stays open in pyplot's figure list, and ``fig.savefig(path)`` writes it.
    """
    rows = list(history.history) if hasattr(history, "history") else list(history)
    if not rows:
        raise ValueError("plot_history: the history is empty (no epoch finished)")
    ep = [h["epoch"] for h in rows]
    fig = Figure(figsize=(13, 3.6))
    axes = fig.subplots(1, 3)
    for ax, key, label in ((axes[0], "loss", "loss"), (axes[1], "acc", "accuracy")):
        ax.plot(ep, [h[f"train_{key}"] for h in rows], "o-", label="train")
        ax.plot(ep, [h[f"val_{key}"] for h in rows], "s-", label="validation")
        ax.set(xlabel="epoch", ylabel=label, title=label)
        ax.grid(alpha=0.3)
        ax.legend()
    best = max(rows, key=lambda h: h["val_acc"])
    axes[1].annotate(f"best {best['val_acc']:.3f}", (best["epoch"], best["val_acc"]), textcoords="offset points",
                     xytext=(0, -14), ha="center", fontsize=8)
    axes[2].plot(ep, [h["lr"] for h in rows], "o-", color="tab:green")
    axes[2].set(xlabel="epoch", ylabel="learning rate (end of epoch)", title="learning rate")
    axes[2].grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_run_curves(rows: list[dict], title: str = ""):
    """Validation accuracy (EMA, after each epoch) against wall-clock minutes, one line per run.

    Args:
        rows: ``fer_lib.ablation.summarize_run`` rows (``variant``, ``seed``, ``curve`` = ``[[minutes, acc], ...]``):
            one colour per variant, one line style per seed.

    Returns a ``matplotlib.figure.Figure`` made without pyplot (``fig.savefig(path)`` writes it).
    """
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.subplots()
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    colors = {v: f"C{i % 10}" for i, v in enumerate(variants)}
    styles = ["-", "--", ":", "-."]
    for r in rows:
        xs, ys = zip(*r["curve"]) if r.get("curve") else ((), ())
        seed = r.get("seed") or 0
        ax.plot(xs, ys, styles[seed % len(styles)], color=colors[r["variant"]], marker=".", markersize=3,
                label=f"{r['variant']} (seed {seed})")
    ax.set(xlabel="wall-clock minutes (training + validation)", ylabel="val accuracy (EMA)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def plot_confusion(confusion, class_names=EMOTIONS, title: str = "confusion matrix (row-normalised)", ax=None):
    """Seaborn heatmap of the row-normalised confusion matrix with class names; returns the figure."""
    import matplotlib.pyplot as plt  # deferred: pyplot and seaborn only when drawn into new axes
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 5.4))
    sns.heatmap(normalize_confusion(confusion), annot=True, fmt=".2f", cmap="Blues", vmin=0, vmax=1, square=True,
                xticklabels=class_names, yticklabels=class_names, cbar_kws={"label": "fraction of the true class"},
                ax=ax)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    ax.figure.tight_layout()
    return ax.figure


def plot_reliability(bins: dict, ece: float | None = None, title: str = "reliability diagram", ax=None):
    """Reliability diagram: accuracy per confidence bin against the diagonal of perfect calibration."""
    import matplotlib.pyplot as plt  # deferred: pyplot only when a figure is drawn

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    width = bins["upper"][0] - bins["lower"][0]
    acc = [a if a is not None else 0.0 for a in bins["accuracy"]]  # empty bins draw nothing
    gap = [c - a if c is not None else 0.0 for c, a in zip(bins["confidence"], acc)]
    ax.bar(bins["lower"], acc, width=width, align="edge", edgecolor="k", alpha=0.8, label="accuracy")
    ax.bar(bins["lower"], gap, bottom=acc, width=width, align="edge", fill=False, hatch="//",
           edgecolor="tab:red", linewidth=0.8, label="gap to mean confidence")
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (max probability)", ylabel="accuracy",
           title=title if ece is None else f"{title} (ECE {ece:.3f})")
    ax.legend(loc="upper left")
    ax.figure.tight_layout()
    return ax.figure
