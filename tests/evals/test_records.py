"""Run records and the per-query log: schema round trip, versioning, atomic writes, resumable appends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cirgraph.errors import InputError
from cirgraph.evals.records import (
    SCHEMA_VERSION,
    ErrorInfo,
    ModelInfo,
    QueryLog,
    QueryResult,
    RunRecord,
    describe_model,
    load_record,
    write_atomic,
    write_record,
)
from cirgraph.evals.reports import markdown, summary_row, to_csv


def _record() -> RunRecord:
    ok = QueryResult(id="1", status="ok", ranking=["b", "c"], scores=[0.9, 0.5], caption="a dog",
                     caption_source="given", descriptions=["two dogs"], propositions=[{"text": "two dogs"}],
                     verdicts={"b": {"score": 0.8}}, degraded=[{"stage": "rerank", "reason": "x", "fallback": "y"}],
                     prompts={"recompose": {"template": "recompose/plain", "sha": "abc"}},
                     usage={"calls": 2, "prompt_tokens": 30, "completion_tokens": 10}, seconds=1.5)
    failed = QueryResult.failure("2", RuntimeError("boom"), 0.25)
    return RunRecord(run_id="cirr-val-x", fingerprint="f" * 64, created="2026-01-01T00:00:00+00:00",
                     package_version="0.1.0", benchmark="cirr", split="val", revision="rc2", main_score="R@1",
                     mode="captions", models={"llm": ModelInfo(name="m", kind="OpenAIChatModel",
                                                               endpoint="http://h:1/v1"), "vlm": None},
                     config={"k": 50, "preset": "cirevl"}, preset="cirevl", metrics={"R@1": 50.0, "Rs@1": 100.0},
                     counts={"queries": 2, "ok": 1, "failed": 1}, timings={"query_s_total": 1.75},
                     usage={"calls": 2, "prompt_tokens": 30, "completion_tokens": 10},
                     failures=[{"id": "2", "type": "RuntimeError", "message": "boom"}], queries=[ok, failed])


def test_record_round_trip(tmp_path: Path) -> None:
    record = _record()
    path = write_record(record, tmp_path / "run" / "record.json")
    assert load_record(path) == record
    assert load_record(tmp_path / "run") == record  # a run folder names its record
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION and data["metrics"]["R@1"] == 50.0
    assert data["queries"][1]["error"] == {"type": "RuntimeError", "message": "boom"}
    assert record.per_query("calls") == 1.0 and record.per_query("seconds") == 0.875


def test_newer_or_invalid_records_are_refused_with_the_reason(tmp_path: Path) -> None:
    data = json.loads(_record().model_dump_json())
    path = tmp_path / "record.json"
    path.write_text(json.dumps({**data, "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(InputError, match="schema_version"):
        load_record(path)
    path.write_text(json.dumps({**data, "metrics": {"R@1": "high"}}))
    with pytest.raises(InputError, match=r"metrics\.R@1"):
        load_record(path)
    with pytest.raises(InputError, match="no run record"):
        load_record(tmp_path / "nowhere")


def test_atomic_write_replaces_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    write_atomic(target, "old")
    write_atomic(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_log_resumes_drops_a_cut_line_and_keeps_the_last_result(tmp_path: Path) -> None:
    path = tmp_path / "queries.jsonl"
    log = QueryLog(path, run_id="r", fingerprint="fp")
    log.append(QueryResult.failure("1", ValueError("first try"), 0.1))
    log.append(QueryResult(id="2", status="ok", ranking=["x"]))
    log.append(QueryResult(id="1", status="ok", ranking=["y"]))  # a retried query: the later line wins
    with path.open("a") as handle:
        handle.write('{"id": "3", "status": "o')  # a write cut short by a kill
    reopened = QueryLog(path, run_id="r", fingerprint="fp")
    assert {i: r.ranking for i, r in reopened.results.items()} == {"1": ["y"], "2": ["x"]}
    assert path.read_text().endswith("\n")
    reopened.append(QueryResult(id="3", status="ok"))
    assert set(QueryLog(path, run_id="r", fingerprint="fp").results) == {"1", "2", "3"}


def test_log_of_other_settings_is_refused_unless_fresh(tmp_path: Path) -> None:
    path = tmp_path / "queries.jsonl"
    QueryLog(path, run_id="r", fingerprint="one").append(QueryResult(id="1", status="ok"))
    with pytest.raises(InputError, match="--fresh"):
        QueryLog(path, run_id="r", fingerprint="two")
    assert QueryLog(path, run_id="r", fingerprint="two", fresh=True).results == {}


def test_failure_keeps_type_and_message() -> None:
    result = QueryResult.failure("7", KeyError("missing"), 0.123456)
    assert result.status == "failed" and result.ranking == [] and result.seconds == 0.1235
    assert result.error == ErrorInfo(type="KeyError", message="'missing'")


def test_model_description_strips_credentials() -> None:
    class Client:
        name, base_url = "gpt", "https://user:secret@api.example.com:8443/v1?key=abc"

    info = describe_model(Client())
    assert info == ModelInfo(name="gpt", kind="Client", endpoint="https://api.example.com:8443/v1")
    assert describe_model(None) is None


def test_summaries_show_metrics_cost_and_failures() -> None:
    record = _record()
    text = markdown(record)
    assert "| R@1 | 50.00 |" in text and "- 2: RuntimeError: boom" in text
    assert "1.0 model calls" in text and "llm: m (OpenAIChatModel, http://h:1/v1)" in text
    row = summary_row(record)
    assert row["R@1"] == 50.0 and row["calls/q"] == 1.0 and row["tokens/q"] == 20.0
    lines = to_csv([row]).splitlines()
    assert lines[0].startswith("run_id,preset,benchmark") and lines[1].startswith("cirr-val-x,cirevl,cirr")


def test_plot_writes_svg_without_matplotlib_and_png_with_it(tmp_path: Path) -> None:
    from cirgraph.evals.reports import plot

    records = [_record(), _record().model_copy(update={"preset": "reflect", "metrics": {"R@1": 75.0}})]
    svg = plot(records, tmp_path / "chart.svg")
    assert svg.suffix == ".svg" and "reflect R@1: 75.00" in svg.read_text()
    pytest.importorskip("matplotlib")
    png = plot(records, tmp_path / "chart.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_atomic_writes_are_as_readable_as_ordinary_files(tmp_path) -> None:
    import os
    import stat

    from cirgraph.evals.records import write_atomic

    written = write_atomic(tmp_path / "record.json", "{}")
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert stat.S_IMODE(os.stat(written).st_mode) == stat.S_IMODE(os.stat(plain).st_mode)
