"""kill -9 of `cirgraph eval run` at seven moments, from its first instant to the writing of its record: each run,
resumed by the next one, logs every query exactly once and ends with the metrics and rankings of an uninterrupted
run; the queries finished before the kill are not run again and the gallery it was building is whole. The CIRR
fixture in caption space, the LLM a fake OpenAI-compatible server; the figures are printed (-s)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from cirgraph.testing.fake_openai import FakeOpenAIServer, echo_recompose
from tests.reliability.conftest import cirgraph_env
from tests.reliability.killing import Moment, after, exists, kill_each, on_line, on_lines_in, run_to_end
from tests.reliability.stores_at_rest import read_store

CIRR = Path(__file__).parents[1] / "evals" / "fixtures" / "cirr"
QUERIES = json.loads((CIRR / "captions" / "cap.rc2.val.json").read_text())


def _captions(path: Path) -> Path:
    """Captions of the fixture's images. The targets of changes of an even number of words are captioned with the
    change (found at rank 1), the others as any picture (missed): metrics between 0 and 100, so that a resume that
    lost or mixed up queries would show in them."""
    names = [n for split in ("val", "test1")
             for n in json.loads((CIRR / "image_splits" / f"split.rc2.{split}.json").read_text())]
    table = {n: [f"an ordinary picture {i}"] for i, n in enumerate(names)}
    table.update({q["target_hard"]: [q["caption"].lower()] for q in QUERIES if len(q["caption"].split()) % 2 == 0})
    path.write_text(json.dumps(table))
    return path


def _moments(log: Path) -> list[Moment]:
    """Seven moments; `log` is the query log of the run they are used for."""
    return [
        Moment("at start", after(0.0)),
        Moment("loading the model", on_line("[trace] model load"), pause_at="model load:1"),
        Moment("gallery build: captions written, item records not", on_line("[trace] store write items"),
               pause_at="store write items:1"),
        Moment("log opened, first query under way", exists(log)),
        Moment("1 query logged", on_lines_in(log, 2)),  # a header line, then one line per query
        Moment("3 queries logged", on_lines_in(log, 4)),
        Moment("every query logged, record not written", on_line("[trace] record write"), pause_at="record write:1"),
    ]


def _logged(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()[1:]] if log.exists() else []


@pytest.mark.slow
def test_eval_killed_at_seven_moments_resumes_to_the_uninterrupted_metrics(tmp_path: Path, monkeypatch) -> None:
    args = ["eval", "run", "cirr", "--split", "val", "--data", str(CIRR), "--captions",
            str(_captions(tmp_path / "captions.json")), "--preset", "cirevl", "-c", "1", "-q", "--json"]
    with FakeOpenAIServer({'{"edits"': echo_recompose}, delay_s=0.1) as server:
        def env(home: Path) -> dict[str, str]:
            return cirgraph_env(home, llm_base_url=server.base_url, llm_model="fake-model", llm_api_key="k",
                                text_embedder="hash:64", embedder="")

        clean, clean_s = run_to_end(monkeypatch, env(tmp_path / "clean"), args)
        folder = Path(clean["folder"]).relative_to(tmp_path / "clean")  # runs/<run id>: the same in every home
        clean_log = {r["id"]: r for r in _logged(tmp_path / "clean" / folder / "queries.jsonl")}
        record = json.loads((tmp_path / "clean" / folder / "record.json").read_text())
        gallery = record["spaces"][0]["gallery"]
        clean_store = read_store(tmp_path / "clean", gallery)
        print(f"\n[reliability] eval, uninterrupted: {len(QUERIES)} queries in {clean_s:.2f} s, "
              f"metrics {clean['metrics']}")
        assert clean["counts"]["ok"] == len(QUERIES) and 0 < clean["metrics"]["R@1"] < 100

        homes = [tmp_path / f"killed{i}" for i in range(7)]
        moments = [_moments(home / folder / "queries.jsonl")[i] for i, home in enumerate(homes)]
        started = time.perf_counter()
        kills = kill_each([(m, env(home)) for m, home in zip(moments, homes)], *args)
        print(f"[reliability] eval: {len(kills)} runs killed, 4 at a time, in {time.perf_counter() - started:.2f} s")
        finished_at_kill = {}
        for home, kill in zip(homes, kills):
            log = home / folder / "queries.jsonl"
            finished = [r["id"] for r in _logged(log)]
            had_record = (home / folder / "record.json").exists()
            asked_before = len(server.chat_requests)
            summary, resume_s = run_to_end(monkeypatch, env(home), args)
            asked = len(server.chat_requests) - asked_before
            finished_at_kill[kill.moment] = len(finished)
            print(f"[reliability] eval killed {'' if kill.killed else '(had finished) '}at {kill.at_s:.2f} s, "
                  f"{kill.moment}: {len(finished)} queries logged, record {'written' if had_record else 'absent'};"
                  f" resumed in {resume_s:.2f} s: {summary['counts']['ran']} ran, "
                  f"{summary['counts']['resumed']} resumed, {asked} model calls")
            assert kill.killed, kill.stderr
            assert summary["metrics"] == clean["metrics"] and summary["counts"]["ok"] == len(QUERIES)
            assert summary["counts"]["resumed"] == len(finished)
            assert summary["counts"]["ran"] == len(QUERIES) - len(finished)  # the finished ones did not run again
            assert asked <= len(QUERIES) - len(finished)  # nor asked the model again (answers are cached)
            lines = _logged(log)
            assert sorted(r["id"] for r in lines) == sorted(clean_log)  # each query once
            assert {r["id"]: r["ranking"] for r in lines} == {i: r["ranking"] for i, r in clean_log.items()}
            assert {r["id"]: r["scores"] for r in lines} == {i: r["scores"] for i, r in clean_log.items()}
            state = read_store(home, gallery)  # the gallery the run built (or finished building)
            assert state == clean_store and len(state.items) == record["spaces"][0]["count"] and state.orphans == 0
            assert json.loads((home / folder / "record.json").read_text())["metrics"] == record["metrics"]

    assert finished_at_kill["at start"] == 0 and finished_at_kill["1 query logged"] >= 1
    assert finished_at_kill["3 queries logged"] >= 3
    assert finished_at_kill["every query logged, record not written"] == len(QUERIES)
    print(f"[reliability] eval: {len(kills)} kill moments from {kills[0].at_s:.2f} s to {kills[-1].at_s:.2f} s; "
          f"every resume: {len(QUERIES)} queries once each, metrics and rankings as uninterrupted")
