"""No import cycle among the modules of cirgraph.evals, read from the source with ast: every import counts, at the
top, under TYPE_CHECKING or inside a function, since each is a dependency a reader has to follow."""

from __future__ import annotations

from pathlib import Path

import cirgraph.evals
from tests.imports import imported_modules

PACKAGE = "cirgraph.evals"
FOLDER = Path(cirgraph.evals.__file__).parent


def import_graph(folder: Path, package: str) -> dict[str, set[str]]:
    modules = {f"{package}.{p.stem}": p for p in folder.glob("*.py") if p.stem != "__init__"}
    return {name: imported_modules(path, package) & set(modules) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path that ends where it starts, or None."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_checker_finds_a_cycle_and_its_path() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_imports_within_a_package_resolve_every_form(tmp_path: Path) -> None:
    (tmp_path / "one.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.two import X\n")
    (tmp_path / "two.py").write_text("def f():\n    from pkg import three\n")
    (tmp_path / "three.py").write_text("from . import one\nimport pkg.two\n")
    assert import_graph(tmp_path, "pkg") == {"pkg.one": {"pkg.two"}, "pkg.two": {"pkg.three"},
                                             "pkg.three": {"pkg.one", "pkg.two"}}


def test_evals_has_no_import_cycle() -> None:
    graph = import_graph(FOLDER, PACKAGE)
    assert {"cirgraph.evals.runner", "cirgraph.evals.records", "cirgraph.evals.benchmarks"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
