"""End to end through the compiled graph: which stages run, which calls are made, what the result explains."""

from __future__ import annotations

import numpy as np
import pytest

from cirgraph.agents.fusion import mean_direction
from cirgraph.agents.graph import build_graph
from cirgraph.agents.presets import preset
from cirgraph.agents.query import build_input
from cirgraph.testing.toy_pipeline import CAPTION_KEY, RECOMPOSE_KEY


async def test_the_compiled_graph_runs_the_full_pipeline(world) -> None:
    llm, vlm = world.models()
    graph = build_graph(world.services(llm, vlm))
    inputs = build_input(world.path("blue-dress"), "make it red", world.gallery, max_rounds=2)
    state = await graph.ainvoke(inputs, context=preset("reflect", k=3))
    assert [t["stage"] for t in state["trace"]] == [
        "caption_reference", "recompose", "decompose", "retrieve", "rerank", "reflect"]
    assert state["caption"] == "a blue dress on a hanger" and state["caption_source"] == "model"
    assert state["descriptions"] == ["a red dress", "a red dress on a hanger"]
    assert [p["polarity"] for p in state["propositions"]] == ["must_show", "must_not_show"]
    assert state["hits"][0]["id"] == "red-dress" and state["stop_reason"] == "confident"
    assert "blue-dress" not in [h["id"] for h in state["hits"]]  # the reference, given as a file


async def test_result_explains_everything(world) -> None:
    r = world.retriever("reflect")
    res = await r.asearch(world.path("blue-dress"), "make it red", k=3)
    assert res.ids[0] == "red-dress" and len(res.hits) == 3
    top = res.hits[0]
    assert set(top.components) == {"text_image", "text_caption", "modification", "reference", "propositions"}
    assert top.verdict == pytest.approx(0.95) and top.uri.endswith("red-dress.png")
    assert res.verdicts["red-dress"]["mode"] == "image"
    assert [a["holds"] for a in res.verdicts["red-dress"]["answers"]] == [0.95, 0.95]
    assert res.rounds == 1 and res.stop_reason == "confident" and res.degraded == []
    assert set(res.prompts) == {"caption", "recompose", "decompose", "rerank"}
    assert res.prompts["recompose"]["template"] == "recompose/multi" and len(res.prompts["recompose"]["sha"]) == 12
    calls = {s["stage"]: s["calls"] for s in res.stages}
    assert calls == {"caption_reference": 1, "recompose": 1, "decompose": 1, "retrieve": 0, "rerank": 7, "reflect": 0}
    assert res.usage["calls"] == 10 and res.usage["prompt_tokens"] == 100
    assert set(res.latency) == {*calls, "total"}
    out = res.to_dict()
    assert out["results"][0]["id"] == "red-dress" and out["explanation"]["config"]["preset"] == "reflect"
    assert out["explanation"]["excluded"]  # the reference file was found in the gallery and left out


def _manual_cirevl(world, description: str, exclude: str) -> list[str]:
    q = mean_direction(world.embedder.embed_texts([description]))
    embs = world.gallery.image_embeddings(world.gallery.ids)
    scores = {i: float(e @ q) for i, e in embs.items() if i != exclude}
    return sorted(scores, key=lambda i: (-scores[i], i))


async def test_the_cirevl_preset_is_cirevl_exactly(world) -> None:
    llm, vlm = world.models(descriptions=["a red dress on a hanger"])
    r = world.retriever("cirevl", models=(llm, vlm))
    res = await r.asearch(world.path("blue-dress"), "make it red", k=5)
    assert res.stages_run == ["caption_reference", "recompose", "retrieve"]
    assert (vlm.calls, llm.calls) == (1, 1)
    assert CAPTION_KEY in vlm.requests[0][0][0].text and RECOMPOSE_KEY in llm.requests[0][0][0].text
    assert res.prompts["recompose"]["template"] == "recompose/plain"
    assert res.weights == {"text_image": 1.0}
    assert res.queries == ["a red dress on a hanger"]
    assert res.ids == _manual_cirevl(world, "a red dress on a hanger", "blue-dress")[:5]
    assert all(set(h.components) == {"text_image"} for h in res.hits)


@pytest.mark.parametrize(("name", "query"), [
    ("modification-only", "make it red"),
    ("caption-only", "a blue dress on a hanger"),
    ("caption+modification", "a blue dress on a hanger. make it red"),
])
async def test_no_llm_baselines_search_the_plain_texts(world, name: str, query: str) -> None:
    llm, vlm = world.models()
    r = world.retriever(name, models=(llm, vlm))
    res = await r.asearch(world.path("blue-dress"), "make it red")
    assert res.queries == [query] and llm.calls == 0
    assert vlm.calls == (0 if name == "modification-only" else 1)
    assert res.stages_run == (["retrieve"] if name == "modification-only" else ["caption_reference", "retrieve"])
    assert res.weights == pytest.approx({"text_image": 1 / 1.5, "text_caption": 0.5 / 1.5})


async def test_multi_description_ensembles_every_description(world) -> None:
    llm, vlm = world.models(descriptions=["a red dress", "a red dress on a hanger", "a long red dress", "x"])
    res = await world.retriever("multi-description", models=(llm, vlm)).asearch(world.path("blue-dress"), "red")
    assert res.descriptions == ["a red dress", "a red dress on a hanger", "a long red dress"]  # n_descriptions=3
    assert res.queries == res.descriptions and res.ids[0] == "red-dress"


async def test_a_known_caption_skips_the_vision_model(world) -> None:
    llm, vlm = world.models()
    r = world.retriever("cirevl", models=(llm, vlm))
    given = await r.asearch(world.path("blue-dress"), "make it red", caption="a blue frock")
    assert (given.caption, given.caption_source, vlm.calls) == ("a blue frock", "given", 0)
    assert "a blue frock" in llm.requests[0][0][0].text
    from_gallery = await r.asearch("blue-dress", "make it red")
    assert (from_gallery.caption_source, vlm.calls) == ("gallery", 0)
    assert "caption_reference" not in from_gallery.stages_run


async def test_captions_are_cached_by_image_model_and_prompt(world) -> None:
    llm, vlm = world.models()
    r = world.retriever("cirevl", models=(llm, vlm))
    first = await r.asearch(world.path("blue-dress"), "make it red")
    again = await r.asearch(world.path("blue-dress").read_bytes(), "make it longer")
    assert (first.caption_source, again.caption_source, vlm.calls) == ("model", "cache", 1)
    other_prompt = await r.asearch(world.path("blue-dress"), "red", config=preset("cirevl", caption_prompt="brief"))
    assert other_prompt.caption_source == "model" and vlm.calls == 2


async def test_stream_yields_each_stage_then_the_result(world) -> None:
    r = world.retriever("rerank")
    events = [e async for e in r.astream(world.path("blue-dress"), "make it red", k=2)]
    assert [name for name, _ in events] == [
        "caption_reference", "recompose", "decompose", "retrieve", "rerank", "result"]
    assert "descriptions" in events[1][1] and "hits" in events[3][1]
    assert events[-1][1].ids[0] == "red-dress"


async def test_reference_exclusion_by_id_hash_and_duplicate(world) -> None:
    r = world.retriever("modification-only")
    by_id = await r.asearch("red-dress", "a red dress on a hanger", k=8)
    by_file = await r.asearch(world.path("red-dress"), "a red dress on a hanger", k=8)
    assert "red-dress" not in by_id.ids and "red-dress" not in by_file.ids
    assert len(by_id.ids) == len(by_file.ids) == 7
    assert by_file.excluded[-1] == "red-dress"  # found as an exact image duplicate of the file
    assert np.isclose(by_id.hits[0].score, by_file.hits[0].score)


async def test_score_ids_below_k_come_back_in_rank_order_after_rerank(world) -> None:
    """The tail continues the ranking: reranked hits past k first, then the rest by retrieval score."""
    r = world.retriever("rerank")
    everything = await r.asearch(world.path("blue-dress"), "make it red", k=20)
    asked = [h.id for h in everything.hits][1:]
    res = await r.asearch(world.path("blue-dress"), "make it red", k=1, score_ids=asked[::-1] + ["no-such-item"])
    assert res.ids == everything.ids[:1]
    assert res.tail == asked  # the order a deep search has, whatever order they were asked in
    assert res.to_dict()["explanation"]["tail"] == asked


async def test_score_ids_must_be_gallery_id_strings(world) -> None:
    from cirgraph.errors import InputError

    with pytest.raises(InputError, match="score_ids"):
        await world.retriever("cirevl").asearch(world.path("blue-dress"), "make it red", score_ids="red-dress")
