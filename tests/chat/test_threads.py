"""Conversations: many threads at once never mix, a failed turn leaves its thread usable, checkpoints hold plain
JSON and only the conversation (the retrieval graph is not checkpointed inside it), and threads know their gallery."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cirgraph.agents.query import GalleryRef
from cirgraph.chat.session import ChatSession
from cirgraph.chat.store import ChatStore, ThreadNotFound
from cirgraph.chat.threads import Conversations
from cirgraph.errors import ImageError, InputError

from .conftest import COLOURS, World

STARTS = ("blue-dress", "red-dress", "green-dress", "blue-shirt", "red-shirt", "black-dog", "white-dog", "white-cat")


def plan(i: int) -> tuple[str, str, str]:
    """Session i's start item and its two messages, different from its neighbours'."""
    return STARTS[i % len(STARTS)], f"make it {COLOURS[i % 5]}", f"now {COLOURS[(i + 2) % 5]}"


def check_thread(turns: list[dict], i: int) -> None:
    start, first, second = plan(i)
    assert [t["text"] for t in turns] == [first, second]
    assert turns[0]["reference"] == {"kind": "gallery", "id": start}
    assert turns[1]["context"] == turns[0]["description"]
    assert COLOURS[(i + 2) % 5] in turns[1]["description"].split()


def test_twenty_simultaneous_threads_never_mix(tmp_path: Path, store: ChatStore) -> None:
    world = World(tmp_path, delay_s=0.01)  # model calls yield to the loop, so turns of all threads interleave
    conv = Conversations(store, world.retriever)

    async def one(i: int) -> None:
        start, first, second = plan(i)
        await conv.send(f"s{i}", first, image=GalleryRef(start), create=True)
        await conv.send(f"s{i}", second)

    async def run() -> None:
        await asyncio.gather(*(one(i) for i in range(20)))
        for i in range(20):
            check_thread((await conv.require(f"s{i}"))["turns"], i)

    asyncio.run(run())
    assert world.llm.calls == 40


def test_twenty_sessions_on_threads_never_mix(tmp_path: Path) -> None:
    """Sync sessions on their own threads and loops, each with its own SQLite connection to one file."""
    world = World(tmp_path, delay_s=0.01)
    path = tmp_path / "shared.sqlite"

    def one(i: int) -> list[dict]:
        start, first, second = plan(i)
        with ChatStore(path) as store, ChatSession(f"u{i}", retriever=world.retriever, store=store) as chat:
            chat.send(first, image=GalleryRef(start))
            chat.send(second)
            return [t.to_dict() for t in chat.history()]

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, range(20)))
    for i, turns in enumerate(results):
        check_thread(turns, i)


def test_turns_of_one_thread_run_one_at_a_time(tmp_path: Path, store: ChatStore) -> None:
    world = World(tmp_path, delay_s=0.01)
    conv = Conversations(store, world.retriever)

    async def run() -> list[dict]:
        await conv.send("same", "make it red", image=GalleryRef("blue-dress"), create=True)
        await asyncio.gather(*(conv.send("same", f"now {c}") for c in ("green", "black", "white")))
        return (await conv.require("same"))["turns"]

    turns = asyncio.run(run())
    assert [t["n"] for t in turns] == [1, 2, 3, 4]
    for before, after in zip(turns, turns[1:]):  # each turn started from the one before it, none was lost
        assert after["context"] == before["description"]


def test_a_failed_turn_leaves_the_thread_usable(conversations: Conversations, world) -> None:
    async def run() -> list[dict]:
        first = await conversations.send("f", "make it red", image=world.image("blue-dress"), create=True)
        conversations.store.upload_path(first["reference"]["hash"]).unlink()  # the upload vanished
        with pytest.raises(ImageError, match="not stored"):
            await conversations.send("f", "with long sleeves")
        await conversations.send("f", "make it black", image=world.image("white-dog"))
        return (await conversations.require("f"))["turns"]

    turns = asyncio.run(run())
    assert [t["text"] for t in turns] == ["make it red", "make it black"]


def test_checkpoints_hold_only_plain_conversation_state(conversations: Conversations, world, store) -> None:
    asyncio.run(conversations.send("plain", "make it red", image=world.image("blue-dress"), create=True))
    rows = store.saver.conn.execute("SELECT DISTINCT thread_id, checkpoint_ns FROM checkpoints").fetchall()
    assert rows == [("plain", "")]  # the retrieval graph did not checkpoint itself into the thread
    values = store.saver.get_tuple({"configurable": {"thread_id": "plain"}}).checkpoint["channel_values"]
    assert json.loads(json.dumps(values["turns"])) == values["turns"]
    assert set(values) >= {"gallery", "turns", "action"}


def test_threads_belong_to_their_gallery(tmp_path: Path, store: ChatStore) -> None:
    shop, pets = World(tmp_path / "a", name="shop"), World(tmp_path / "b", name="pets")
    conv = Conversations(store, {"shop": shop.retriever, "pets": pets.retriever})

    async def run() -> None:
        created = await conv.create(gallery="pets")
        assert created["gallery"] == "pets"
        with pytest.raises(InputError, match="belongs to gallery 'pets'"):
            await conv.create(created["thread_id"], gallery="shop")
        with pytest.raises(InputError, match="not served here"):
            await conv.create(gallery="nope")
        with pytest.raises(ThreadNotFound):
            await conv.send("missing", "make it red", image=GalleryRef("blue-dress"))
        turn = await conv.send(created["thread_id"], "make it black", image=GalleryRef("white-dog"))
        assert turn["hits"][0]["id"] == "black-dog"

    asyncio.run(run())
    assert pets.llm.calls == 1 and shop.llm.calls == 0


def test_bad_thread_ids_are_refused(conversations: Conversations) -> None:
    for bad in ("", "../x", "a/b", "x" * 200, " space"):
        with pytest.raises(InputError, match="thread id"):
            asyncio.run(conversations.get(bad))
