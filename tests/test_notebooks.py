"""Static checks on the course notebooks (fast: they are read, not executed; nbval executes them in `make test`).

Each check states a promise the notebooks make to students: every notebook opens in Colab from the one repository
URL, installs the package the same way, states its learning goals, ends with a summary and exercises, carries no
Colab or widget state, and keeps stored outputs only together with a note saying which run produced them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
REPO_URL = "https://github.com/fer-course/fer-course"
COLAB_URL = "https://colab.research.google.com/github/fer-course/fer-course/blob/main/notebooks/{name}.ipynb"
EXPECTED = [
    "01_data_exploration", "02_cbam", "03_region_attention", "04_anchor_attention", "05_transformer_refinement",
    "06_gem_pooling_and_fusion", "07_full_model", "08_training_on_gpu", "09_evaluation",
    "10_gradcam_and_attention", "11_your_own_photo",
]
MAX_BYTES = 1_200_000
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _markdown(nb: dict) -> str:
    return "\n".join(_source(c) for c in nb["cells"] if c["cell_type"] == "markdown")


def test_the_course_has_all_eleven_notebooks():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED, f"notebooks/ holds {[p.stem for p in NOTEBOOKS]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_colab_badge_first_and_points_at_this_notebook(path):
    first = _load(path)["cells"][0]
    assert first["cell_type"] == "markdown", f"{path.name}: the first cell must be the Colab badge (markdown)"
    assert COLAB_URL.format(name=path.stem) in _source(first), f"{path.name}: badge URL must be for {path.stem}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_code_cell_installs_on_colab_and_calls_setup(path):
    code = [_source(c) for c in _load(path)["cells"] if c["cell_type"] == "code"]
    first = code[0]
    assert '"google.colab" in sys.modules' in first, f"{path.name}: first code cell must detect Colab"
    assert f"fer_lib[kaggle] @ git+{REPO_URL}" in first, f"{path.name}: install from {REPO_URL}"
    assert not re.search(r"pip install[^\n]*(-e|--editable)\b", first), f"{path.name}: no editable install"
    assert "from fer_lib.colab import setup" in first and "session = setup(" in first, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_goals_summary_exercises_and_a_paper_or_maths(path):
    text = _markdown(_load(path))
    for heading in ("**Learning goals.**", "## Summary", "## Exercises"):
        assert heading in text, f"{path.name}: missing {heading!r}"
    assert "arxiv.org/abs/" in text or "hackerfactor" in text, f"{path.name}: cite the paper(s) with a link"
    assert text.index("## Summary") < text.index("## Exercises"), f"{path.name}: summary comes before exercises"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_only_training_asks_for_a_gpu_keeps_no_other_state_and_small(path):
    nb = _load(path)
    # Colab opens the training notebook (08) on a GPU runtime and every other one on a CPU; nothing else of
    # Colab's state is kept
    if path.stem.startswith("08_"):
        assert nb["metadata"].get("accelerator") == "GPU", f"{path.name}: metadata must ask Colab for a GPU"
        assert nb["metadata"].get("colab") == {"gpuType": "T4"}, f"{path.name}: colab metadata is only gpuType"
    else:
        assert "accelerator" not in nb["metadata"] and "colab" not in nb["metadata"], \
            f"{path.name}: only notebook 08 needs a GPU runtime"
    assert "widgets" not in nb["metadata"], f"{path.name}: strip widget state"
    for i, cell in enumerate(nb["cells"]):
        assert "colab" not in cell.get("metadata", {}), f"{path.name} cell {i}: strip Colab metadata"
        for out in cell.get("outputs", []):
            assert "application/vnd.jupyter.widget-view+json" not in out.get("data", {}), \
                f"{path.name} cell {i}: widget views without stored state render as errors; drop them"
    assert path.stat().st_size < MAX_BYTES, f"{path.name}: {path.stat().st_size} bytes; keep under ~1 MB"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_outputs_say_where_they_came_from(path):
    nb = _load(path)
    has_outputs = any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")
    if has_outputs:
        head = "\n".join(_source(c) for c in nb["cells"][:4] if c["cell_type"] == "markdown")
        assert "**Stored outputs.**" in head and "FER_QUICK" in head, \
            f"{path.name}: outputs are stored, so a note near the top must say which run (quick mode or not) made them"
        text = json.dumps([c.get("outputs", []) for c in nb["cells"]] + [_markdown(nb)])
        machine = re.findall(r"(?<![\w.~])/(?:work|home|root|tmp|Users|content)/[\w./-]*", text)
        assert not machine, f"{path.name}: stored outputs or markdown hold absolute paths of a machine: {machine[:3]}"
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code" and _source(cell).startswith("# NBVAL_CHECK_OUTPUT"):
            assert cell.get("outputs"), f"{path.name} cell {i}: NBVAL_CHECK_OUTPUT needs a stored output"
            text = json.dumps(cell["outputs"])
            assert not re.search(r"0x[0-9a-f]{6,}|\d+\.\d+ ?s\b", text), \
                f"{path.name} cell {i}: checked output must not hold addresses or timings"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_checkpoints_load_safely_and_the_80_percent_claim_is_not_a_result(path):
    nb = _load(path)
    for i, cell in enumerate(nb["cells"]):
        src = _source(cell)
        if cell["cell_type"] == "code":
            for call in re.findall(r"torch\.load\([^)]*\)", src):
                assert "weights_only=True" in call, f"{path.name} cell {i}: {call} must pass weights_only=True"
        elif "80%" in src:
            assert "claimed" in src and "60-73%" in src, \
                f"{path.name} cell {i}: the 80% figure may only appear as the design's claim, next to reproductions"
