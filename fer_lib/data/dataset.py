"""In-memory containers: :class:`FERSplit` (one split) and :class:`FERData` (a loaded dataset).

Images are stored once as ``uint8 [N, 48, 48]`` (35,887 FER2013 faces are 83 MB) and labels as ``int64 [N]``
in ``fer_lib.EMOTIONS`` order; turning them into model input is :func:`fer_lib.data.preprocess`'s job.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch

from fer_lib.paths import display_path

from .labels import EMOTIONS, NUM_CLASSES

__all__ = ["FERSplit", "FERData", "split_by_name", "content_fingerprint"]

# Accepted spellings for each split (lower case, without "_", "-" or spaces).
_SPLIT_ALIASES = {
    "Training": ("training", "train", "trn"),
    "PublicTest": ("publictest", "public", "val", "valid", "validation", "dev"),
    "PrivateTest": ("privatetest", "private", "test"),
    "Test": ("test", "testing"),
}


@dataclass
class FERSplit:
    """One split: ``images uint8 [N, 48, 48]``, ``labels int64 [N]`` and ``ids`` (file paths or CSV rows)."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    ids: list[str]

    def __post_init__(self):
        n = len(self.labels)
        if self.images.dtype != torch.uint8 or self.images.ndim != 3:
            raise ValueError(f"FERSplit {self.name!r}: images must be uint8 [N, H, W], got "
                             f"{self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.ndim != 1 or len(self.images) != n or len(self.ids) != n:
            raise ValueError(f"FERSplit {self.name!r}: need int64 labels [N] and N ids for N={len(self.images)} "
                             f"images, got labels {self.labels.dtype} {tuple(self.labels.shape)}, {len(self.ids)} ids")

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return f"FERSplit({self.name!r}, n={len(self)}, images={tuple(self.images.shape)})"

    def counts(self) -> list[int]:
        """Number of images per class, in label order (``EMOTIONS``)."""
        return torch.bincount(self.labels, minlength=NUM_CLASSES).tolist()

    def select(self, index: torch.Tensor, name: str | None = None) -> FERSplit:
        """The split restricted to ``index`` (a 1-D index tensor), in that order."""
        index = torch.as_tensor(index, dtype=torch.long)
        return FERSplit(name or self.name, self.images[index], self.labels[index],
                        [self.ids[i] for i in index.tolist()])

    def subset(self, n: int, seed: int = 0) -> FERSplit:
        """A stratified random subset of ``n`` images (class proportions kept, original order kept).

        Quotas are ``n * count_c / N`` rounded by largest remainder, so they sum to exactly ``n``; when
        ``n >= 7`` every class present keeps at least one image. ``n >= len(self)`` returns ``self``.
        """
        if n < 0:
            raise ValueError(f"subset size must be >= 0, got {n}")
        if n >= len(self):
            return self
        counts = torch.tensor(self.counts(), dtype=torch.float64)
        exact = counts * n / len(self)
        quota = exact.floor().long()
        for c in torch.argsort(exact - quota, descending=True)[: n - int(quota.sum())]:
            quota[c] += 1
        if n >= NUM_CLASSES:  # keep rare classes (disgust) represented
            for c in range(NUM_CLASSES):
                if counts[c] > 0 and quota[c] == 0:
                    quota[c] += 1
                    quota[int(torch.argmax(quota))] -= 1
        g = torch.Generator().manual_seed(seed)
        picked = []
        for c in range(NUM_CLASSES):
            idx = (self.labels == c).nonzero().flatten()
            picked.append(idx[torch.randperm(len(idx), generator=g)[: int(quota[c])]])
        return self.select(torch.cat(picked).sort().values)


def content_fingerprint(splits: dict[str, FERSplit]) -> str:
    """SHA-256 (16 hex digits) of split names, pixels and labels: identifies the data a model was trained on."""
    h = hashlib.sha256()
    for name in sorted(splits):
        sp = splits[name]
        h.update(f"{name}:{len(sp)};".encode())
        h.update(sp.images.contiguous().numpy().tobytes())
        h.update(sp.labels.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class FERData:
    """A loaded dataset: its splits plus where it came from and everything that happened while loading.

    Attributes:
        splits: ``{"Training": FERSplit, "PublicTest": ..., "PrivateTest": ...}`` (those present; a Kaggle
            ``test/`` folder without file-name prefixes is ``"Test"``).
        form: ``"csv"``, ``"icml_csv"``, ``"folders"`` or ``"synthetic"``.
        synthetic: True for the procedurally drawn stand-in, never FER2013.
        source: the path loaded (or a description of the synthetic data).
        fingerprint: content hash of the decoded pixels and labels (stored in checkpoints).
        skipped: ``"<file or row>: <reason>"`` for every item skipped with ``on_error="skip"``.
        notes: anything the user should know (e.g. resized images, ignored files, a quick-mode subset).
        from_cache: True when the tensors came from the decode cache.
    """

    splits: dict[str, FERSplit]
    form: str
    synthetic: bool
    source: str
    fingerprint: str = ""
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    from_cache: bool = False

    def __post_init__(self):
        if not self.fingerprint:
            self.fingerprint = content_fingerprint(self.splits)

    def __getitem__(self, name: str) -> FERSplit:
        return split_by_name(self, name)

    def __contains__(self, name: str) -> bool:
        try:
            split_by_name(self, name)
        except KeyError:
            return False
        return True

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.splits.items())
        return f"FERData(form={self.form!r}, synthetic={self.synthetic}, {sizes}, source={self.source!r})"

    def skipped_items(self) -> list[dict[str, str]]:
        """:attr:`skipped` as JSON-ready records ``[{"item": file or CSV row, "reason": why it was skipped}]``."""
        return [{"item": item, "reason": reason} for item, _, reason in (s.partition(": ") for s in self.skipped)]

    def summary(self) -> str:
        """A human-readable multi-line description: source, form, per-split per-class counts, notes, skips.

        The source path is shown relative to the working folder (``fer_lib.paths.display_path``), so notebook
        outputs carry no absolute path of the machine they ran on.
        """
        kind = "SYNTHETIC cartoon faces (not FER2013)" if self.synthetic else "FER2013"
        lines = [f"{kind} | form={self.form} | fingerprint={self.fingerprint}"
                 f"{' | from cache' if self.from_cache else ''}", f"source: {display_path(self.source)}"]
        w = max(len(e) for e in EMOTIONS)
        lines.append(f"{'split':<12}{'total':>7}  " + " ".join(f"{e:>{w}}" for e in EMOTIONS))
        for name, sp in self.splits.items():
            lines.append(f"{name:<12}{len(sp):>7}  " + " ".join(f"{c:>{w}}" for c in sp.counts()))
        lines += [f"note: {n}" for n in self.notes]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} item(s), e.g.: " + "; ".join(self.skipped[:3]))
        return "\n".join(lines)


def split_by_name(data: FERData, name: str) -> FERSplit:
    """Find a split by name, any case, or by alias.

    ``train``/``training`` -> Training; ``val``/``public``/``publictest`` -> PublicTest;
    ``test``/``private``/``privatetest`` -> PrivateTest (or the un-prefixed ``"Test"`` split when that is
    what exists).

    Raises:
        KeyError: naming the requested split and the ones that exist.
    """
    key = str(name).lower().replace("_", "").replace("-", "").replace(" ", "")
    for split in data.splits:
        if split.lower() == key:
            return data.splits[split]
    for canonical, aliases in _SPLIT_ALIASES.items():
        if key in aliases and canonical in data.splits:
            return data.splits[canonical]
    raise KeyError(f"no split {name!r} in this data (form={data.form}); splits present: "
                   f"{', '.join(data.splits) or 'none'}")
