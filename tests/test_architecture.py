"""The house rules of ARCHITECTURE.md, checked on the source: import circles, private names, layering.

Reads every module under harness/ with `ast` (no import is executed) and builds the graph of imports
between harness modules, counting imports inside functions and under `if TYPE_CHECKING:` too: a lazy
import still ties two modules together, it only moves the cost.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "harness"
# Parts that sit below the CLI: none of them may import harness.cli.
BELOW_CLI = ("harness.run", "harness.diagnostics", "harness.gate", "harness.report", "harness.metrics")
# The report and the gate's decision read the results store, never the code that fills it.
STORE_READERS = ("harness.report", "harness.gate.decide")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the harness module imported (a module, never a name inside one)
    names: tuple[str, ...]  # names taken from it by `from target import ...`
    line: int


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _absolute(node: ast.ImportFrom, here: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    package = here.split(".") if is_package else here.split(".")[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def imports_of(path: Path, modules: set[str], root: Path = PACKAGE) -> Iterator[Import]:
    """Every import of another harness module in one file, wherever it sits in the file."""
    here = module_name(path, root)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    yield Import(here, alias.name, (), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, here, path.name == "__init__.py")
            taken = tuple(alias.name for alias in node.names)
            submodules = [name for name in taken if f"{base}.{name}" in modules]
            for name in submodules:  # `from harness.gate import outputs` imports a module
                yield Import(here, f"{base}.{name}", (), node.lineno)
            if base in modules:
                yield Import(here, base, tuple(n for n in taken if n not in submodules), node.lineno)


def import_graph(root: Path = PACKAGE) -> list[Import]:
    files = sorted(root.rglob("*.py"))
    modules = {module_name(path, root) for path in files}
    return [imp for path in files for imp in imports_of(path, modules, root) if imp.target != imp.source]


def find_cycle(edges: list[Import]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None; a package importing its own submodule is no circle."""
    graph: dict[str, set[str]] = {}
    for imp in edges:
        if not imp.target.startswith(imp.source + "."):
            graph.setdefault(imp.source, set()).add(imp.target)
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        for nxt in sorted(graph.get(node, ())):
            cycle = visit(nxt, path + [node])
            if cycle:
                return cycle
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start, [])
        if cycle:
            return cycle
    return None


def _within(module: str, parts: tuple[str, ...]) -> bool:
    return any(module == part or module.startswith(part + ".") for part in parts)


@pytest.fixture(scope="module")
def edges() -> list[Import]:
    found = import_graph()
    assert len({imp.source for imp in found}) > 30, "the walk found too few harness modules"
    return found


def test_no_import_circle(edges: list[Import]) -> None:
    assert find_cycle(edges) is None, f"import circle: {' -> '.join(find_cycle(edges) or [])}"


def test_no_module_imports_another_modules_private_names(edges: list[Import]) -> None:
    private = [
        f"{imp.source}:{imp.line} imports {imp.target}.{name}"
        for imp in edges
        for name in imp.names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert private == []


def test_nothing_below_the_cli_imports_it(edges: list[Import]) -> None:
    upward = [f"{imp.source}:{imp.line}" for imp in edges if imp.target == "harness.cli" and _within(imp.source, BELOW_CLI)]
    assert upward == []


def test_report_and_gate_decision_do_not_import_the_runner(edges: list[Import]) -> None:
    wrong = [
        f"{imp.source}:{imp.line} imports {imp.target}"
        for imp in edges
        if _within(imp.source, STORE_READERS) and _within(imp.target, ("harness.run",))
    ]
    assert wrong == []


def test_the_checks_see_a_circle_a_private_import_and_a_lazy_upward_import(tmp_path: Path) -> None:
    # A throwaway package with each fault, so a walker that stopped seeing imports would fail here.
    root = tmp_path / "harness"
    (root / "run").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "run" / "__init__.py").write_text("")
    (root / "cli.py").write_text("import typer\n")
    (root / "run" / "engine.py").write_text("from . import matrix\n\ndef generate():\n    from harness.cli import app\n")
    (root / "run" / "matrix.py").write_text("from harness.run.engine import _private\n")
    found = import_graph(root)
    assert find_cycle(found) == ["harness.run.engine", "harness.run.matrix", "harness.run.engine"]
    assert any(imp.target == "harness.cli" and imp.source == "harness.run.engine" for imp in found)
    assert any("_private" in imp.names for imp in found)
