"""Layers, read from the source with ast: stores/ and tools/ sit below the SDK face and never import it (the
Retriever, the client builders, the CLI, the chat). Every import counts: at the top, under TYPE_CHECKING or inside a
function, since a store that reaches up to the SDK face to build its embedder has the layers upside down."""

from __future__ import annotations

from pathlib import Path

import pytest

import cirgraph.stores
import cirgraph.tools
from tests.imports import imported_modules

SDK_FACE = ("cirgraph.retriever", "cirgraph.clients", "cirgraph.cli", "cirgraph.chat")
LOWER = {"cirgraph.stores": Path(cirgraph.stores.__file__).parent,
         "cirgraph.tools": Path(cirgraph.tools.__file__).parent}


def sdk_face(names: set[str]) -> list[str]:
    return sorted(n for n in names if any(n == face or n.startswith(face + ".") for face in SDK_FACE))


MODULES = [(package, path) for package, folder in LOWER.items() for path in sorted(folder.rglob("*.py"))]


@pytest.mark.parametrize(("package", "path"), MODULES, ids=[f"{p.rsplit('.', 1)[1]}/{m.name}" for p, m in MODULES])
def test_stores_and_tools_never_import_the_sdk_face(package: str, path: Path) -> None:
    found = sdk_face(imported_modules(path, package))
    assert not found, f"{package}: {path.name} imports {found}"


def test_both_layers_are_found() -> None:
    names = {(p, m.stem) for p, m in MODULES}
    assert {("cirgraph.stores", "embedding_function"), ("cirgraph.tools", "embedders")} <= names


def test_the_check_sees_every_form_of_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import cirgraph.retriever\nfrom cirgraph import clients\nfrom cirgraph.cli.search import x\n"
                      "def f():\n    from ..chat import session\n", encoding="utf-8")
    found = sdk_face(imported_modules(module, "cirgraph.stores"))
    assert found == ["cirgraph.chat", "cirgraph.chat.session", "cirgraph.cli.search", "cirgraph.cli.search.x",
                     "cirgraph.clients", "cirgraph.retriever"]
