"""The eval runner when its model endpoint goes away: it waits, probing with capped exponential back-off, reruns the
queries that were under way, and ends with the metrics of an undisturbed run; an endpoint that stays away stops the
run with an error naming it, and a rerun resumes after the finished queries."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cirgraph.agents.presets import preset
from cirgraph.evals.runner import EvalSpec, Models, Reporter, evaluate
from cirgraph.settings import Settings
from cirgraph.tools.hash_embedders import HashTextEmbedder
from cirgraph.testing.fake_openai import Fault, FakeOpenAIServer, echo_recompose
from cirgraph.tools.health import EndpointDown
from tests.reliability.conftest import chat_client, stopwatch

CIRR = Path(__file__).parents[1] / "evals" / "fixtures" / "cirr"
QUERIES = json.loads((CIRR / "captions" / "cap.rc2.val.json").read_text())


@pytest.fixture
def captions(tmp_path: Path) -> Path:
    names = json.loads((CIRR / "image_splits" / "split.rc2.val.json").read_text())
    table = {n: [f"an ordinary picture {i}"] for i, n in enumerate(names)}
    table.update({q["target_hard"]: [q["caption"].lower()] for q in QUERIES})
    path = tmp_path / "captions.json"
    path.write_text(json.dumps(table))
    return path


class Waits(Reporter):
    def __init__(self) -> None:
        self.pauses: list[float] = []

    def waiting(self, endpoint: str, reason: str, seconds: float) -> None:
        assert "fake-model" in endpoint and reason
        self.pauses.append(seconds)


def run(captions: Path, out: Path, server: FakeOpenAIServer, *, reporter: Reporter | None = None,
        **spec: Any) -> Any:
    spec = {"concurrency": 2, "outage_backoff": (0.05, 0.2), "max_outage_s": 10.0, **spec}
    models = Models(llm=chat_client(server.base_url, timeout=1.0, max_retries=2), text_embedder=HashTextEmbedder())
    settings = Settings(home=out.parent / f"home-{out.name}")  # its own call cache: every query asks the server
    return evaluate(EvalSpec("cirr", "val", CIRR, captions_file=captions, config=preset("cirevl"), out_dir=out,
                             **spec), settings, models=models, reporter=reporter)


def test_a_run_waits_for_an_endpoint_that_went_away_and_ends_as_an_undisturbed_run(tmp_path: Path,
                                                                                   captions: Path) -> None:
    with FakeOpenAIServer({'{"edits"': echo_recompose}, delay_s=0.05) as server:
        clean = run(captions, tmp_path / "clean", server)
        calls = {"n": 0}

        def outage(body: dict) -> Any:  # the second query's request finds the server dying; it is back 1 s later
            calls["n"] += 1
            if calls["n"] != 2:
                return echo_recompose(body)
            threading.Thread(target=lambda: (server.stop(), time.sleep(1.0), server.start()), daemon=True).start()
            return Fault("drop")

        server.rules = [('{"edits"', outage)]
        waits = Waits()
        with stopwatch("eval run, endpoint away for 1 s") as figures:
            record = run(captions, tmp_path / "outage", server, reporter=waits)
            figures.update(probes=len(waits.pauses), waited=sum(waits.pauses))
    assert record.counts == {**clean.counts} and record.counts["ok"] == len(QUERIES)
    assert record.counts["degraded"] == 0  # no query kept a result made while the endpoint was down
    assert record.metrics == clean.metrics and [q.ranking for q in record.queries] == [q.ranking for q in clean.queries]
    assert len(waits.pauses) >= 3 and waits.pauses[:3] == [0.05, 0.1, 0.2]  # doubling, capped at 0.2
    assert figures["seconds"] < 1.0 + 5.0  # the outage, and the run itself with room for a slow machine


def test_an_endpoint_that_stays_away_stops_the_run_and_a_rerun_resumes(tmp_path: Path, captions: Path) -> None:
    out = tmp_path / "run"
    with FakeOpenAIServer({'{"edits"': echo_recompose}) as server:
        clean = run(captions, tmp_path / "clean", server)
        calls = {"n": 0}

        def dies(body: dict) -> Any:
            calls["n"] += 1
            if calls["n"] == 3:
                threading.Thread(target=server.stop, daemon=True).start()
                return Fault("drop")
            return echo_recompose(body)

        server.rules = [('{"edits"', dies)]
        with stopwatch("eval run, endpoint gone for good, max_outage_s=0.5") as figures:
            with pytest.raises(EndpointDown, match=r"still unreachable after waiting .*a rerun resumes"):
                run(captions, out, server, max_outage_s=0.5, concurrency=1)
            finished = [json.loads(line)["id"] for line in (out / "queries.jsonl").read_text().splitlines()[1:]]
            figures["finished"] = len(finished)
        assert len(finished) == 2 and not (out / "record.json").exists()
        server.rules = [('{"edits"', echo_recompose)]
        server.start()
        resumed = run(captions, out, server)
    assert figures["seconds"] < 5
    assert resumed.counts["resumed"] == 2 and resumed.counts["ok"] == len(QUERIES)
    assert resumed.metrics == clean.metrics
