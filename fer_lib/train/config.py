"""The training recipe as one dataclass, and the named presets.

A :class:`TrainConfig` holds *everything* that decides what a run computes (model, data, optimiser, schedule,
regularisation, precision) plus a few runtime switches (device, output folder, time budget, logging) that do not
change the maths. It is stored inside every checkpoint (:meth:`TrainConfig.to_dict`), so a checkpoint documents
its own recipe, and ``resume`` refuses to continue a run whose recipe fields differ.

Presets (:data:`PRESETS`, used by ``python -m fer_lib train --preset NAME``):

* ``demo``: 2 epochs on a 3,000 / 1,000 image subset of FER2013 (or synthetic faces when FER2013 is absent);
  meant to finish within 2 minutes on 2 CPU cores. Shows the whole pipeline, not a good model. Its run ``demo``
  is replaced by the next demo; a run given another ``--name`` is not (``--overwrite`` to replace it).
* ``cpu``: the full FER2013 training split on 2 CPU cores in at most 60 minutes: ``baseline_resnet18`` with the
  stock (stride-4) stem on faces resized to 64 px, bf16 autocast and channels_last (on CPUs with native bf16; elsewhere
  it trains in fp32, with one warning), batch 256, time budget 58 minutes with ``fit_budget`` (the cosine schedule ends with the
  budget, whatever the machine's speed) down to 0.3 x the peak learning rate. The bundled model
  (``fer_lib.pretrained()``) is this recipe with ``--max-minutes 120``. How each choice was measured:
  ``docs/results/training.md``.
* ``gpu``: the full recipe for one GPU (Colab T4/A100): medium model, mixed precision, batch 256, mixup/cutmix.
* ``ablation``: the recipe of the measured 15-minute equal-budget ablation (``sota_resemote_small_v1``, fp32 on a CPU,
  batch 128, AdamW lr 2e-3, cosine to 0.01 x lr), the starting point of every run of ``python -m fer_lib ablation``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

from fer_lib.data.augment import AugmentConfig

#: Fields that do not change what is computed; ``resume`` ignores them when it compares recipes.
RUNTIME_FIELDS = frozenset(
    {"name", "out_dir", "device", "max_minutes", "log_every", "num_threads", "resume", "compile", "data_root",
     "overwrite", "on_error"}
)

#: The most epochs a run may plan (a bound on typos such as ``--epochs 10000000000``; FER2013 runs take 30-80).
MAX_EPOCHS = 100_000
#: The seeds torch accepts for every generator (``torch.manual_seed``): 0 to 2**63 - 1.
MAX_SEED = 2**63 - 1
#: Float fields; each must be a finite number (``nan`` and ``inf`` pass ``> 0`` tests but mean nothing).
FLOAT_FIELDS = ("lr", "weight_decay", "momentum", "warmup_epochs", "min_lr_ratio", "label_smoothing", "aux_weight",
                "mixup_alpha", "cutmix_alpha", "mix_prob", "ema_decay", "grad_clip", "class_balance_power",
                "max_minutes", "kd_weight", "kd_temperature")


def run_name_problem(name) -> str | None:
    """Why ``name`` cannot be a run folder's name (``None``: it can): a run name is one plain folder name, so
    ``out_dir/name`` stays inside ``out_dir`` (no ``/`` or ``\\``, not ``.`` or ``..``, not absolute, not empty)."""
    if not isinstance(name, str) or not name.strip():
        return "is empty"
    if name in (".", ".."):
        return "names the current or the parent folder, not a folder of its own"
    if "/" in name or "\\" in name:
        return "holds a path separator ('/' or '\\')"
    if "\0" in name:
        return "holds a NUL character"
    if os.name == "nt" and ":" in name:  # C:run is a path on another drive there
        return "holds a drive letter (':')"
    if name != name.strip():
        return "starts or ends with a space"
    return None


@dataclass
class TrainConfig:
    """A complete training recipe.

    Attributes:
        name: run name, one plain folder name (no ``/``, ``..`` or absolute path): outputs go to ``out_dir/name/``
            (``best.pt``, ``last.pt``, ``history.json``), inside ``out_dir``.
        model: a name from ``fer_lib.models.list_models()``.
        model_overrides: keyword overrides passed to ``create_model`` (e.g. ``{"drop_path_rate": 0.1}``).
        in_chans: 1 (grayscale, default) or 3 (gray repeated), see ``docs/DESIGN.md``.
        data: ``"auto"`` (FER2013 when found, else synthetic faces), ``"fer2013"`` (error when absent) or
            ``"synthetic"``.
        data_root: FER2013 location (any form ``fer_lib.data.load_fer2013`` reads); ``None`` searches.
        on_error: what a malformed data item (a bad CSV row, an unreadable or empty image) does: ``"raise"`` stops
            with an error naming the first ones, ``"skip"`` leaves them out. Skipped items are listed with their
            reason in ``FERData.skipped``; ``python -m fer_lib train`` prints how many and writes the list to
            ``skipped.json`` in the run folder. A runtime field: resuming compares the data fingerprint, which
            changes when different items are left out.
        train_split: the training split's name (aliases accepted by ``fer_lib.data.split_by_name``).
        val_split: the validation split's name, used for model selection (``PublicTest`` by default).
        subset_train: stratified subset of the training split, in images (``None``: the whole split).
        subset_val: stratified subset of the validation split, in images (``None``: the whole split).
        synthetic_train: synthetic training images, when synthetic data is used.
        synthetic_val: synthetic validation images, when synthetic data is used.
        epochs: planned epochs (1 to 100,000); the cosine schedule spans exactly these.
        batch_size: per-process batch size (DDP: per rank).
        eval_batch_size: batch size for validation.
        optimizer: ``"adamw"`` (Loshchilov & Hutter, https://arxiv.org/abs/1711.05101) or ``"sgd"``
            (momentum with Nesterov).
        lr: peak learning rate (after warmup).
        weight_decay: decoupled (AdamW) or L2 (SGD) weight decay; never applied to biases and normalisation
            weights.
        momentum: SGD momentum (AdamW's beta1 stays 0.9).
        warmup_epochs: linear warmup length in epochs (may be fractional); then cosine decay to
            ``lr * min_lr_ratio`` (SGDR, https://arxiv.org/abs/1608.03983), stepped every optimiser step.
        min_lr_ratio: where the cosine ends, as a fraction of ``lr`` (0.01: nearly 0; 1: a constant rate).
        label_smoothing: the label-smoothing epsilon of the cross-entropy (Szegedy et al. 2016,
            https://arxiv.org/abs/1512.00567); 0: off.
        aux_weight: weight of the mean auxiliary-head loss (``ModelOutput.aux_logits``); 0 switches it off.
        teacher: the knowledge-distillation teacher, anything ``fer_lib.inference.load_model`` reads: a bundled name
            (e.g. ``fer2013_resnet18``, ``ensemble``), a checkpoint (``best.pt``) or a ``.safetensors`` file; none:
            no teacher. Given exactly when ``kd_weight > 0``. It runs frozen, in eval mode and under ``no_grad``,
            on the very augmented (and mixed) batch the student gets (Beyer et al. 2022,
            https://arxiv.org/abs/2106.05237); the seconds its forward passes took are each history row's
            ``teacher_seconds``. Stored as given (a string): resume needs the same name or path.
        kd_weight: the distillation weight ``w`` in [0, 1] (Hinton et al. 2015, https://arxiv.org/abs/1503.02531):
            loss = (1 - w) * label loss + w * T^2 * KL(softmax(teacher / T) || softmax(student / T)), where the
            label loss is the cross-entropy plus the auxiliary term; 0: off (no teacher is loaded and training is
            unchanged). See ``fer_lib/train/distill.py``.
        kd_temperature: the distillation temperature ``T`` (> 0) that softens the teacher's and the student's
            probabilities alike (1: the plain probabilities; Hinton et al. use 2 to 20).
        augment: switch batched on-device augmentation (``fer_lib.data.Augment``) on/off.
        augment_overrides: fields of ``fer_lib.data.AugmentConfig`` to change.
        mixup_alpha: mixup's Beta(alpha, alpha) (https://arxiv.org/abs/1710.09412); 0: off.
        cutmix_alpha: CutMix's Beta(alpha, alpha) (https://arxiv.org/abs/1905.04899); 0: off.
        mix_prob: probability of mixing a batch (mixup or CutMix, whichever is on; both: half each).
        ema: keep an exponential moving average of the weights (Polyak averaging); validation and the saved
            "best" use the EMA weights when on.
        ema_decay: the EMA's decay per optimiser step.
        grad_clip: max global gradient norm (``None`` or 0: off).
        amp: ``"auto"`` (bf16 on CUDA when supported, else fp16 with a GradScaler; off on CPU), ``"bf16"``,
            ``"fp16"`` or ``"off"``.
        channels_last: NHWC memory format (faster convolutions on GPUs with tensor cores).
        compile: wrap the model in ``torch.compile``.
        class_balance: ``"none"``, ``"loss"`` (class-weighted cross-entropy) or ``"sampler"`` (each epoch
            resamples the training set with replacement); weights are ``(N / (K * count_k)) ** class_balance_power``.
        class_balance_power: the exponent of the class weights: 1 = full inverse frequency, 0.5 = its square
            root (milder), 0 = none.
        seed: seeds model initialisation, data order and augmentation (0 to 2**63 - 1); every epoch re-seeds from
            ``(seed, epoch, rank)`` so that resumed runs repeat an uninterrupted run exactly.
        deterministic: ``torch.use_deterministic_algorithms(True)`` and no cuDNN autotuning (slower).
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        max_minutes: wall-clock budget; training stops cleanly (with a message) before it would exceed it.
        fit_budget: with ``max_minutes``: after every epoch, re-plan the run's length from the measured epoch time
            so that the cosine schedule *ends* when the budget does (the last epoch may be partial); the learning
            rate continues smoothly through a re-plan. ``epochs`` then only sets the first epoch's schedule
            (seamless when ``warmup_epochs >= 1``). Used for equal-time comparisons (``python -m fer_lib ablation``):
            a slower model gets fewer steps, not a schedule cut off at a high learning rate. The plan is stored in
            the checkpoint; a resumed run keeps it and gets the budget the earlier processes left.
        out_dir: parent folder of the run folder.
        log_every: in ``progress=False`` mode, print a plain line every N steps (0: one line per epoch only).
        num_threads: ``torch.set_num_threads`` for CPU runs, at least 1 (``None``: leave as is).
        resume: a ``last.pt`` (or ``best.pt``) to continue from; the recipe and the data fingerprint must match.
        overwrite: allow a new run in a folder that holds checkpoints of an earlier run (they are replaced when
            this run's first epoch is written, not before); without it such a run is refused. The ``demo``
            preset sets it for its own run name only (``runs/demo`` is replaced by the next demo); a run given
            another ``name`` under it is refused unless ``overwrite`` is given too.
    """

    name: str = "run"
    model: str = "sota_resemote_small"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    in_chans: int = 1
    data: str = "auto"
    data_root: str | None = None
    on_error: str = "raise"
    train_split: str = "Training"
    val_split: str = "PublicTest"
    subset_train: int | None = None
    subset_val: int | None = None
    synthetic_train: int = 2000
    synthetic_val: int = 500
    epochs: int = 30
    batch_size: int = 128
    eval_batch_size: int = 512
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 0.05
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    label_smoothing: float = 0.1
    aux_weight: float = 0.3
    teacher: str | None = None
    kd_weight: float = 0.0
    kd_temperature: float = 1.0
    augment: bool = True
    augment_overrides: dict[str, Any] = field(default_factory=dict)
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 0.0
    ema: bool = True
    ema_decay: float = 0.999
    grad_clip: float | None = 5.0
    amp: str = "auto"
    channels_last: bool = True
    compile: bool = False
    class_balance: str = "none"
    class_balance_power: float = 0.5
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    max_minutes: float | None = None
    fit_budget: bool = False
    out_dir: str = "runs"
    log_every: int = 0
    num_threads: int | None = None
    resume: str | None = None
    overwrite: bool = False

    #: the values a string field accepts (also the CLI's ``choices``)
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "data": ("auto", "fer2013", "synthetic"),
        "optimizer": ("adamw", "sgd"),
        "amp": ("auto", "bf16", "fp16", "off"),
        "class_balance": ("none", "loss", "sampler"),
        "on_error": ("raise", "skip"),
    }

    def __post_init__(self) -> None:
        if self.grad_clip == 0:  # "0: off" from the command line is stored as None, the one spelling of "off"
            self.grad_clip = None
        if isinstance(self.teacher, os.PathLike):  # stored as a string (JSON, checkpoints, resume)
            self.teacher = os.fspath(self.teacher)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field and what it accepts."""
        problem = run_name_problem(self.name)
        if problem:
            raise ValueError(f"TrainConfig.name {self.name!r} {problem}: a run name is one plain folder name inside "
                             "out_dir (the run goes to OUT/NAME/); pass e.g. --name my_run, and --out for the "
                             "parent folder")
        for key, allowed in self.CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"TrainConfig.{key}={getattr(self, key)!r} is not one of {allowed}")
        for key in FLOAT_FIELDS:
            value = getattr(self, key)
            if value is None and key in ("grad_clip", "max_minutes"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                unset = " (or none to leave it unset)" if key in ("grad_clip", "max_minutes") else ""
                raise ValueError(f"TrainConfig.{key} must be a finite number{unset}, got {value!r}")
        positive = ("epochs", "batch_size", "eval_batch_size", "lr", "synthetic_train", "synthetic_val")
        for key in positive:
            if not getattr(self, key) > 0:
                raise ValueError(f"TrainConfig.{key} must be > 0, got {getattr(self, key)!r}")
        for key in ("subset_train", "subset_val"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise ValueError(f"TrainConfig.{key} must be a positive image count or None, got {value!r}")
        if self.in_chans not in (1, 3):
            raise ValueError(f"TrainConfig.in_chans must be 1 or 3, got {self.in_chans!r}")
        if self.augment_overrides:
            try:
                AugmentConfig.from_dict(self.augment_overrides)
            except (TypeError, ValueError) as e:
                raise ValueError(f"TrainConfig.augment_overrides: {e}") from None
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"TrainConfig.label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"TrainConfig.ema_decay must be in (0, 1), got {self.ema_decay!r}")
        if not 0.0 <= self.mix_prob <= 1.0:
            raise ValueError(f"TrainConfig.mix_prob must be in [0, 1], got {self.mix_prob!r}")
        if self.warmup_epochs < 0 or self.min_lr_ratio < 0 or self.aux_weight < 0:
            raise ValueError("TrainConfig.warmup_epochs, min_lr_ratio and aux_weight must be >= 0")
        if not 0.0 <= self.kd_weight <= 1.0:
            raise ValueError(f"TrainConfig.kd_weight must be in [0, 1] (0: no distillation), got {self.kd_weight!r}")
        if not self.kd_temperature > 0:
            raise ValueError(f"TrainConfig.kd_temperature must be > 0, got {self.kd_temperature!r}")
        if self.teacher is not None and (not isinstance(self.teacher, str) or not self.teacher.strip()):
            raise ValueError(f"TrainConfig.teacher must be a bundled model name or a file path, or None, got "
                             f"{self.teacher!r}")
        if self.kd_weight > 0 and self.teacher is None:
            raise ValueError(f"TrainConfig.kd_weight={self.kd_weight!r} needs a teacher: pass TrainConfig.teacher "
                             "(a bundled name such as fer2013_resnet18 or ensemble, or a best.pt / .safetensors "
                             "path), or set kd_weight to 0")
        if self.teacher is not None and self.kd_weight == 0:
            raise ValueError(f"TrainConfig.teacher={self.teacher!r} is given but TrainConfig.kd_weight is 0, so it "
                             "would be ignored: set kd_weight in (0, 1] to distil from it, or leave the teacher "
                             "unset (none)")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"TrainConfig.max_minutes must be > 0 or None, got {self.max_minutes!r}")
        if self.fit_budget and self.max_minutes is None:
            raise ValueError("TrainConfig.fit_budget needs max_minutes (the budget to fit the schedule to)")
        if self.epochs > MAX_EPOCHS:
            raise ValueError(f"TrainConfig.epochs must be at most {MAX_EPOCHS:,}, got {self.epochs!r}; with "
                             "max_minutes and fit_budget the budget, not the epochs, ends the run")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"TrainConfig.seed must be an integer from 0 to 2**63 - 1 ({MAX_SEED}), got "
                             f"{self.seed!r}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"TrainConfig.num_threads must be at least 1, got {self.num_threads!r}; leave it "
                             "unset (none) for torch's default")
        if self.log_every < 0:
            raise ValueError(f"TrainConfig.log_every must be >= 0 (0: one line per epoch), got {self.log_every!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-python dict (JSON- and ``weights_only``-safe)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Rebuild from :meth:`to_dict`; unknown keys raise ``ValueError`` naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; known fields: {sorted(known)}")
        return cls(**d)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (validated)."""
        return dataclasses.replace(self, **changes)

    def recipe_diff(self, other: TrainConfig | dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        """Fields (outside :data:`RUNTIME_FIELDS`) where ``self`` and ``other`` differ: ``{field: (self, other)}``."""
        mine, theirs = self.to_dict(), other if isinstance(other, dict) else other.to_dict()
        # a field missing from a dict (a checkpoint written before the field existed) counts as its default, the
        # value that keeps what such a run computed (e.g. kd_weight 0: no distillation)
        theirs = {**_DEFAULTS, **theirs}
        return {
            k: (mine[k], theirs.get(k))
            for k in mine
            if k not in RUNTIME_FIELDS and mine[k] != theirs.get(k)
        }


#: Every field's default, as :meth:`TrainConfig.to_dict` writes it (what :meth:`TrainConfig.recipe_diff` assumes
#: for a field a stored recipe lacks).
_DEFAULTS: dict[str, Any] = json.loads(json.dumps({
    f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
    for f in dataclasses.fields(TrainConfig)}))

#: Named recipes; every value is a dict of :class:`TrainConfig` fields (overridable from the CLI).
PRESETS: dict[str, dict[str, Any]] = {
    "demo": dict(
        name="demo",
        model="sota_resemote_small",  # the course's model (stock stride-4 stem, faces resized to 64 px inside)
        data="auto",
        subset_train=3000,
        subset_val=1000,
        synthetic_train=3000,
        synthetic_val=1000,
        epochs=2,
        batch_size=64,
        lr=2e-3,
        warmup_epochs=0.3,
        ema=True,
        ema_decay=0.99,
        num_threads=1,  # on a 2-core machine shared with other jobs, 2 threads spin-wait (docs/results/training.md)
        overwrite=True,  # a 2-minute pipeline demo: `make demo` again replaces the previous demo run (only the run
        # named "demo": preset_config turns it off for any other --name, unless overwrite is asked for)
    ),
    "cpu": dict(
        name="cpu",
        model="baseline_resnet18",  # the plain backbone: on a CPU budget no attention module has paid for its cost
        model_overrides={"stem": "default", "input_size": 64},  # stock stride-4 stem on faces resized to 64 px
        data="fer2013",
        epochs=30,  # only epoch 1's plan: fit_budget re-plans the run after each epoch to end with the budget
        batch_size=256,  # 2 CPU threads keep busy on larger convolutions
        lr=3e-3,  # ~ sqrt-scaled from 2e-3 at batch 128
        weight_decay=0.05,
        warmup_epochs=1.0,
        min_lr_ratio=0.3,  # the cosine ends at 0.3 x lr, not ~0: with EMA, an annealed tail only overfit
        label_smoothing=0.1,
        ema=True,
        ema_decay=0.999,
        max_minutes=58.0,
        fit_budget=True,
        amp="bf16",  # fast only with native bf16 (AVX512-BF16 or AMX); elsewhere training falls back to fp32, warned
        channels_last=True,
    ),
    "ablation": dict(
        name="ablation",
        # the recipe of the published 15-minute equal-budget ablation (docs/results/training.md), pinned so that
        # `python -m fer_lib ablation` reproduces that table whatever the cpu preset becomes; the driver sets the
        # model, its switches, stem and input size (default 48 px) and the budget of each variant
        model="sota_resemote_small_v1",
        model_overrides={"stem": "default"},
        data="fer2013",
        epochs=20,  # only the first plan: fit_budget re-plans each run to end with its budget
        batch_size=128,
        lr=2e-3,
        weight_decay=0.05,
        warmup_epochs=1.0,
        min_lr_ratio=0.01,
        label_smoothing=0.1,
        ema=True,
        ema_decay=0.999,
        max_minutes=15.0,
        fit_budget=True,
        amp="auto",  # fp32 on a CPU (as measured), bf16/fp16 on CUDA
    ),
    "gpu": dict(
        name="gpu",
        model="sota_resemote_medium",
        data="fer2013",
        epochs=80,
        batch_size=256,
        lr=2e-3,
        weight_decay=0.05,
        warmup_epochs=3.0,
        label_smoothing=0.1,
        mixup_alpha=0.2,
        cutmix_alpha=1.0,
        mix_prob=0.5,
        ema=True,
        ema_decay=0.9998,
        amp="auto",  # bf16 where the GPU has it, else fp16 with a GradScaler (a T4), one warning line
        channels_last=True,
        # On an A100/H100-class GPU a 48 px ResNet step is paced by Python, not by the GPU. Two flags use it
        # better (neither measured here yet; `scripts/gpu_check.sh --batch-size 1024 --lr 8e-3 --compile-main`
        # measures both): `--compile` (torch.compile, a one-off compile at the start) and a larger batch with
        # the learning rate scaled with it: `--batch-size 1024 --lr 8e-3` (4x batch, linear 4x lr, with the 3
        # warmup epochs); sqrt scaling, `--lr 4e-3`, is the safer start if early epochs diverge.
        # no class balancing (class_balance="none"), as in every recipe this project measured: its effect on the
        # rare "disgust" class has not been measured (notebook 08, exercise 3, measures it)
    ),
}
# One free Colab session on its T4: the `gpu` recipe above within a 60-minute training budget. fit_budget re-plans the
# cosine after every epoch from the measured epoch times, so the run ends within max_minutes on any GPU (a faster one
# trains more epochs in them, a slower one fewer); a run resumed from its last.pt after a disconnect gets what is left
# of the budget. Its time on a T4, about 60 minutes of training plus a few of setup (install, FER2013 download, Drive
# mount), is ESTIMATED, NOT MEASURED: no run on a T4 has been timed yet, nor how many epochs fit. Notebook 08 times
# 30 real steps on the device (fer_lib.train.estimate_minutes) and prints the estimate before the run starts.
PRESETS["colab"] = dict(PRESETS["gpu"], name="colab", max_minutes=60.0, fit_budget=True)


def preset_config(preset: str, /, **overrides: Any) -> TrainConfig:
    """The :class:`TrainConfig` of ``preset`` with ``overrides`` (any fields, e.g. ``name=``) applied.

    A preset's ``overwrite=True`` (the ``demo`` preset's) covers only that preset's own run name: with another
    ``name`` and no ``overwrite`` override, ``overwrite`` is ``False`` (an earlier run of that name is refused,
    never replaced).

    Raises:
        ValueError: unknown preset (the message lists the known ones) or a bad override.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    values = {**PRESETS[preset], **overrides}
    if "overwrite" not in overrides and values.get("name") != PRESETS[preset].get("name", "run"):
        # a preset's overwrite=True (demo) lets the next run replace that preset's own run folder only: a run given
        # another name is refused when its folder holds an earlier run, as without a preset
        values["overwrite"] = False
    return TrainConfig(**values)
