"""No node imports another node: what nodes share lives beside them (texts, verdicts, fusion), so each node can be
changed, replaced or tested alone."""

from __future__ import annotations

from pathlib import Path

import pytest

import cirgraph.agents.nodes as nodes_package
from tests.imports import imported_modules

NODES_DIR = Path(nodes_package.__file__).parent
PACKAGE = "cirgraph.agents.nodes"
NODES = sorted(p.stem for p in NODES_DIR.glob("*.py") if not p.stem.startswith("_"))


def test_every_node_is_found() -> None:
    assert {"caption_reference", "decompose", "recompose", "reflect", "rerank", "retrieve", "review"} <= set(NODES)


@pytest.mark.parametrize("node", NODES)
def test_a_node_imports_no_other_node(node: str) -> None:
    others = {f"{PACKAGE}.{other}" for other in NODES if other != node}
    imported = imported_modules(NODES_DIR / f"{node}.py", PACKAGE)
    assert not imported & others, f"agents/nodes/{node}.py imports {sorted(imported & others)}"


def test_the_check_sees_relative_and_absolute_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from .rerank import checks\nimport cirgraph.agents.nodes.decompose\n"
                      "from cirgraph.agents.nodes import recompose\nfrom . import reflect\n", encoding="utf-8")
    found = imported_modules(module, PACKAGE)
    assert {f"{PACKAGE}.{n}" for n in ("rerank", "decompose", "recompose", "reflect")} <= found
