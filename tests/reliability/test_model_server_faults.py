"""A model server that misbehaves, under a whole search (real Chroma gallery, the openai SDK over real HTTP to the
fake server): it refuses connections, hangs, rate-limits with Retry-After, fails with 500, answers invalid JSON,
JSON of the wrong shape, or no choices. Each time the search finishes with a ranking, every stage that needed the
model is marked degraded with the reason, and the time is bounded. An endpoint found unreachable is asked once:
the later stages degrade at once instead of each waiting out its own timeouts."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from cirgraph.testing.fake_openai import Fault, FakeOpenAIServer
from cirgraph.testing.toy_pipeline import (CAPTION_KEY, DECOMPOSE_KEY, RECOMPOSE_KEY, REFLECT_KEY, RERANK_KEY,
                                           recompose_reply)
from tests.reliability.conftest import chat_client, new_reference, retriever, stopwatch

# Without a caption, recompose has nothing to rewrite and searches for the modification text: no model call.
LLM_STAGES = {"caption_reference", "decompose", "rerank"}
RULES = {CAPTION_KEY: "a blue dress on a hanger", RECOMPOSE_KEY: recompose_reply(["a red dress on a hanger"]),
         DECOMPOSE_KEY: {"propositions": []}, RERANK_KEY: {"answers": []},
         REFLECT_KEY: {"diagnosis": "", "descriptions": ["a red dress"]}}

# fault -> (what it serves, the stages it degrades, a pattern every degradation reason matches, seconds at most)
FAULTS = {
    "refuses": (None, LLM_STAGES, r"cannot reach http://127\.0\.0\.1", 2.0),
    "hangs": (Fault.hanging(), LLM_STAGES, r"no answer from http://127\.0\.0\.1:\d+/v1 within 1 s", 3.5),
    "429 Retry-After": (Fault.rate_limited(0.3), LLM_STAGES, r"HTTP 429", 4.0),
    "500": (Fault(status=500), LLM_STAGES, r"HTTP 500", 3.0),
    "invalid JSON": (Fault("invalid_json"), LLM_STAGES, r"not valid JSON|not a JSON object", 3.0),
    # a caption is free text, so only the structured stages can tell that the reply has the wrong shape
    "schema mismatch": (Fault("content", content='{"unexpected": true}'), {"recompose", "decompose", "rerank"},
                        r"not a valid", 3.0),
    "empty choices": (Fault("empty_choices"), LLM_STAGES, r"no choices", 3.0),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_a_search_against_a_faulty_server_finishes_degraded_in_bounded_time(name: str, chroma_gallery,
                                                                            tmp_path: Path) -> None:
    gallery, images = chroma_gallery
    fault, stages, pattern, bound = FAULTS[name]
    reference = new_reference(images, tmp_path)
    with FakeOpenAIServer(RULES) as server:
        model = chat_client(server.base_url)
        if fault is None:
            server.stop()  # nothing listens on the port: every connection is refused
        else:
            server.inject(fault, times=10_000)
        with retriever(gallery, model) as search, stopwatch(f"search, server {name}") as figures:
            result = search.search(reference, "make it red", k=5)
            figures["requests"] = len(server.chat_requests)
    assert len(result.hits) == 5  # a ranking all the same
    degraded = {d["stage"]: d["reason"] for d in result.degraded}
    assert set(degraded) == stages, result.degraded
    for stage, reason in degraded.items():
        assert re.search(pattern, reason), f"{stage}: {reason}"
    assert figures["seconds"] < bound


def test_a_hanging_server_costs_one_call_s_timeouts_not_one_per_stage(chroma_gallery, tmp_path: Path) -> None:
    """Timeout 1 s, 2 attempts: the caption call waits out its two attempts, then every later stage (decompose,
    ten rerank checks) degrades at once; before, each waited out its own, 6 s and more."""
    gallery, images = chroma_gallery
    with FakeOpenAIServer(default=Fault.hanging()) as server:
        model = chat_client(server.base_url, timeout=1.0, max_retries=2)
        with retriever(gallery, model) as search, stopwatch("search, hanging server, timeout 1 s x 2") as figures:
            result = search.search(new_reference(images, tmp_path), "make it red", k=5)
            figures["requests"] = len(server.chat_requests)
    assert {d["stage"] for d in result.degraded} == LLM_STAGES
    assert figures["requests"] == 2  # the caption's two attempts, nothing after
    later = [d["reason"] for d in result.degraded if d["stage"] != "caption_reference"]
    assert all("not asked again" in r and "within 1 s" in r for r in later), later
    assert figures["seconds"] < 3.0


def test_the_next_search_after_the_hold_asks_the_endpoint_again(chroma_gallery, tmp_path: Path) -> None:
    """A server that was down and came back: once the hold is over the next search uses it normally."""
    from cirgraph.tools.health import EndpointHealth

    gallery, images = chroma_gallery
    with FakeOpenAIServer(RULES) as server:
        model = chat_client(server.base_url, health=EndpointHealth(hold_s=0.5))
        server.stop()
        with retriever(gallery, model) as search:
            down = search.search(new_reference(images, tmp_path), "make it red", k=5)
            server.start()
            time.sleep(0.6)
            up = search.search(new_reference(images, tmp_path), "make it red", k=5)
    assert {d["stage"] for d in down.degraded} == LLM_STAGES
    assert up.degraded == [] and up.caption == "a blue dress on a hanger"
