"""rerank verdicts and the reflect loop: reordering, concurrency, caption-only checks, the loop bound, the stop rule."""

from __future__ import annotations

import asyncio

import pytest

from cirgraph.agents.presets import preset
from cirgraph.testing.toy_pipeline import REFLECT_KEY, RERANK_KEY


async def test_verdicts_reorder_the_verified_head(world) -> None:
    # retrieval puts red-dress first; the verifier only accepts green-dress
    llm, vlm = world.models(good={"green-dress"})
    res = await world.retriever("rerank", models=(llm, vlm)).asearch(world.path("blue-dress"), "make it red", k=7)
    assert res.ids[0] == "green-dress"
    assert res.hits[0].verdict == pytest.approx(0.95) and res.hits[1].verdict == pytest.approx(0.05)
    assert res.hits[0].retrieval_score < res.hits[1].retrieval_score
    assert vlm.calls == 1 + 7 and llm.calls == 2  # caption + one check per candidate; recompose + decompose


async def test_rerank_depth_limits_the_checks_and_the_tail_keeps_retrieval_order(world) -> None:
    llm, vlm = world.models(good={"white-cat"})
    res = await world.retriever(preset("rerank", rerank_depth=2, k=6), models=(llm, vlm)).asearch(
        world.path("blue-dress"), "make it red")
    assert vlm.calls == 1 + 2
    assert [h.verdict is not None for h in res.hits] == [True, True, False, False, False, False]
    tail = res.hits[2:]
    assert [h.retrieval_score for h in tail] == sorted((h.retrieval_score for h in tail), reverse=True)
    assert max(h.score for h in tail) <= min(h.score for h in res.hits[:2])


async def test_pairwise_checks_send_the_reference_before_the_candidate(world) -> None:
    llm, vlm = world.models()
    await world.retriever(preset("rerank", rerank_depth=1), models=(llm, vlm)).asearch(world.path("blue-dress"), "red")
    check = next(m for m, _ in vlm.requests if RERANK_KEY in m[0].text)
    assert len(check[0].images) == 2 and "first a reference image" in check[0].text
    llm, vlm = world.models()
    await world.retriever(preset("rerank", rerank_depth=1, rerank_with_reference=False), models=(llm, vlm)).asearch(
        world.path("blue-dress"), "red")
    check = next(m for m, _ in vlm.requests if RERANK_KEY in m[0].text)
    assert len(check[0].images) == 1


async def test_checks_run_concurrently(world) -> None:
    llm, vlm = world.models(delay_s=0.1)
    inner, state = vlm.complete, {"now": 0, "peak": 0}

    async def counting(messages, **kwargs):
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        try:
            return await inner(messages, **kwargs)
        finally:
            state["now"] -= 1

    vlm.complete = counting
    await world.retriever(preset("rerank", rerank_depth=7), models=(llm, vlm)).asearch(world.path("blue-dress"), "red")
    assert state["peak"] == 7  # every check in flight at once (the client bounds this, not the pipeline)


async def test_caption_only_gallery_is_checked_by_the_llm_on_captions(caption_world) -> None:
    shirt = (("the shirt is red", "must_show", "Is the shirt red?"),
             ("a blue shirt", "must_not_show", "Is the shirt blue?"))
    llm, vlm = caption_world.models(good={"red-shirt"}, descriptions=["a red shirt"], propositions=shirt)
    res = await caption_world.retriever("rerank", models=(llm, vlm)).asearch("blue-shirt", "make it red", k=3)
    assert res.ids[0] == "red-shirt" and res.verdicts["red-shirt"]["mode"] == "caption"
    assert res.hits[0].verdict == pytest.approx(0.95) and res.hits[1].verdict == pytest.approx(0.05)
    assert vlm.calls == 0  # gallery captions skip captioning; no images to look at
    check = next(m for m, _ in llm.requests if RERANK_KEY in m[0].text)
    assert "cannot see the candidate image" in check[0].text and not check[0].images


async def test_reflect_stops_when_the_best_candidate_is_confident(world) -> None:
    llm, vlm = world.models(good={"red-dress"})
    res = await world.retriever("reflect", models=(llm, vlm)).asearch(world.path("blue-dress"), "make it red")
    assert (res.rounds, res.stop_reason) == (1, "confident")
    assert not any(REFLECT_KEY in m[0].text for m, _ in llm.requests)
    assert res.reflections == [{"round": 1, "confidence": pytest.approx(0.95), "decision": "stop: confident"}]


async def test_the_loop_is_bounded_by_max_rounds_in_state(world) -> None:
    llm, vlm = world.models(good=set(), revision=["a bright red dress"])
    r = world.retriever(preset("reflect", max_rounds=3), models=(llm, vlm))
    res = await r.asearch(world.path("blue-dress"), "make it red")
    assert res.rounds == 3 and res.stop_reason == "max_rounds"
    assert res.stages_run == ["caption_reference", "recompose", "decompose"] + ["retrieve", "rerank", "reflect"] * 3
    assert sum(REFLECT_KEY in m[0].text for m, _ in llm.requests) == 2
    assert res.queries == ["a bright red dress"] and res.description_source == "reflect"
    assert [r_["decision"] for r_ in res.reflections] == ["revise", "revise", "stop: max_rounds"]
    assert res.reflections[0]["failures"][0]["text"] == "the dress is red"
    # verdicts are kept by candidate: later rounds re-check nothing already checked
    assert sum(RERANK_KEY in m[0].text for m, _ in vlm.requests) == 7


async def test_stop_threshold_is_inclusive(world) -> None:
    llm, vlm = world.models(good={"red-dress"})
    exact = preset("reflect", stop_threshold=0.95)
    res = await world.retriever(exact, models=(llm, vlm)).asearch(world.path("blue-dress"), "red")
    assert res.stop_reason == "confident"
    llm, vlm = world.models(good={"red-dress"})
    above = preset("reflect", stop_threshold=0.96, max_rounds=2)
    res = await world.retriever(above, models=(llm, vlm)).asearch(world.path("blue-dress"), "red")
    assert (res.rounds, res.stop_reason) == (2, "max_rounds")


async def test_max_rounds_one_never_loops(world) -> None:
    llm, vlm = world.models(good=set())
    res = await world.retriever(preset("reflect", max_rounds=1), models=(llm, vlm)).asearch(
        world.path("blue-dress"), "red")
    assert (res.rounds, res.stop_reason) == (1, "max_rounds")


def test_concurrent_searches_keep_their_own_accounts(world) -> None:
    llm, vlm = world.models(good={"red-dress"}, delay_s=0.01)
    r = world.retriever("reflect", models=(llm, vlm))
    results = asyncio.run(r.asearch_many([(world.path("blue-dress"), "make it red")] * 6, concurrency=3))
    assert all(res.ids[0] == "red-dress" for res in results)
    assert sum(res.usage["calls"] for res in results) == llm.calls + vlm.calls
