"""ChatSession: context carries from turn to turn, picks and new images change the reference, undo/reset, and a
thread survives a restart (new objects, new process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cirgraph.agents.query import GalleryRef
from cirgraph.chat.session import ChatSession
from cirgraph.chat.store import ChatStore
from cirgraph.errors import InputError

HERE = Path(__file__).resolve().parent


def recompose_captions(world) -> list[str]:
    """The caption each recompose request started from, in order (the first quoted line of the prompt)."""
    import re

    texts = ["\n".join(m.text for m in msgs) for msgs, _ in world.llm.requests]
    return [re.findall(r'^"(.*)"$', t, re.M)[0] for t in texts if '{"edits"' in t]


@pytest.fixture
def chat(world, store):
    session = ChatSession("t1", retriever=world.retriever, store=store, k=4)
    yield session
    session.close()


def test_each_turn_refines_the_previous_target(chat, world) -> None:
    first = chat.send("make it red", image=world.image("blue-dress"))
    assert (first.kind, first.n, first.description) == ("search", 1, "a red dress on a hanger")
    assert first.ids[0] == "red-dress" and first.reference["kind"] == "upload" and first.context is None
    second = chat.send("with long sleeves")
    assert second.context == first.description
    assert second.description == "a red dress on a hanger with long sleeves"
    third = chat.send("now as a shirt")
    assert third.description == "a red shirt on a hanger with long sleeves" and third.ids[0] == "red-shirt"
    # the uploaded reference stays; the caption each turn recomposed from is the previous target
    assert second.reference == first.reference == third.reference
    assert recompose_captions(world) == ["a blue dress on a hanger", first.description, second.description]
    assert [t.n for t in chat.history()] == [1, 2, 3]


def test_pick_by_number_or_by_phrase_starts_from_that_result(chat, world, store) -> None:
    first = chat.send("make it red", image=world.image("blue-dress"))
    picked = chat.send("but blue", pick=2)
    assert picked.pick == 2 and picked.reference == {"kind": "gallery", "id": first.ids[1]}
    assert picked.context is None and picked.explanation["caption_source"] == "gallery"
    assert picked.explanation["caption"] == world.gallery.captions[first.ids[1]][0]
    chat.undo()
    phrased = chat.send("the second one, but blue")
    assert (phrased.pick, phrased.modification, phrased.reference) == (2, "but blue", picked.reference)
    assert phrased.ids == picked.ids
    last = chat.send("#4")  # a pick alone selects a reference without searching
    assert last.kind == "select" and last.hits == [] and last.reference["id"] == phrased.ids[3]


def test_bad_picks_and_missing_references_change_nothing(chat, world) -> None:
    with pytest.raises(InputError, match="first message needs a reference"):
        chat.send("make it red")
    with pytest.raises(InputError, match="no results to pick from"):
        chat.send("blue", pick=1)
    chat.send("make it red", image=world.image("blue-dress"))
    with pytest.raises(InputError, match="numbered 1 to 4"):
        chat.send("blue", pick=9)
    with pytest.raises(InputError, match="not both"):
        chat.send("blue", pick=1, image=world.image("white-cat"))
    with pytest.raises(InputError, match="text: is empty"):
        chat.send("   ")
    assert [t.n for t in chat.history()] == [1]


def test_select_turns_set_the_reference_without_searching(chat, world) -> None:
    calls = world.llm.calls + world.vlm.calls
    turn = chat.send(image=GalleryRef("white-dog"))
    assert turn.kind == "select" and turn.hits == [] and world.llm.calls + world.vlm.calls == calls
    after = chat.send("a black one")
    assert after.reference == {"kind": "gallery", "id": "white-dog"}
    assert after.description == "a black dog running on grass" or after.description.startswith("a black dog")
    assert after.ids[0] == "black-dog"


def test_a_new_image_starts_afresh(chat, world) -> None:
    chat.send("make it red", image=world.image("blue-dress"))
    fresh = chat.send("make it black", image=world.image("white-dog"))
    assert fresh.context is None and fresh.reference["name"] == "white-dog.png"
    # the new image is captioned afresh (the toy captioner calls everything a blue dress), not the red target
    assert fresh.explanation["caption_source"] != "given"
    assert recompose_captions(world)[-1] == "a blue dress on a hanger"
    assert fresh.description == "a black dress on a hanger"


def test_undo_and_reset(chat, world) -> None:
    first = chat.send("make it red", image=world.image("blue-dress"))
    chat.send("as a shirt")
    removed = chat.undo()
    assert removed.n == 2 and [t.n for t in chat.history()] == [1]
    again = chat.send("with long sleeves")
    assert again.n == 2 and again.context == first.description
    chat.reset()
    assert chat.history() == []
    with pytest.raises(InputError, match="first message needs a reference"):
        chat.send("make it blue")
    with pytest.raises(InputError, match="no turn to undo"):
        chat.undo()


def test_streaming_yields_stages_then_the_turn(chat, world) -> None:
    import asyncio

    async def run() -> list[tuple[str, object]]:
        return [(kind, payload) async for kind, payload in chat.astream("make it red", world.image("blue-dress"))]

    events = asyncio.run(run())
    assert [p[0] for k, p in events if k == "stage"] == ["caption_reference", "recompose", "retrieve"]
    assert events[-1][0] == "turn" and events[-1][1].ids[0] == "red-dress"
    seen = []
    chat.send("with long sleeves", on_stage=lambda stage, update: seen.append(stage))
    assert seen == ["recompose", "retrieve"]


def test_resume_with_new_objects_on_the_same_file(world, tmp_path: Path) -> None:
    path = tmp_path / "restart" / "checkpoints.sqlite"
    with ChatStore(path) as store, ChatSession("shop", retriever=world.retriever, store=store) as chat:
        first = chat.send("make it red", image=world.image("blue-dress"))
    with ChatStore(path) as store, ChatSession("shop", retriever=world.retriever, store=store) as chat:
        assert [t.description for t in chat.history()] == [first.description]
        assert chat.send("with long sleeves").context == first.description


def test_resume_in_another_process(world, store, tmp_path: Path) -> None:
    chat = ChatSession("proc", retriever=world.retriever, store=store)
    first = chat.send("make it red", image=world.image("blue-dress"))
    chat.close()
    script = f"""
import json, sys
sys.path.insert(0, {str(HERE)!r})
from pathlib import Path
from conftest import World
from cirgraph.chat.session import ChatSession
from cirgraph.chat.store import ChatStore
world = World(Path({str(tmp_path)!r}) / "other")
with ChatStore({str(store.path)!r}) as store, ChatSession("proc", retriever=world.retriever, store=store) as chat:
    turn = chat.send("as a shirt")
    print(json.dumps({{"n": turn.n, "context": turn.context, "description": turn.description}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {
        "n": 2, "context": first.description, "description": "a red shirt on a hanger"}
    assert [t.n for t in ChatSession("proc", retriever=world.retriever, store=store).history()] == [1, 2]


def test_settings_open_the_default_store_under_home(world, monkeypatch: pytest.MonkeyPatch) -> None:
    from cirgraph.settings import Settings

    with ChatSession("home", retriever=world.retriever, settings=Settings()) as chat:
        chat.send("make it red", image=world.image("blue-dress"))
        assert chat.conversations.store.path == Settings().checkpoints_path
    assert Settings().checkpoints_path.is_file()


def test_the_sdk_exports_the_chat() -> None:
    import cirgraph
    from cirgraph.chat.turns import Turn

    assert cirgraph.ChatSession is ChatSession and cirgraph.Turn is Turn
