"""`cirgraph eval` on the CIRR fixture in caption space, with the models set the way a user sets them: the LLM is a
fake OpenAI-compatible server (CIRGRAPH_LLM_BASE_URL) and the caption embedder the hash test embedder
(CIRGRAPH_TEXT_EMBEDDER=hash:64). kill -9 and resume: tests/reliability/test_kill_eval.py."""

from __future__ import annotations

import json
import time
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cirgraph.cli import app
from cirgraph.errors import InputError
from cirgraph.testing.fake_openai import FakeOpenAIServer, echo_recompose

CIRR = Path(__file__).parents[1] / "evals" / "fixtures" / "cirr"
QUERIES = json.loads((CIRR / "captions" / "cap.rc2.val.json").read_text())


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer({'{"edits"': echo_recompose}) as fake:
        for key, value in {"LLM_BASE_URL": fake.base_url, "LLM_MODEL": "fake-model", "LLM_API_KEY": "k",
                           "TEXT_EMBEDDER": "hash:64", "EMBEDDER": ""}.items():
            monkeypatch.setenv(f"CIRGRAPH_{key}", value)
        yield fake


@pytest.fixture
def captions(tmp_path: Path) -> Path:
    """Captions of both fixture galleries; each target is captioned with its query's modification text."""
    names = [n for split in ("val", "test1") for n in json.loads((CIRR / "image_splits" /
                                                                  f"split.rc2.{split}.json").read_text())]
    table = {n: [f"an ordinary picture {i}"] for i, n in enumerate(names)}
    table.update({q["target_hard"]: [q["caption"].lower()] for q in QUERIES})
    path = tmp_path / "captions.json"
    path.write_text(json.dumps(table))
    return path


def cli(*args: str, code: int = 0) -> object:
    result = CliRunner().invoke(app, ["eval", *args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def run_args(captions: Path, out: Path, *extra: str) -> list[str]:
    return ["cirr", "--split", "val", "--data", str(CIRR), "--captions", str(captions), "--out", str(out), *extra]


def test_run_records_metrics_and_a_rerun_calls_no_model(server: FakeOpenAIServer, captions: Path,
                                                        tmp_path: Path) -> None:
    first = json.loads(cli("run", *run_args(captions, tmp_path / "a", "--preset", "cirevl", "--json", "-q")).stdout)
    assert first["metrics"]["R@1"] == 100.0 and first["counts"]["ok"] == 5
    assert len(server.chat_requests) == 5
    record = json.loads((tmp_path / "a" / "record.json").read_text())
    assert record["models"]["llm"] == {"name": "fake-model", "kind": "OpenAIChatModel", "endpoint": server.base_url}
    assert record["models"]["text_embedder"]["name"] == "hash:64" and record["config"]["preset"] == "cirevl"
    assert {"summary.md", "summary.csv", "queries.jsonl"} <= {p.name for p in (tmp_path / "a").iterdir()}
    # the shorthand, into a fresh folder: every answer comes from the call cache
    again = json.loads(cli(*run_args(captions, tmp_path / "b", "--preset", "cirevl", "--json", "-q")).stdout)
    assert len(server.chat_requests) == 5 and again["metrics"] == first["metrics"]
    second = json.loads((tmp_path / "b" / "record.json").read_text())
    assert [q["ranking"] for q in second["queries"]] == [q["ranking"] for q in record["queries"]]
    assert second["usage"]["calls"] == 0 and second["usage"]["cached_calls"] == 5


def test_missing_captions_are_reported_and_fail_only_their_queries(server: FakeOpenAIServer, tmp_path: Path) -> None:
    result = cli("run", *run_args(CIRR / "mllm_captions.json", tmp_path / "r", "--preset", "caption-only"), code=3)
    record = json.loads((tmp_path / "r" / "record.json").read_text())
    assert record["counts"]["failed"] == 4 and record["counts"]["ok"] == 1
    assert {f["type"] for f in record["failures"]} == {"MissingCaptionError"}
    assert len(record["missing_captions"]["references"]) == 4
    assert "## Missing captions" in result.stdout and "| R@1 |" in result.stdout


def test_ladder_prints_the_comparison_and_compare_reads_the_runs(server: FakeOpenAIServer, captions: Path,
                                                                 tmp_path: Path) -> None:
    ladder = cli("ladder", *run_args(captions, tmp_path / "ladder", "--presets", "modification-only,cirevl", "-q"))
    assert "modification-only" in ladder.stdout and "cirevl" in ladder.stdout and "calls/q" in ladder.stdout
    assert list((tmp_path / "ladder").glob("ladder.*"))
    runs = [str(tmp_path / "ladder" / name) for name in ("modification-only", "cirevl")]
    table = cli("compare", *runs, "--plot", str(tmp_path / "chart.svg"), "--csv", str(tmp_path / "t.csv"))
    assert "R@5" in table.stdout and "(R@5+Rs@1)/2" in table.stdout
    svg = (tmp_path / "chart.svg").read_text()
    assert svg.startswith("<svg") and "cirevl R@1: 100.00" in svg
    rows = (tmp_path / "t.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[2].split(",")[1] == "cirevl"
    as_json = json.loads(cli("compare", *runs, "--json", "--plot", str(tmp_path / "c.svg")).stdout)
    assert [r["preset"] for r in as_json["runs"]] == ["modification-only", "cirevl"]


def test_score_prints_metrics_of_a_server_format_file(tmp_path: Path) -> None:
    payload = {"version": "rc2", "metric": "recall"}
    gallery = [n for n in json.loads((CIRR / "image_splits" / "split.rc2.val.json").read_text())]
    for q in QUERIES:
        others = [n for n in gallery if n not in (q["target_hard"], q["reference"])]
        payload[str(q["pairid"])] = [q["target_hard"], *others[:49]]
    path = tmp_path / "recall.json"
    path.write_text(json.dumps(payload))
    out = cli("score", "cirr", "--split", "val", "--data", str(CIRR), "--predictions", str(path), "--json")
    assert json.loads(out.stdout) == {"R@1": 100.0, "R@5": 100.0, "R@10": 100.0, "R@50": 100.0}
    assert "R@1\t100.00" in cli("score", "cirr", "--data", str(CIRR), "--predictions", str(path)).stdout


def test_test_split_run_writes_the_submission_files(server: FakeOpenAIServer, captions: Path, tmp_path: Path) -> None:
    args = ["cirr", "--split", "test1", "--data", str(CIRR), "--captions", str(captions), "--out", str(tmp_path / "t"),
            "--preset", "modification-only", "--json", "-q"]
    out = json.loads(cli("run", *args).stdout)
    assert out["metrics"] == {} and len(out["submissions"]) == 2
    assert json.loads(Path(out["submissions"][1]).read_text())["metric"] == "recall_subset"


def test_bad_variant_is_a_one_line_error(server: FakeOpenAIServer, captions: Path, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "cirgraph", "eval", "run",
                             *run_args(captions, tmp_path / "x", "--variant", "recompose")],
                            capture_output=True, text=True, env=os.environ, timeout=60)
    assert result.returncode == 1 and result.stderr.startswith("error: --variant 'recompose': expected STAGE=VARIANT")


def test_calibrate_writes_a_profile_that_becomes_the_default(server, captions: Path, tmp_path: Path) -> None:
    from cirgraph.profiles import load_profile
    from cirgraph.settings import Settings

    res = cli("calibrate", "cirr", "--split", "val", "--data", str(CIRR), "--captions", str(captions),
              "--candidates", "modification-only,cirevl", "--out", str(tmp_path / "cal"), "-q", "--json")
    written = json.loads(res.stdout)
    assert written["criterion"] == "(R@5+Rs@1)/2" and len(written["candidates"]) == 2
    # the fixture's targets are captioned with their modification text: cirevl's descriptions find them
    assert written["preset"] == max(written["candidates"], key=lambda c: c["metrics"]["(R@5+Rs@1)/2"])["preset"]
    assert written["measured_on"]["queries"] == len(QUERIES) and written["models"]["llm"] == "fake-model"
    profile, path = load_profile(Settings())
    assert str(path) == written["profile"] and profile.preset == written["preset"]
    assert Settings().default_preset()[1].startswith(f"profile {path.name}: best (R@5+Rs@1)/2 of 2 candidates")
    run = CliRunner().invoke(app, ["eval", "run", "cirr", "--split", "val", "--data", str(CIRR), "--captions",
                                   str(captions), "--out", str(tmp_path / "run"), "-q", "--json"],
                             catch_exceptions=False)
    assert run.exit_code == 0, run.output
    assert f"-{written['preset']}-" in json.loads(run.stdout)["run_id"] and "preset: " in run.stderr
    path.write_text("{not json")
    broken = CliRunner().invoke(app, ["eval", "run", "cirr", "--split", "val", "--data", str(CIRR)])
    assert broken.exit_code != 0


def test_calibrate_leaves_out_candidates_whose_model_is_missing(captions: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIRGRAPH_TEXT_EMBEDDER", "hash:64")
    monkeypatch.setenv("CIRGRAPH_EMBEDDER", "")
    res = cli("calibrate", "cirr", "--split", "val", "--data", str(CIRR), "--captions", str(captions),
              "--candidates", "modification-only,small-model", "--out", str(tmp_path / "cal"), "-q", "--json")
    written = json.loads(res.stdout)
    assert [c["preset"] for c in written["candidates"]] == ["modification-only"]
    assert written["preset"] == "modification-only" and written["models"]["llm"] is None


def test_some_failed_queries_exit_3_with_the_json_unchanged(server: FakeOpenAIServer, tmp_path: Path) -> None:
    result = cli("run", *run_args(CIRR / "mllm_captions.json", tmp_path / "r", "--preset", "caption-only", "--json",
                                  "-q"), code=3)
    out = json.loads(result.stdout)
    assert set(out) == {"run_id", "folder", "metrics", "counts", "failures", "submissions"}
    assert out["counts"]["failed"] == 4 and "4 of 5 queries failed" in result.stderr


def test_compare_takes_run_ids_and_names_its_chart_after_the_runs(server: FakeOpenAIServer, captions: Path,
                                                                 tmp_path: Path) -> None:
    ids = [json.loads(cli("run", "cirr", "--split", "val", "--data", str(CIRR), "--captions", str(captions),
                          "--preset", preset, "--json", "-q").stdout)["run_id"] for preset in ("modification-only",
                                                                                            "cirevl")]
    runs = Path(os.environ["CIRGRAPH_HOME"]) / "runs"
    first = cli("compare", *ids)
    charts = sorted(runs.glob("compare-*"))
    assert len(charts) == 1 and f"plot: {charts[0]}" in first.stdout
    cli("compare", ids[1], str(runs / ids[0]))  # an id and a folder, in another order: a chart of its own
    assert len(list(runs.glob("compare-*"))) == 2 and charts[0].exists()
    with pytest.raises(InputError, match="'no-such-run-id': no such folder or record file, and no run with this id"):
        CliRunner().invoke(app, ["eval", "compare", "no-such-run-id"], catch_exceptions=False)


def test_a_bad_data_folder_fails_in_one_line_before_any_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cirgraph import clients
    from cirgraph.tools import embedders

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(clients, "build_chat_model", no_model)
    for name in ("load_text_embedder", "load_image_text_embedder"):
        monkeypatch.setattr(embedders, name, no_model)
    monkeypatch.setattr(sys, "argv", ["cirgraph", "eval", "run", "cirr", "--data", str(tmp_path / "nope")])
    from cirgraph.cli import main

    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 1


def test_metrics_carry_no_float_noise() -> None:
    from cirgraph.evals.reports import clean_metrics

    assert clean_metrics({"R@1": 55.00000000000001, "R@5": 1 / 3 * 100}) == {"R@1": 55.0, "R@5": 33.3333}


def test_the_wall_time_counts_the_gallery_build(server: FakeOpenAIServer, captions: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIRGRAPH_TEXT_EMBEDDER", "hash:64?delay=0.3")  # every embedding call sleeps 0.3 s
    out = json.loads(cli("run", *run_args(captions, tmp_path / "w", "--preset", "modification-only", "-c", "1",
                                          "--json", "-q")).stdout)
    timings = json.loads((Path(out["folder"]) / "record.json").read_text())["timings"]
    assert timings["wall_s"] >= timings["query_s_total"] + 0.3  # the build embedded the captions at least once


def test_the_preset_help_lists_every_preset_in_order() -> None:
    import re

    from cirgraph.agents.presets import names
    from cirgraph.cli._presets import PRESET_HELP

    listed = PRESET_HELP.split(":", 1)[1].split(". Default")[0]
    assert [p.strip() for p in listed.split(",")] == names()
    assert not re.search(r"\b(eight|nine|ten|eleven|twelve|\d+) presets\b", PRESET_HELP)


def test_max_outage_stops_a_run_whose_endpoint_is_gone(server: FakeOpenAIServer, captions: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    from cirgraph.cli import main

    server.stop()  # the endpoint refuses every connection from here on
    monkeypatch.setattr(sys, "argv", ["cirgraph", "eval", "run", *run_args(captions, tmp_path / "gone", "--preset",
                                                                            "cirevl", "-q", "--max-outage", "0.5")])
    started = time.perf_counter()
    with pytest.raises(SystemExit) as stop:
        main()
    seconds = time.perf_counter() - started
    err = capsys.readouterr().err
    print(f"eval run, endpoint gone, --max-outage 0.5: exit {stop.value.code} after {seconds:.1f} s")
    assert stop.value.code == 1 and "Traceback" not in err, err
    assert server.base_url in err and "still unreachable after waiting" in err and "rerun resumes" in err
    assert len(err.strip().splitlines()) == 1 and seconds < 30
