"""The distribution installs everything under `cirgraph` and nothing under a bare generic name."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BARE = {"agents", "tools", "stores", "prompts", "evals", "tests", "benchmarks"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        check=True, capture_output=True, text=True,
    )
    (whl,) = out.glob("cirgraph-*.whl")
    return whl


def test_wheel_has_only_the_cirgraph_top_level(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"cirgraph"}, tops
    top_level = [n for n in names if n.endswith("top_level.txt")]
    if top_level:
        assert zipfile.ZipFile(wheel).read(top_level[0]).decode().split() == ["cirgraph"]


def test_wheel_maps_every_folder_under_cirgraph(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for sub in ("agents", "prompts", "tools", "stores", "evals", "cli", "testing", "chat"):
        assert f"cirgraph/{sub}/__init__.py" in names, sub
    assert any(n.startswith("cirgraph/prompts/templates/") and n.endswith(".j2") for n in names) or not any(
        (REPO / "prompts" / "templates").rglob("*.j2")
    ), "prompt templates must ship as package data"


def test_every_source_package_is_declared() -> None:
    """A new subfolder with an __init__.py must be added to pyproject's package list, or it would not install."""
    import tomllib

    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(cfg["packages"])
    mapping = {v: k for k, v in cfg["package-dir"].items()}
    for folder in ("agents", "prompts", "tools", "stores", "evals", "cirgraph"):
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO).as_posix()
            if "templates" in rel:
                continue
            assert rel in mapping and mapping[rel] in declared, f"{rel} is not declared in pyproject.toml"


def test_editable_install_resolves_into_the_repo_and_shadows_nothing() -> None:
    code = (
        "import importlib.util, json, cirgraph.tools, cirgraph.agents, cirgraph.stores, cirgraph.evals, "
        "cirgraph.prompts\n"
        "bare = {n: importlib.util.find_spec(n) is not None"
        " and 'cirgraph' in (importlib.util.find_spec(n).origin or '')"
        " for n in ['agents', 'tools', 'stores', 'prompts', 'evals']}\n"
        "print(json.dumps({'tools': cirgraph.tools.__file__, 'bare': bare}))"
    )
    import json

    out = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)
    assert Path(info["tools"]).resolve() == (REPO / "tools" / "__init__.py").resolve()
    assert not any(info["bare"].values()), info["bare"]


def test_import_and_help_stay_light() -> None:
    code = (
        "import sys, cirgraph, cirgraph.cli\n"
        "heavy = [m for m in ('torch', 'transformers', 'chromadb', 'langgraph', 'openai') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported eagerly: {out.stdout}"
    res = subprocess.run([sys.executable, "-m", "cirgraph", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "index" in res.stdout
