"""Who may import whom: the layer table of docs/DESIGN.md and the import rules, checked on the source.

Nothing of fer_lib is imported here: every check reads the files with ``ast``. The layer table (which package
may import which, on which floor) is read from docs/DESIGN.md itself, so the picture there is the rule here.
"""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "fer_lib"
DESIGN = PKG.parent / "docs" / "DESIGN.md"

#: The only function-local ``fer_lib`` imports outside ``fer_lib/cli/``: (file under fer_lib/, module) -> why.
#: docs/DESIGN.md names the same two.
LOCAL_IMPORT_EXCEPTIONS = {
    ("__init__.py", "fer_lib.inference"): "`import fer_lib` stays light: fer_lib.pretrained / load_model on first use",
    ("train/__init__.py", "fer_lib.plots"): "fer_lib.train.plot_history on first use: training needs no matplotlib",
}


# ------------------------------------------------------------------------------------------ reading the source
def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


FILES = sorted(PKG.rglob("*.py"))
MODULES = {_module_name(p): p for p in FILES}


def _rel(path: Path) -> str:
    return path.relative_to(PKG).as_posix()


def _room(module: str) -> str:
    """The package a module belongs to: ``fer_lib.train.engine`` -> ``train``, ``fer_lib.bench`` -> ``bench``,
    ``fer_lib`` itself -> ``fer_lib``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "fer_lib"


def _in_cli(path: Path) -> bool:
    return _rel(path).startswith("cli/")


@cache
def _imports(path: Path) -> tuple[tuple[str, int, bool], ...]:
    """``(module, line, inside a function)`` for every ``fer_lib`` import of a file, relative imports resolved;
    ``from pkg import name`` is the submodule ``pkg.name`` when there is one, else ``pkg`` itself."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, local) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = package.rsplit(".", child.level - 1)[0] + (f".{child.module}" if child.module else "")
                found.extend((f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base, child.lineno, local)
                             for a in child.names)
            visit(child, local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return tuple(i for i in found if i[0] == "fer_lib" or i[0].startswith("fer_lib."))


def _parents(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


# ------------------------------------------------------------------------------- the layer table of DESIGN.md
@cache
def _layer_table() -> dict[str, tuple[int, frozenset[str] | None]]:
    """docs/DESIGN.md's layer table: package -> (floor, the packages it may import; ``None`` for ``*``: any
    package on a lower floor). The table is the fenced block whose first line starts with ``floor``; a row is
    ``floor package allowed...`` (``-``: none), text after ``#`` is a comment."""
    lines = DESIGN.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("floor ") and lines[i - 1].startswith("```"))
    table = {}
    for line in lines[start + 1:]:
        if line.startswith("```"):
            break
        row = line.split("#", 1)[0].split()
        if row:
            floor, package, *allowed = row
            assert package not in table, f"docs/DESIGN.md: {package} has two rows"
            table[package] = (int(floor), None if allowed == ["*"] else frozenset(allowed) - {"-"})
    return table


def test_the_layer_table_names_every_package_and_runs_only_downward():
    table = _layer_table()
    rooms = {_room(m) for m in MODULES}
    assert rooms == set(table), (f"packages without a row: {sorted(rooms - set(table))}; "
                                 f"rows without a package: {sorted(set(table) - rooms)}")
    bad = [f"{p} (floor {f}) may import {q} (floor {table[q][0] if q in table else '?'})"
           for p, (f, allowed) in table.items() for q in sorted(allowed or ()) if q not in table or table[q][0] >= f]
    assert not bad, bad
    assert table["fer_lib"][0] == 0 and not table["fer_lib"][1], "fer_lib itself is floor 0 and imports nothing"


def test_imports_follow_the_layer_table():
    """Every ``fer_lib`` import (at the top or inside a function) stays in its own package, reaches ``fer_lib``
    itself, or goes to a package its row in docs/DESIGN.md names (``*``: any lower floor)."""
    table = _layer_table()
    offenders = []
    for path in FILES:
        here = _room(_module_name(path))
        floor, allowed = table[here]
        for module, line, _ in _imports(path):
            there = _room(module)
            if there in (here, "fer_lib") or (_rel(path), module) in LOCAL_IMPORT_EXCEPTIONS:
                continue
            below = there in table and table[there][0] < floor
            if (there in allowed) if allowed is not None else below:
                continue
            offenders.append(f"{_rel(path)}:{line} imports {module} ({here} may not import {there})")
    assert not offenders, offenders


def test_no_import_cycle():
    """No circle among the modules' top-level imports. Importing ``fer_lib.a.b`` also runs the package
    ``fer_lib/a/__init__.py``, so that counts as an import of ``fer_lib.a`` (except from inside ``fer_lib.a``)."""
    graph: dict[str, set[str]] = {}
    for path in FILES:
        me = _module_name(path)
        edges = set()
        for module, _, local in _imports(path):
            if not local:
                edges |= {module} | (_parents(module) - _parents(me))
        graph[me] = (edges & set(MODULES)) - {me}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (circle := visit(n)):
                return circle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (circle := visit(m)):
            pytest.fail("import circle: " + " -> ".join(circle))


def test_fer_lib_imports_stand_at_the_top():
    """Outside ``fer_lib/cli/`` (which defers its imports to keep ``--help`` fast), a module's ``fer_lib`` imports
    are at its top, so its dependencies are visible; the exceptions are listed in LOCAL_IMPORT_EXCEPTIONS."""
    found = {(_rel(p), m): line for p in FILES if not _in_cli(p) for m, line, local in _imports(p) if local}
    offenders = sorted(f"{f}:{line} imports {m} inside a function" for (f, m), line in found.items()
                       if (f, m) not in LOCAL_IMPORT_EXCEPTIONS)
    assert not offenders, offenders
    stale = sorted(set(LOCAL_IMPORT_EXCEPTIONS) - set(found))
    assert not stale, f"exceptions no longer needed (remove them here and in docs/DESIGN.md): {stale}"


def test_no_library_module_imports_the_cli():
    offenders = sorted(f"{_rel(p)}:{line} imports {m}" for p in FILES if not _in_cli(p) and p.name != "__main__.py"
                       for m, line, _ in _imports(p) if m == "fer_lib.cli" or m.startswith("fer_lib.cli."))
    assert not offenders, offenders


def _is_main_guard(node: ast.AST) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


def test_one_entry_point():
    """``python -m fer_lib <command>`` is the only way in: no other module has an ``if __name__ == "__main__":``."""
    offenders = sorted(_rel(p) for p in FILES if p.name != "__main__.py"
                       and any(_is_main_guard(n) for n in ast.parse(p.read_text(encoding="utf-8")).body))
    assert not offenders, offenders


# ------------------------------------------------------------------------------------------------ other rules
def test_layers_import_only_torch_and_timm():
    """The attention layers stand alone: no other fer_lib module, nothing beyond torch and timm (and stdlib)."""
    allowed_roots = {"torch", "timm", "__future__"} | set(sys.stdlib_module_names)
    offenders = []
    for path in sorted((PKG / "layers").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            offenders += [f"{path.name} imports {n}" for n in names
                          if n.split(".")[0] not in allowed_roots and not n.startswith("fer_lib.layers")]
    assert not offenders, offenders


def _library_files() -> list[Path]:
    """Every module outside the CLI package (``fer_lib/cli/``) and ``fer_lib/__main__.py``."""
    return [p for p in FILES if not _in_cli(p) and p.name != "__main__.py"]


def _nodes(path: Path):
    return ast.walk(ast.parse(path.read_text(encoding="utf-8")))


def test_argument_parsing_lives_only_in_the_cli_package():
    """Library modules take arguments as Python values; ``argparse`` appears only in ``fer_lib/cli/``."""
    offenders = sorted(_rel(p) for p in _library_files()
                       if any(isinstance(n, ast.Import) and any(a.name == "argparse" for a in n.names)
                              or isinstance(n, ast.ImportFrom) and n.module == "argparse" for n in _nodes(p)))
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
                offenders.append(f"{_rel(p)}:{n.lineno}")
    assert offenders == ["inference/proba.py:" + str(_batched_loop_line())], offenders


def _batched_loop_line() -> int:
    tree = ast.parse((PKG / "inference" / "proba.py").read_text(encoding="utf-8"))
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "batched_logits")
    return next(n.lineno for n in ast.walk(fn) if isinstance(n, ast.For))
