"""The SDK object: reference kinds, sync/async, per-call overrides, bounded batch concurrency."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from PIL import Image

from cirgraph.agents.query import GalleryRef
from cirgraph.errors import ConfigError, InputError
from cirgraph.retriever import Query, Retriever
from cirgraph.testing.memory_gallery import build_toy_gallery
from cirgraph.testing.toy_pipeline import toy_models


class InFlight:
    """Wraps a ChatModel and records the most calls in flight at once."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.now, self.peak = inner, inner.name, 0, 0

    async def complete(self, messages, **kwargs):
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            return await self.inner.complete(messages, **kwargs)
        finally:
            self.now -= 1


@pytest.fixture
def toy(tmp_path: Path):
    gallery, embedder, text_embedder = build_toy_gallery(tmp_path / "images")
    llm, vlm = toy_models(gallery, embedder, delay_s=0.02)
    llm, vlm = InFlight(llm), InFlight(vlm)
    retriever = Retriever(gallery=gallery, llm=llm, vlm=vlm, embedder=embedder, text_embedder=text_embedder,
                          config="cirevl")
    yield retriever, tmp_path / "images", llm, vlm
    retriever.close()


def test_every_kind_of_reference(toy) -> None:
    r, images, _, _ = toy
    path = images / "blue-dress.png"
    kinds = [str(path), path, path.read_bytes(), Image.open(path), "blue-dress", GalleryRef("blue-dress")]
    results = [r.search(ref, "make it red", k=3) for ref in kinds]
    assert all(res.ids[0] == "red-dress" and "blue-dress" not in res.ids for res in results)
    assert [res.reference["id"] for res in results] == [None] * 4 + ["blue-dress"] * 2


def test_per_call_k_and_config(toy) -> None:
    r, images, llm, _ = toy
    res = r.search(images / "blue-dress.png", "make it red", k=2, config="modification-only")
    assert len(res.hits) == 2 and res.config["preset"] == "modification-only" and llm.inner.calls == 0
    assert r.config.preset == "cirevl"  # the retriever's own configuration is untouched


def test_sync_search_works_inside_a_running_event_loop(toy) -> None:
    r, images, _, _ = toy

    async def caller():
        return r.search(images / "blue-dress.png", "make it red", k=1)

    assert asyncio.run(caller()).ids == ["red-dress"]


def test_search_many_keeps_order_and_bounds_concurrency(toy) -> None:
    r, images, llm, _ = toy
    queries = [Query(images / "blue-dress.png", t) for t in ("a red dress", "a white cat", "a black dog")] * 3
    results = r.search_many(queries, concurrency=2, config="modification-only")
    assert [res.ids[0] for res in results] == ["red-dress", "white-cat", "black-dog"] * 3
    results = r.search_many([{"reference": f"{c}-dress", "text": "make it red"} for c in ("blue", "green")] * 4,
                            concurrency=3)
    assert len(results) == 8 and 1 < llm.peak <= 3


def test_search_many_isolates_failures_when_asked(toy) -> None:
    r, _, _, _ = toy
    batch = [("blue-dress", "a red dress"), ("blue-dress", ""), ("no-such-item", "red")]
    out = r.search_many(batch, config="modification-only", return_exceptions=True)
    assert out[0].ids[0] == "red-dress" and isinstance(out[1], InputError) and isinstance(out[2], InputError)
    with pytest.raises(InputError, match="modification text"):
        r.search_many(batch, config="modification-only")
    with pytest.raises(InputError, match="concurrency"):
        r.search_many(batch, concurrency=0)


def test_batch_concurrency_overlaps_model_calls(tmp_path: Path) -> None:
    gallery, embedder, text_embedder = build_toy_gallery(tmp_path / "images")
    llm, vlm = toy_models(gallery, embedder, delay_s=0.2)
    llm = InFlight(llm)
    with Retriever(gallery=gallery, llm=llm, vlm=vlm, embedder=embedder, text_embedder=text_embedder,
                   config="cirevl") as r:
        r.search_many([("blue-dress", "make it red")] * 8, concurrency=8)  # one recompose call each
    assert llm.peak == 8


def test_config_errors_name_the_problem(toy) -> None:
    r, _, _, _ = toy
    with pytest.raises(InputError, match="unknown; choose one of"):
        r.search("blue-dress", "red", config="fastest")
    with pytest.raises(ConfigError, match="expected a PipelineConfig"):
        r.search("blue-dress", "red", config=3)  # type: ignore[arg-type]


def test_from_settings_without_a_factory_is_a_config_error(monkeypatch) -> None:
    import cirgraph

    monkeypatch.setitem(sys.modules, "cirgraph.clients", None)  # as if the module did not exist
    monkeypatch.delattr(cirgraph, "clients", raising=False)
    with pytest.raises(ConfigError, match=r"cirgraph\.clients"):
        Retriever.from_settings()


def test_the_package_exports_the_sdk() -> None:
    import cirgraph

    assert cirgraph.Retriever is Retriever
    assert cirgraph.SearchResult.__name__ == "SearchResult"


def test_a_search_inside_another_graph_leaves_that_graph_s_checkpointer_alone(toy) -> None:
    """Run from a node of a checkpointed graph (as the chat's conversation graph does), the pipeline saves none of
    its own state (reference image bytes included) into that graph's checkpointer."""
    from typing import TypedDict

    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph

    r, images, _, _ = toy

    class Outer(TypedDict, total=False):
        ids: list[str]

    async def search(state: Outer) -> Outer:
        return {"ids": (await r.asearch(images / "blue-dress.png", "make it red", k=3)).ids}

    saver = InMemorySaver()
    builder = StateGraph(Outer)
    builder.add_node("search", search)
    builder.add_edge(START, "search")
    builder.add_edge("search", END)
    out = asyncio.run(builder.compile(checkpointer=saver).ainvoke({}, {"configurable": {"thread_id": "t"}}))
    assert out["ids"][0] == "red-dress"
    assert {c.config["configurable"]["checkpoint_ns"] for c in saver.list(None)} == {""}  # the outer graph's only
