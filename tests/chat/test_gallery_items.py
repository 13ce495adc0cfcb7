"""Starting a conversation from a gallery item (find by id or caption, random sample), caption-only galleries
(no thumbnail URLs, captions instead), the API docs without a network, and model failures as 502."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cirgraph.chat.api import create_app
from cirgraph.chat.browse import ItemFinder
from cirgraph.chat.store import ChatStore
from cirgraph.chat.threads import Conversations


def error(res, status: int) -> str:
    assert res.status_code == status, res.text
    assert res.headers["content-type"].startswith("application/json")
    return res.json()["detail"]


@pytest.fixture
def client(world, caption_world, store: ChatStore) -> Iterator[TestClient]:
    conv = Conversations(store, {"toy": world.retriever, "notes": caption_world.retriever})
    with TestClient(create_app(conv)) as c:
        yield c


def test_find_items_by_id_then_caption(client: TestClient) -> None:
    found = client.get("/api/galleries/toy/items", params={"q": "dress"}).json()
    assert [i["id"] for i in found] == ["red-dress", "blue-dress", "green-dress"]
    assert found[0] == {"id": "red-dress", "name": "red-dress.png", "captions": ["a red dress on a hanger"],
                        "thumbnail": "/api/images/toy/red-dress"}
    # the exact id first, then ids containing the text, then captions containing it (case ignored)
    assert [i["id"] for i in client.get("/api/galleries/toy/items", params={"q": "RED-shirt"}).json()] == \
        ["red-shirt"]
    by_caption = client.get("/api/galleries/toy/items", params={"q": "Sofa"}).json()
    assert [i["id"] for i in by_caption] == ["white-dog", "white-cat"]
    assert [i["id"] for i in client.get("/api/galleries/toy/items", params={"q": "hanger", "limit": 2}).json()] \
        == ["red-dress", "blue-dress"]
    assert client.get("/api/galleries/toy/items", params={"q": "zebra"}).json() == []
    assert "not served here" in error(client.get("/api/galleries/nope/items", params={"q": "x"}), 404)
    assert error(client.get("/api/galleries/toy/items", params={"q": ""}), 422)


def test_a_random_sample(client: TestClient) -> None:
    one = client.get("/api/galleries/toy/sample", params={"n": 5, "seed": 7}).json()
    again = client.get("/api/galleries/toy/sample", params={"n": 5, "seed": 7}).json()
    assert one == again and len({i["id"] for i in one}) == 5
    assert len(client.get("/api/galleries/toy/sample", params={"n": 100}).json()) == 8  # the whole gallery
    seen = {i["id"] for _ in range(20) for i in client.get("/api/galleries/toy/sample", params={"n": 2}).json()}
    assert len(seen) > 2  # not always the same items


def test_caption_gallery_items_have_no_thumbnail_urls(client: TestClient) -> None:
    items = client.get("/api/galleries/notes/sample", params={"n": 8}).json()
    assert len(items) == 8 and all(i["thumbnail"] is None and i["name"] is None and i["captions"] for i in items)
    assert client.get("/api/images/notes/red-dress").status_code == 404


def test_a_caption_gallery_conversation_from_a_gallery_item(client: TestClient) -> None:
    """Two turns started from an item of a caption-only gallery: captions instead of images, no image URL."""
    thread = client.post("/api/threads", json={"gallery": "notes"}).json()["thread_id"]
    first = client.post(f"/api/threads/{thread}/turns", data={"text": "make it red", "ref_id": "blue-dress"})
    assert first.status_code == 200, first.text
    turn = first.json()
    assert turn["reference"] == turn["reference"] | {"kind": "gallery", "id": "blue-dress", "url": None,
                                                     "captions": ["a blue dress on a hanger"]}
    assert turn["description"] == "a red dress on a hanger" and turn["hits"][0]["id"] == "red-dress"
    assert all(h["thumbnail"] is None and h["captions"] for h in turn["hits"])
    second = client.post(f"/api/threads/{thread}/turns", params={"stream": "true"}, data={"text": "the third one"})
    last = json.loads(second.text.splitlines()[-1])
    assert last["event"] == "turn" and last["turn"]["kind"] == "select" and last["turn"]["reference"]["url"] is None
    third = client.post(f"/api/threads/{thread}/turns", data={"text": "as a shirt"}).json()
    assert third["reference"]["captions"] == [turn["hits"][2]["captions"][0]]
    state = client.get(f"/api/threads/{thread}").json()
    assert [t["reference"]["url"] for t in state["turns"]] == [None, None, None]
    assert '"/api/images/' not in client.get(f"/api/threads/{thread}").text
    # an image gallery keeps its URLs
    other = client.post("/api/threads", json={"gallery": "toy"}).json()["thread_id"]
    turn = client.post(f"/api/threads/{other}/turns", data={"text": "make it red", "ref_id": "blue-dress"}).json()
    assert turn["reference"]["url"] == "/api/images/toy/blue-dress"
    assert turn["reference"]["captions"] == ["a blue dress on a hanger"]
    assert turn["hits"][0]["thumbnail"] == "/api/images/toy/red-dress"


def test_search_over_a_caption_gallery(client: TestClient) -> None:
    res = client.post("/api/search", data={"text": "make it red", "ref_id": "blue-dress", "gallery": "notes"})
    assert res.status_code == 200, res.text
    assert res.json()["results"][0] == res.json()["results"][0] | {"id": "red-dress", "thumbnail": None}


def test_item_finder_over_a_real_chroma_gallery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids are listed from the store and captions found with its document filter, in any case of the text."""
    from cirgraph import clients
    from cirgraph.settings import Settings
    from cirgraph.stores.captions import CaptionTable, import_captions
    from cirgraph.stores.chroma import clear_client_cache

    monkeypatch.setenv("CIRGRAPH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CIRGRAPH_EMBEDDER", "")
    monkeypatch.setenv("CIRGRAPH_TEXT_EMBEDDER", "hash:16")
    gallery = clients.open_gallery(Settings(), "notes", create=True, kind="captions")
    table = CaptionTable("notes.csv")
    for name, text in {"a1": "A Red dress", "b2": "a blue shirt", "c3": "red shoes", "red-4": "a hat"}.items():
        table.add(name, [text])
    import_captions(gallery, table)
    try:
        finder = ItemFinder(gallery)
        assert sorted(finder.ids()) == ["a1", "b2", "c3", "red-4"]
        assert [i.id for i in finder.find("red", 10)][0] == "red-4"  # the id match comes first
        assert sorted(i.id for i in finder.find("red", 10)[1:]) == ["a1", "c3"]
        assert [i.id for i in finder.find("Blue Shirt", 10)] == ["b2"]
        sample = finder.sample(3)
        assert len({i.id for i in sample}) == 3 and all(i.captions for i in sample)
    finally:
        clear_client_cache()


def test_docs_work_without_a_network(client: TestClient) -> None:
    pytest.importorskip("fastapi_offline")
    for page, asset in (("/docs", "/static-docs/swagger-ui-bundle.js"), ("/redoc", "/static-docs/redoc.standalone.js")):
        html = client.get(page)
        assert html.status_code == 200 and asset in html.text, page
        assert "cdn." not in html.text and "fonts.googleapis" not in html.text, page
        script = client.get(asset)
        assert script.status_code == 200 and len(script.content) > 100_000
    assert client.get("/static-docs/swagger-ui.css").status_code == 200


def test_model_failures_answer_502_and_the_unforeseen_500(world, store: ChatStore, monkeypatch) -> None:
    """A model that cannot be loaded (no weights offline) is 502, as documented; anything unforeseen is a JSON 500
    without server paths, in a plain answer and inside a stream."""
    from cirgraph.errors import ModelError, ModelNotFoundError

    failures = iter([ModelNotFoundError("HuggingFaceTB/SmolVLM-256M-Instruct", "offline and not in the cache"),
                     ModelNotFoundError("Qwen/Qwen2.5-0.5B-Instruct", "offline and not in the cache"),
                     ModelError("qwen", "the server answered 500"),
                     RuntimeError(f"cannot open {world.images}/weights.bin"),
                     ModelNotFoundError("HuggingFaceTB/SmolVLM-256M-Instruct", "offline and not in the cache")])

    async def failing(*args, **kwargs):
        raise next(failures)

    monkeypatch.setattr(world.llm, "complete", failing)  # recompose asks the LLM
    with TestClient(create_app(Conversations(store, world.retriever)), raise_server_exceptions=False) as client:
        thread = client.post("/api/threads").json()["thread_id"]
        url = f"/api/threads/{thread}/turns"
        data = {"text": "make it red", "ref_id": "blue-dress"}
        assert "SmolVLM-256M-Instruct' could not be loaded" in error(client.post(url, data=data), 502)
        assert "Qwen2.5-0.5B-Instruct' could not be loaded" in error(client.post("/api/search", data=data), 502)
        # a model that answers with an error degrades its stage: the search goes on and says so
        degraded = client.post("/api/search", data=data).json()["explanation"]["degraded"]
        assert degraded[0]["reason"] == "model 'qwen': the server answered 500"
        detail = error(client.post(url, data=data), 500)
        assert detail == "internal error: RuntimeError: cannot open …/weights.bin"
        # an upload is captioned first, so the stream has started when recompose fails: the status is in the line
        png = {"image": ("ref.png", world.image("blue-dress").read_bytes(), "image/png")}
        streamed = client.post(url, params={"stream": "true"}, data={"text": "make it red"}, files=png)
        events = [json.loads(line) for line in streamed.text.splitlines()]
        assert streamed.status_code == 200 and events[0]["stage"] == "caption_reference"
        assert events[-1]["event"] == "error" and events[-1]["status"] == 502
        assert "could not be loaded" in events[-1]["detail"]
        assert client.get(f"/api/threads/{thread}").json()["turns"] == []
