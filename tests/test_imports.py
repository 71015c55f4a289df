"""Who may import whom: the layering rules of docs/DESIGN.md, checked on the source (nothing is imported here)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "fer_lib"


def _is_main_guard(node: ast.AST) -> bool:
    """``if __name__ == "__main__":`` (a module's ``python -m`` entry, which may hand over to the CLI)."""
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


def _nodes(path: Path):
    """Every node of a file except those under its ``if __name__ == "__main__":`` block."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    tree.body = [n for n in tree.body if not _is_main_guard(n)]
    return ast.walk(tree)


def _imports(path: Path) -> set[str]:
    """Every ``fer_lib...`` module a file imports (top level or inside functions), relative imports resolved;
    the ``python -m`` entry block is not an import of the library."""
    package = ".".join(path.relative_to(PKG.parent).with_suffix("").parts[:-1])
    found = set()
    for node in _nodes(path):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                found.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                found.add(node.module)
                # `from fer_lib import train` imports the module fer_lib.train
                found |= {f"{node.module}.{a.name}" for a in node.names if node.module.startswith("fer_lib")}
    return {m for m in found if m == "fer_lib" or m.startswith("fer_lib.")}


def _files(sub: str) -> list[Path]:
    return sorted((PKG / sub).glob("*.py")) if (PKG / sub).is_dir() else [PKG / sub]


def test_layers_import_only_torch_and_timm():
    """The attention layers stand alone: no other fer_lib module, nothing beyond torch and timm (and stdlib)."""
    import sys

    allowed_roots = {"torch", "timm", "__future__"} | set(sys.stdlib_module_names)
    offenders = []
    for path in _files("layers"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            offenders += [f"{path.name} imports {n}" for n in names
                          if n.split(".")[0] not in allowed_roots and not n.startswith("fer_lib.layers")]
    assert not offenders, offenders


RULES = [
    # (files, forbidden module prefixes, why)
    ("inference", ("fer_lib.train", "fer_lib.cli", "fer_lib.widget", "fer_lib.explain"),
     "inference is what evaluation, explanation, photos and export stand on; it never needs the trainer"),
    ("data", ("fer_lib.models", "fer_lib.train", "fer_lib.inference", "fer_lib.cli"), "data imports no model code"),
    ("models", ("fer_lib.train", "fer_lib.cli", "fer_lib.inference", "fer_lib.widget"),
     "models import neither training nor the CLI"),
    ("explain", ("fer_lib.train", "fer_lib.cli", "fer_lib.widget"), "explanation needs a model, not a trainer"),
    ("detect.py", ("fer_lib.train", "fer_lib.models", "fer_lib.cli"), "face detection knows no model"),
    ("faces.py", ("fer_lib.train", "fer_lib.cli", "fer_lib.widget"), "photo inference never imports the trainer"),
    ("evaluate.py", ("fer_lib.train", "fer_lib.widget"), "evaluation loads models through fer_lib.inference"),
    ("export.py", ("fer_lib.train", "fer_lib.widget"), "export loads models through fer_lib.inference"),
    ("widget.py", ("fer_lib.train", "fer_lib.cli"), "the widget loads models through fer_lib.inference"),
]


@pytest.mark.parametrize("sub, forbidden, why", RULES, ids=[r[0] for r in RULES])
def test_layering(sub, forbidden, why):
    offenders = {f"{p.relative_to(PKG.parent)} imports {m}" for p in _files(sub) for m in _imports(p)
                 if any(m == f or m.startswith(f + ".") for f in forbidden)}
    assert not offenders, f"{why}: {sorted(offenders)}"


def _library_files() -> list[Path]:
    """Every module outside the CLI package (``fer_lib/cli/``) and ``fer_lib/__main__.py``."""
    return [p for p in PKG.rglob("*.py") if "cli" not in p.relative_to(PKG).parts[:-1] and p.name != "__main__.py"]


def test_no_library_module_imports_the_widget_or_the_cli():
    offenders = {f"{p.relative_to(PKG)} imports {m}" for p in _library_files() if p.name != "widget.py"
                 for m in _imports(p) if m == "fer_lib.widget" or m == "fer_lib.cli" or m.startswith("fer_lib.cli.")}
    assert not offenders, sorted(offenders)


def test_argument_parsing_lives_only_in_the_cli_package():
    """Library modules take arguments as Python values; ``argparse`` appears only in ``fer_lib/cli/``."""
    offenders = sorted(str(p.relative_to(PKG)) for p in _library_files()
                       if any(isinstance(n, ast.Import) and any(a.name == "argparse" for a in n.names)
                              or isinstance(n, ast.ImportFrom) and n.module == "argparse" for n in _nodes(p)))
    assert not offenders, offenders


def test_nothing_outside_training_imports_the_trainer():
    """Evaluation, explanation, photos, export, the widget, benchmarks and the ablation report load models through
    fer_lib.inference; only the trainer's own package and the CLI's train/demo commands import fer_lib.train."""
    offenders = sorted(f"{p.relative_to(PKG)} imports {m}" for p in _library_files()
                       if "train" not in p.relative_to(PKG).parts[:-1]
                       for m in _imports(p) if m == "fer_lib.train" or m.startswith("fer_lib.train."))
    assert not offenders, offenders


def _calls_a_model(node: ast.AST) -> bool:
    """A call of ``model(...)``, ``self.model(...)`` or ``net(...)`` somewhere under ``node``."""
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            f = n.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            if name in ("model", "net"):
                return True
    return False


def test_one_batched_inference_loop():
    """Batching a model over many images happens in one place, ``fer_lib.inference.proba.batched_logits``:
    no other library module loops ``for ... in range(start, stop, batch)`` around a call of the model (Grad-CAM's
    batches call pytorch-grad-cam, which runs the model with gradients; the benchmarks time single batches)."""
    offenders = []
    for p in _library_files():
        for n in _nodes(p):
            if (isinstance(n, ast.For) and isinstance(n.iter, ast.Call) and isinstance(n.iter.func, ast.Name)
                    and n.iter.func.id == "range" and len(n.iter.args) == 3
                    and any(_calls_a_model(b) for b in n.body)):
                offenders.append(f"{p.relative_to(PKG)}:{n.lineno}")
    assert offenders == ["inference/proba.py:" + str(_batched_loop_line())], offenders


def _batched_loop_line() -> int:
    tree = ast.parse((PKG / "inference" / "proba.py").read_text(encoding="utf-8"))
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "batched_logits")
    return next(n.lineno for n in ast.walk(fn) if isinstance(n, ast.For))
