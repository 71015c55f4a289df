"""Statements of the notebooks that a close reading once found false (issue 35), pinned where reading the files can
pin them. Statements about computed results are checked by ``assert`` cells inside the notebooks, which nbval runs
in ``make test`` (quick mode) like every other cell.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))


def _cells(path: Path, kind: str) -> list[str]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == kind]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_sections_are_numbered_once_each_in_order(path):
    numbers = [int(m.group(1)) for text in _cells(path, "markdown")
               for m in re.finditer(r"^## (\d+)\. ", text, flags=re.MULTILINE)]
    assert numbers == list(range(1, len(numbers) + 1)), f"{path.name}: sections numbered {numbers}"


def test_notebook_08_prints_its_provenance_instead_of_typing_it():
    path = NB_DIR / "08_training_on_gpu.ipynb"
    note = next(t for t in _cells(path, "markdown") if "**Stored outputs.**" in t)
    assert not re.search(r"`[0-9a-f]{7,40}`|\b20\d\d-\d\d-\d\d\b", note), \
        "the note names a commit or a date: the run that made the outputs prints those (git rev-parse, date)"
    assert any("rev-parse" in t and "torch.__version__" in t for t in _cells(path, "code"))


def test_notebook_08_counts_steps_per_epoch_as_train_does():
    code = "\n".join(_cells(NB_DIR / "08_training_on_gpu.ipynb", "code"))
    assert "steps_per_epoch(" in code, "plan the schedule with fer_lib.train.steps_per_epoch, train()'s own count"
    assert not re.search(r"//\s*cfg\.batch_size\s*\+\s*1", code), "an epoch of train() drops its incomplete batch"
