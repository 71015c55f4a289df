"""Evaluate a model on any split: metrics, calibration, test-time augmentation and a JSON report.

>>> import fer_lib
>>> from fer_lib.data import load_fer2013, split_by_name
>>> from fer_lib.evaluate import evaluate_model
>>> data = load_fer2013()
>>> model = fer_lib.pretrained()                     # or fer_lib.load_model("runs/cpu/best.pt")
>>> report = evaluate_model(model, split_by_name(data, "PublicTest"), tta="flip", data=data)
>>> print(report.summary()); report.save("runs/eval_publictest.json")

Test-time augmentation (``"none"``, ``"flip"``, ``"tencrop"``) is described in :mod:`fer_lib.inference.proba`.

Command line: ``python -m fer_lib evaluate --split PublicTest --tta flip`` evaluates the bundled model;
``--checkpoint runs/cpu/best.pt --data-root PATH --split PrivateTest`` any checkpoint on any data and split.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fer_lib import EMOTIONS
from fer_lib.data import FERDataError, load_fer2013, load_synthetic, split_by_name
from fer_lib.inference import describe_model, is_bundled, load_model, resolve_device
from fer_lib.inference.models import model_in_chans as model_channels  # noqa: F401 - the old name
from fer_lib.inference.proba import TTA_MODES, predict_proba, tta_views  # noqa: F401 - re-exported
from fer_lib.metrics import classification_metrics, expected_calibration_error, reliability_bins
from fer_lib.paths import file_in_the_way, find_fer2013, unwritable  # noqa: F401 - file_in_the_way: re-exported (it lived here)
from fer_lib.plots import plot_confusion, plot_reliability

N_BINS = 15


@dataclass
class EvalReport:
    """Everything one evaluation measured; :meth:`to_json` always names split, data, checkpoint and TTA.

    Attributes:
        split: the split's name (e.g. ``"PrivateTest"``). n: images evaluated.
        accuracy, macro_f1, ece (15 bins), nll (mean negative log-likelihood).
        per_class: ``{class: {precision, recall, f1, support}}``. confusion: counts ``[7][7]`` (true x predicted).
        reliability: :func:`fer_lib.metrics.reliability_bins`. tta: the TTA mode.
        data: ``{"synthetic", "form", "source", "path", "fingerprint"}``. checkpoint: path or ``None``.
        model_name: the architecture. notes: caveats (e.g. evaluating on the training split, or what the data
        loader noticed). skipped: ``[{"item", "reason"}]`` for every malformed data item left out while loading
        (``on_error="skip"``; items of any split, as the loader saw them).
        probs / labels: the raw predictions (kept in memory for plots; not written to JSON).
    """

    split: str
    n: int
    accuracy: float
    macro_f1: float
    ece: float
    nll: float
    per_class: dict
    confusion: list
    reliability: dict
    tta: str
    data: dict
    checkpoint: str | None
    model_name: str
    class_names: list = field(default_factory=lambda: list(EMOTIONS))
    notes: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    probs: np.ndarray | None = field(default=None, repr=False)
    labels: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("probs")
        d.pop("labels")
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` (folders created)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())
        return path

    def summary(self) -> str:
        kind = "SYNTHETIC faces (not FER2013)" if self.data.get("synthetic") else "FER2013"
        lines = [f"{self.model_name} on {kind} {self.split} ({self.n} images), TTA {self.tta}: "
                 f"accuracy {self.accuracy:.4f}  macro-F1 {self.macro_f1:.4f}  ECE {self.ece:.4f}  NLL {self.nll:.4f}"]
        lines += [f"  {k:9s} P {v['precision']:.3f}  R {v['recall']:.3f}  F1 {v['f1']:.3f}  n {v['support']}"
                  for k, v in self.per_class.items()]
        lines += [f"  note: {n}" for n in self.notes]
        if self.skipped:
            first = self.skipped[0]
            lines.append(f"  skipped: {len(self.skipped)} malformed data item(s) were left out while loading, e.g. "
                         f"{first['item']}: {first['reason']} (all listed under 'skipped' in the report JSON)")
        return "\n".join(lines)

    def plot_confusion(self, ax=None):
        return plot_confusion(self.confusion, self.class_names, title=f"{self.split} (row-normalised)", ax=ax)

    def plot_reliability(self, ax=None):
        return plot_reliability(self.reliability, self.ece, title=f"reliability, {self.split}", ax=ax)


def data_info(data, root=None) -> dict:
    """The report's ``data`` block for a :class:`fer_lib.data.FERData` (``None``: unknown)."""
    if data is None:
        return {"synthetic": None, "form": None, "source": None, "path": None, "fingerprint": None}
    return {"synthetic": bool(data.synthetic), "form": data.form, "source": data.source,
            "path": str(root) if root is not None else None, "fingerprint": data.fingerprint}


def evaluate_model(model: nn.Module, split, tta: str = "none", *, data=None, checkpoint=None, root=None,
                   batch_size: int = 256, device=None) -> EvalReport:
    """Evaluate ``model`` on a :class:`fer_lib.data.FERSplit` (anything with ``name``, ``images``, ``labels``).

    Args:
        model: the classifier (run in eval mode; its own mode is restored afterwards).
        split: the split; its ``name`` goes into the report.
        tta: ``"none" | "flip" | "tencrop"``.
        data: the ``FERData`` the split came from (names the source in the report; its skipped items are listed).
        checkpoint: the checkpoint path, for the report.
        root: the data path, for the report.

    Returns:
        An :class:`EvalReport`.
    """
    labels = split.labels.cpu() if isinstance(split.labels, torch.Tensor) else torch.as_tensor(split.labels)
    if len(labels) == 0:
        raise ValueError(f"split {split.name!r} is empty: nothing to evaluate")
    probs = predict_proba(model, split.images, tta, batch_size=batch_size, device=device)
    m = classification_metrics(labels, probs.argmax(1))
    nll = float(F.nll_loss(probs.clamp_min(1e-12).log(), labels.long()).item())
    notes = []
    if str(split.name).lower() in ("training", "train"):
        notes.append("evaluated on the TRAINING split: this measures fit, not generalisation")
    return EvalReport(
        split=str(split.name), n=len(labels), accuracy=m["accuracy"], macro_f1=m["macro_f1"],
        ece=expected_calibration_error(probs, labels, N_BINS), nll=nll, per_class=m["per_class"],
        confusion=m["confusion"], reliability=reliability_bins(probs, labels, N_BINS), tta=tta,
        data=data_info(data, root), checkpoint=str(checkpoint) if checkpoint else None,
        model_name=str(getattr(model, "model_name", type(model).__name__)), notes=notes,
        skipped=data.skipped_items() if hasattr(data, "skipped_items") else [], probs=probs.numpy(),
        labels=labels.numpy(),
    )


def save_figures(report: EvalReport, out_dir: str | Path, prefix: str = "") -> list[Path]:
    """Save the confusion matrix and reliability diagram as PNGs; returns their paths."""
    import matplotlib.pyplot as plt  # deferred: pyplot only to save figures

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, draw in (("confusion", report.plot_confusion), ("reliability", report.plot_reliability)):
        fig = draw()
        path = out_dir / f"{prefix}{name}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def run_evaluation(checkpoint=None, *, split: str = "PublicTest", tta: str = "none", data_root=None,
                   data: str = "fer2013", out=None, device="auto", batch_size: int = 256, use_ema: bool = True,
                   on_error: str = "raise", log=print) -> tuple[EvalReport, Path, list[Path]]:
    """What ``python -m fer_lib evaluate`` does: load a checkpoint (default: the bundled model), the data and
    the split by name, evaluate, and write ``report.json`` and the figures.

    Args:
        checkpoint: a ``best.pt`` / ``last.pt`` or ``.safetensors`` file, or a bundled name (``"ensemble"``, ...:
            :func:`fer_lib.inference.list_pretrained`); ``None``: :func:`fer_lib.pretrained`.
        split: any split name :func:`fer_lib.data.split_by_name` accepts (``PrivateTest`` of a full Kaggle folder).
        tta: ``"none"``, ``"flip"`` or ``"tencrop"``.
        data_root: FER2013 in any form :mod:`fer_lib.data` reads; ``None`` searches (``FER2013_DIR``, ...).
        data: ``"fer2013"`` or ``"synthetic"`` (for checkpoints trained on the synthetic faces).
        out: folder for the report (default: beside the checkpoint; ``runs/eval_<weights>/`` for bundled weights).
        device, batch_size, use_ema: where and how to run (``use_ema=False``: the raw weights).
        on_error: ``"raise"`` or ``"skip"`` malformed data items (see :func:`fer_lib.data.load_fer2013`); skipped
            items are listed in the report's ``skipped``.
        log: where the one-line model description goes.

    Returns:
        ``(report, out_dir, figure_paths)``.

    Raises:
        FERDataError: FER2013 not found, or a malformed file in it.
        CheckpointError: a checkpoint that is not one of fer_lib's.
        ValueError: a bad ``batch_size`` or ``on_error``, an ``out`` that is a file, or a report folder that
            cannot be written (all before any work).
        KeyError: a split name the data does not have.
    """
    if batch_size < 1:
        raise ValueError(f"--batch-size {batch_size}: must be a positive number of images")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"--on-error {on_error!r}: must be 'raise' or 'skip'")
    blocked = file_in_the_way(out) if out is not None else None
    if blocked is not None:
        raise ValueError(f"--out {out}: {blocked} is a file, not a folder; pass a folder for report.json and the "
                         "figures")
    # where the report will go (default: beside the checkpoint, or under runs/): writable, before any work
    given = Path(checkpoint) if isinstance(checkpoint, (str, Path)) and checkpoint else None
    target = Path(out) if out is not None else given.parent if given is not None and given.is_file() else Path("runs")
    locked = unwritable(target)
    if locked is not None:
        where = f"--out {out}" if out is not None else f"the default report folder (under {target})"
        raise ValueError(f"{where} cannot be written: {locked} is read-only for this user (permissions or a "
                         "read-only file system); pass --out with a folder you can write to")
    device = resolve_device(device)
    model = load_model(checkpoint, device=device, use_ema=use_ema)
    log(f"model: {describe_model(model)}")
    if data == "synthetic":
        root, loaded = None, load_synthetic()
    else:
        root = find_fer2013(data_root)
        if root is None or not root.exists():
            raise FERDataError(f"FER2013 not found at {root or 'the default places'}; pass --data-root PATH "
                               "(or set FER2013_DIR), or --data synthetic")
        loaded = load_fer2013(root, on_error=on_error)
    chosen = split_by_name(loaded, split)
    source = checkpoint or model.checkpoint_path
    report = evaluate_model(model, chosen, tta, data=loaded, checkpoint=source, root=root, batch_size=batch_size,
                            device=device)
    fp = getattr(model, "data_fingerprint", None)
    if fp and fp == loaded.fingerprint and chosen.name.lower() == "training":
        report.notes.append("this checkpoint was trained on this very split")
    # what the loader noticed (e.g. a Kaggle test/ folder whose PublicTest and PrivateTest files cannot be told apart)
    report.notes += [f"data: {n}" for n in getattr(loaded, "notes", [])]
    if out:
        out_dir = Path(out)
    elif checkpoint and not is_bundled(model):
        out_dir = Path(checkpoint).parent / f"eval_{chosen.name}_{tta}"
    else:  # the bundled weights live inside the installed package: never write there
        out_dir = Path("runs") / f"eval_{Path(source).stem}" / f"{chosen.name}_{tta}"
    report.save(out_dir / "report.json")
    return report, out_dir, save_figures(report, out_dir)
