"""`cirgraph search` against the toy world: table, JSON, explanation, progress, errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cirgraph.cli import app, main
from cirgraph.cli import search as search_cli
from cirgraph.retriever import Retriever
from cirgraph.testing.memory_gallery import build_toy_gallery
from cirgraph.testing.toy_pipeline import RERANK_KEY, toy_models


@pytest.fixture
def images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    gallery, embedder, text_embedder = build_toy_gallery(tmp_path / "images")
    opened: list[tuple[str, str]] = []

    def fake_open(name: str, preset: str, settings: object = None) -> Retriever:
        opened.append((name, preset))
        llm, vlm = toy_models(gallery, embedder, overrides=monkeypatch_overrides)
        return Retriever(gallery=gallery, llm=llm, vlm=vlm, embedder=embedder, text_embedder=text_embedder,
                         config=preset)

    monkeypatch_overrides: dict = {}
    monkeypatch.setattr(search_cli, "open_retriever", fake_open)
    fake_open.opened = opened  # type: ignore[attr-defined]
    fake_open.overrides = monkeypatch_overrides  # type: ignore[attr-defined]
    return tmp_path / "images"


def _run(*args: str):
    return CliRunner().invoke(app, ["search", *args], catch_exceptions=False)


def test_json_output_has_results_and_explanation(images: Path) -> None:
    res = _run("--image", str(images / "blue-dress.png"), "--text", "make it red", "-k", "3", "--json",
               "--preset", "reflect")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["results"][0]["id"] == "red-dress" and len(out["results"]) == 3
    assert {"id", "uri", "score", "components", "verdict", "rank"} <= set(out["results"][0])
    assert {"text_image", "modification", "reference"} <= set(out["results"][0]["components"])
    e = out["explanation"]
    assert e["caption"] == "a blue dress on a hanger" and e["stop_reason"] == "confident"
    assert e["usage"]["calls"] == 10 and e["config"]["preset"] == "reflect"


def test_table_and_explanation(images: Path) -> None:
    res = _run("--ref-id", "blue-dress", "--text", "make it red", "-k", "2", "--preset", "cirevl", "--explain",
               "--gallery", "shop")
    assert res.exit_code == 0, res.output
    assert "red-dress" in res.stdout and "2 results" in res.stdout
    assert "caption (gallery): a blue dress on a hanger" in res.stdout
    assert "description (recompose): a red dress" in res.stdout
    assert "prompt recompose: recompose/plain @" in res.stdout
    assert search_cli.open_retriever.opened == [("shop", "cirevl")]


def test_explained_weights_print_without_float_noise(images: Path) -> None:
    res = _run("--ref-id", "blue-dress", "--text", "make it red", "-k", "2", "--preset", "modification+reference",
               "--explain", "--gallery", "shop")
    assert res.exit_code == 0, res.output
    weights = json.loads(next(ln for ln in res.stdout.splitlines() if ln.startswith("weights: "))[9:])
    assert len(weights) > 1 and all(round(w, 4) == w for w in weights.values()), weights  # not 0.9090909090909092


def test_progress_lines_go_to_stderr(images: Path) -> None:
    res = _run("--ref-id", "blue-dress", "--text", "make it red", "--preset", "rerank", "--json")
    assert res.exit_code == 0
    lines = [ln.split(":")[0] for ln in res.stderr.splitlines()]
    assert lines == ["recompose", "decompose", "retrieve", "rerank"]
    json.loads(res.stdout)  # stdout stays one JSON object


def test_degradation_is_reported(images: Path) -> None:
    from cirgraph.errors import ModelError

    search_cli.open_retriever.overrides[RERANK_KEY] = ModelError("toy", "server returned 503")
    res = _run("--ref-id", "blue-dress", "--text", "make it red", "--preset", "rerank")
    assert res.exit_code == 0
    assert "rerank degraded" in res.stderr and "server returned 503" in res.stderr
    assert "used retrieval order" in res.stderr


def test_exactly_one_reference_is_required(images: Path) -> None:
    res = CliRunner().invoke(app, ["search", "--text", "red"])
    assert res.exit_code == 2 and "exactly one of --image and --ref-id" in res.output


@pytest.mark.parametrize(("args", "message"), [
    (["--ref-id", "nope", "--text", "red"], "error: reference id 'nope': no such item in gallery 'toy'"),
    (["--ref-id", "blue-dress", "--text", " "], "error: modification text: is empty"),
    (["--ref-id", "blue-dress", "--text", "red", "--preset", "best"], "error: preset 'best': unknown"),
])
def test_bad_input_is_one_line_and_exit_1(images: Path, monkeypatch, capsys, args, message) -> None:
    if "--preset" in args:
        monkeypatch.setattr(search_cli, "open_retriever",
                            lambda g, p, s=None: Retriever.from_settings(s, gallery=g, preset=p))
    monkeypatch.setattr(sys, "argv", ["cirgraph", "search", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(message)


def test_bad_input_fails_before_any_model_is_loaded(tmp_path) -> None:
    """With the default preset and no endpoint, loading the in-process LLM would fail here: input checks come first."""
    import subprocess
    import sys

    bad = tmp_path / "notes.jpg"
    bad.write_text("not a picture")
    cmd = [sys.executable, "-m", "cirgraph", "search", "--gallery", "nothing"]
    res = subprocess.run(cmd + ["--image", str(bad), "--text", "in red"], capture_output=True, text=True)
    assert res.returncode == 1 and "notes.jpg: not an image file" in res.stderr and "model" not in res.stderr
    res = subprocess.run(cmd + ["--image", str(bad), "--text", "   "], capture_output=True, text=True)
    assert res.returncode == 1 and "modification text" in res.stderr, res.stderr


def test_without_a_preset_the_default_fits_the_configured_models(images: Path, monkeypatch) -> None:
    res = _run("--image", str(images / "blue-dress.png"), "--text", "make it red", "-k", "3")
    assert res.exit_code == 0, res.output
    assert search_cli.open_retriever.opened[-1] == ("default", "modification+reference")
    assert res.stderr.startswith("preset: modification+reference (no LLM is configured")
    monkeypatch.setenv("CIRGRAPH_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    res = _run("--image", str(images / "blue-dress.png"), "--text", "make it red", "-k", "3")
    assert res.exit_code == 0, res.output
    assert search_cli.open_retriever.opened[-1] == ("default", "small-model")
    assert res.stderr.startswith("preset: small-model (an LLM is configured")


def test_the_table_shows_only_columns_with_data_and_keeps_numbers_whole(images: Path) -> None:
    res = _run("--image", str(images / "blue-dress.png"), "--text", "make it red", "-k", "3", "--preset",
               "modification-only")
    assert res.exit_code == 0, res.output
    header = next(line for line in res.stdout.splitlines() if "score" in line)
    assert "verdict" not in header and "props" not in header and "ref" not in header
    rows = [[cell.strip() for cell in line.strip("│").split("│")] for line in res.stdout.splitlines()
            if line.startswith("│")]
    assert [r[0] for r in rows if r[0]] == ["1", "2", "3"]
    for row in rows:  # a long path may fold onto more lines; the numbers never do
        assert all(len(cell) == 5 for cell in row[2:-1]) if row[0] else not any(row[:-1])


def test_the_reference_image_is_decoded_once_per_search(images: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cirgraph.agents import query
    from cirgraph.tools import images as image_tools

    decoded: list[str] = []
    original = image_tools.decode_image

    def counted(data: bytes, **kw):
        decoded.append(kw.get("name"))
        return original(data, **kw)

    for module in (query, image_tools):  # the input check's decoder and the pipeline's
        monkeypatch.setattr(module, "decode_image", counted)
    query._decoded.clear()
    res = _run("--image", str(images / "blue-dress.png"), "--text", "make it red", "--preset", "modification-only")
    assert res.exit_code == 0, res.output
    assert decoded == [str(images / "blue-dress.png")]


def test_flags_show_no_type_in_help() -> None:
    res = CliRunner().invoke(app, ["search", "--help"], env={"COLUMNS": "120"})
    assert res.exit_code == 0 and "--explain" in res.output and "<bool>" not in res.output
    assert "<str>" in res.output  # options that take a value keep theirs


def test_model_library_progress_bars_are_off_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    from cirgraph.cli import quiet_model_library

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    quiet_model_library()
    assert sys.modules["os"].environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    quiet_model_library(verbose=True)
    assert sys.modules["os"].environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "0"
