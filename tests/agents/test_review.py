"""Human in the loop: pause after recompose, edit the description, resume (in memory and from SQLite)."""

from __future__ import annotations

import warnings

import pytest

from cirgraph.agents.presets import preset
from cirgraph.errors import InputError

REVIEW = preset("cirevl", review=True)


async def test_pause_after_recompose_and_resume_with_an_edit(world) -> None:
    llm, vlm = world.models(descriptions=["a red dress"])
    r = world.retriever(REVIEW, models=(llm, vlm))
    paused = await r.asearch(world.path("blue-dress"), "make it red")
    assert paused.pending is not None and paused.hits == [] and paused.stop_reason == "paused"
    assert paused.pending.descriptions == ["a red dress"] and paused.pending.caption == "a blue dress on a hanger"
    assert paused.stages_run == ["caption_reference", "recompose"]
    done = await r.aresume(paused.pending.thread_id, "a green dress on a hanger")
    assert done.pending is None and done.ids[0] == "green-dress"
    assert done.queries == ["a green dress on a hanger"] and done.description_source == "human"
    assert done.stages_run == ["caption_reference", "recompose", "review_description", "retrieve"]
    assert (vlm.calls, llm.calls) == (1, 1) and done.usage["calls"] == 2  # nothing re-ran on resume


async def test_resume_without_an_edit_keeps_the_description(world) -> None:
    r = world.retriever(REVIEW, models=world.models(descriptions=["a red dress"]))
    paused = await r.asearch(world.path("blue-dress"), "make it red")
    done = await r.aresume(paused.pending.thread_id, None)
    assert done.queries == ["a red dress"] and done.description_source == "recompose" and done.ids[0] == "red-dress"


async def test_a_bad_edit_is_refused_and_the_run_stays_paused(world) -> None:
    r = world.retriever(REVIEW, models=world.models(descriptions=["a red dress"]))
    paused = await r.asearch(world.path("blue-dress"), "make it red")
    with pytest.raises(InputError, match="review answer"):
        await r.aresume(paused.pending.thread_id, 42)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="empty"):
        await r.aresume(paused.pending.thread_id, ["  "])
    done = await r.aresume(paused.pending.thread_id, ["a white cat", "a white cat on a sofa"])
    assert done.queries == ["a white cat", "a white cat on a sofa"] and done.ids[0] == "white-cat"


async def test_resuming_an_unknown_or_finished_thread_is_an_input_error(world) -> None:
    r = world.retriever(REVIEW, models=world.models())
    with pytest.raises(InputError, match="no run is paused"):
        await r.aresume("nope")
    paused = await r.asearch(world.path("blue-dress"), "make it red")
    await r.aresume(paused.pending.thread_id)
    with pytest.raises(InputError, match="no run is paused"):
        await r.aresume(paused.pending.thread_id)


def test_sync_search_and_resume(world) -> None:
    r = world.retriever(REVIEW, models=world.models(descriptions=["a red dress"]))
    paused = r.search(world.path("blue-dress"), "make it red")
    assert r.resume(paused.pending.thread_id, "a black dog").ids[0] == "black-dog"


async def test_a_paused_run_resumes_from_sqlite_in_another_retriever(world, tmp_path) -> None:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    db = str(tmp_path / "checkpoints.sqlite")
    async with AsyncSqliteSaver.from_conn_string(db) as saver:
        first = world.retriever(REVIEW, checkpointer=saver, models=world.models(descriptions=["a red dress"]))
        paused = await first.asearch(world.path("blue-dress"), "make it red", thread_id="t-1")
    assert paused.pending.thread_id == "t-1"
    async with AsyncSqliteSaver.from_conn_string(db) as saver:
        llm, vlm = world.models()
        second = world.retriever(REVIEW, checkpointer=saver, models=(llm, vlm))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # plain-data state: no serializer allow-list warnings
            done = await second.aresume("t-1", "a white dog on a sofa", config=REVIEW)
    assert done.ids[0] == "white-dog" and done.caption == "a blue dress on a hanger"
    assert (llm.calls, vlm.calls) == (0, 0)
    assert done.stages_run[:2] == ["caption_reference", "recompose"]  # the first process's stages, from state
