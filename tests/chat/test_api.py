"""The HTTP API: threads and turns, streaming, search, thumbnails, the OpenAPI schema, and 4xx JSON answers to bad
input (oversized upload, non-image, unknown thread, traversal)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cirgraph.chat.api import create_app
from cirgraph.chat.store import ChatStore
from cirgraph.chat.threads import Conversations
from cirgraph.retriever import Retriever

LIMIT = 200_000


@pytest.fixture
def client(world, store: ChatStore) -> TestClient:
    conv = Conversations(store, world.retriever, max_upload_bytes=LIMIT)
    with TestClient(create_app(conv)) as c:
        yield c


@pytest.fixture
def thread(client: TestClient) -> str:
    res = client.post("/api/threads")
    assert res.status_code == 201 and res.json()["turns"] == []
    return res.json()["thread_id"]


def upload(path: Path, name: str = "ref.png") -> dict:
    return {"image": (name, path.read_bytes(), "image/png")}


def error(res, status: int) -> str:
    assert res.status_code == status, res.text
    assert res.headers["content-type"].startswith("application/json")
    return res.json()["detail"]


def test_a_conversation_over_http(client: TestClient, thread: str, world) -> None:
    first = client.post(f"/api/threads/{thread}/turns", data={"text": "make it red"},
                        files=upload(world.image("blue-dress")))
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["description"] == "a red dress on a hanger" and body["hits"][0]["id"] == "red-dress"
    assert body["hits"][0]["thumbnail"] == "/api/images/toy/red-dress"
    assert body["reference"]["url"] == f"/api/uploads/{body['reference']['hash']}"
    second = client.post(f"/api/threads/{thread}/turns", data={"text": "the second one, with long sleeves"}).json()
    assert second["pick"] == 2 and second["reference"]["id"] == body["hits"][1]["id"]
    third = client.post(f"/api/threads/{thread}/turns", data={"text": "as a shirt", "k": "2"}).json()
    assert third["context"] == second["description"] and len(third["hits"]) == 2
    state = client.get(f"/api/threads/{thread}").json()
    assert [t["n"] for t in state["turns"]] == [1, 2, 3] and state["gallery"] == "toy"
    undone = client.post(f"/api/threads/{thread}/undo").json()
    assert undone["removed"]["n"] == 3 and len(undone["thread"]["turns"]) == 2
    assert client.post(f"/api/threads/{thread}/reset").json()["turns"] == []
    for url in (body["hits"][0]["thumbnail"], body["reference"]["url"]):
        res = client.get(url, params={"size": 64})
        assert res.status_code == 200 and res.headers["content-type"] == "image/jpeg"
        assert max(Image.open(io.BytesIO(res.content)).size) <= 64


def test_a_turn_streams_stage_lines_then_the_turn(client: TestClient, thread: str, world) -> None:
    res = client.post(f"/api/threads/{thread}/turns", params={"stream": "true"}, data={"text": "make it red"},
                      files=upload(world.image("blue-dress")))
    assert res.status_code == 200 and res.headers["content-type"].startswith("application/x-ndjson")
    events = [json.loads(line) for line in res.text.splitlines()]
    assert [e.get("stage") for e in events[:-1]] == ["caption_reference", "recompose", "retrieve"]
    assert events[0]["summary"].startswith("caption_reference: caption: a blue dress")
    assert events[-1]["event"] == "turn" and events[-1]["turn"]["hits"][0]["id"] == "red-dress"
    # a turn that cannot be planned is a 4xx before any stream starts
    assert "numbered 1 to" in error(client.post(f"/api/threads/{thread}/turns", params={"stream": "true"},
                                                data={"text": "x", "pick": "99"}), 400)


def test_search_with_an_upload_or_a_gallery_id(client: TestClient, world) -> None:
    by_file = client.post("/api/search", data={"text": "make it red"}, files=upload(world.image("blue-dress")))
    by_id = client.post("/api/search", data={"text": "make it red", "ref_id": "blue-dress", "k": "3"})
    assert by_file.status_code == by_id.status_code == 200
    assert by_file.json()["results"][0]["id"] == by_id.json()["results"][0]["id"] == "red-dress"
    assert len(by_id.json()["results"]) == 3 and by_id.json()["explanation"]["caption_source"] == "gallery"
    assert "exactly one" in error(client.post("/api/search", data={"text": "x"}), 400)
    assert "exactly one" in error(client.post("/api/search", data={"text": "x", "ref_id": "red-dress"},
                                              files=upload(world.image("blue-dress"))), 400)
    assert "no such item" in error(client.post("/api/search", data={"text": "x", "ref_id": "nope"}), 400)


def test_oversized_uploads_get_413(client: TestClient, thread: str) -> None:
    big = {"image": ("big.png", b"\x89PNG" + b"0" * (LIMIT + 100_000), "image/png")}
    assert "limit" in error(client.post(f"/api/threads/{thread}/turns", data={"text": "x"}, files=big), 413)
    assert "limit" in error(client.post("/api/search", data={"text": "x"}, files=big), 413)
    just_over = {"image": ("over.png", b"\x89PNG" + b"0" * LIMIT, "image/png")}  # under the form's own allowance
    assert "over.png: over the" in error(client.post(f"/api/threads/{thread}/turns", files=just_over), 413)

    def chunks():  # no Content-Length: the body is counted as it arrives
        yield b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n"
        for _ in range(40):
            yield b"0" * 10_000

    res = client.post(f"/api/threads/{thread}/turns", content=chunks(),
                      headers={"content-type": "multipart/form-data; boundary=b"})
    assert "limit" in error(res, 413)
    assert client.get(f"/api/threads/{thread}").json()["turns"] == []


def test_non_images_and_unusable_images_are_refused(client: TestClient, thread: str, world) -> None:
    url = f"/api/threads/{thread}/turns"
    not_image = {"image": ("notes.png", b"just some text", "image/png")}
    assert "not an image" in error(client.post(url, data={"text": "x"}, files=not_image), 415)
    assert "not an image" in error(client.post("/api/search", data={"text": "x"}, files=not_image), 415)
    truncated = {"image": ("cut.png", world.image("blue-dress").read_bytes()[:60], "image/png")}
    assert "cut.png" in error(client.post(url, data={"text": "x"}, files=truncated), 422)
    assert client.get(f"/api/threads/{thread}").json()["turns"] == []


def test_pixel_cap_applies_to_uploads(world, store: ChatStore) -> None:
    tiny_cap = Retriever(gallery=world.gallery, llm=world.llm, vlm=world.vlm, embedder=world.embedder,
                         text_embedder=world.text_embedder, config="cirevl", max_image_pixels=100)
    with TestClient(create_app(Conversations(store, tiny_cap))) as client:
        thread = client.post("/api/threads").json()["thread_id"]
        res = client.post(f"/api/threads/{thread}/turns", data={"text": "x"}, files=upload(world.image("blue-dress")))
        assert "pixel cap" in error(res, 422)


def test_unknown_threads_get_404(client: TestClient) -> None:
    for res in (client.get("/api/threads/0123456789abcdef"),
                client.post("/api/threads/0123456789abcdef/turns", data={"text": "make it red"}),
                client.post("/api/threads/0123456789abcdef/undo"),
                client.post("/api/threads/0123456789abcdef/reset")):
        assert "no such conversation" in error(res, 404)
    assert error(client.get("/api/threads/..%2F..%2Fetc"), 404)  # no route: "/" cannot be part of an id
    assert "thread id" in error(client.get("/api/threads/bad%20id"), 400)


def test_image_urls_cannot_traverse(client: TestClient, world, store: ChatStore) -> None:
    secret = world.images.parent / "secret.png"
    secret.write_bytes(world.image("red-dress").read_bytes())
    for path in ("/api/images/toy/..%2Fsecret.png", "/api/images/toy/../secret.png",
                 f"/api/images/toy/{secret}", f"/api/images/toy/{str(secret).replace('/', '%2F')}",
                 "/api/images/toy/%2Fetc%2Fpasswd", "/api/images/toy/red-dress%00.png",
                 "/api/images/..%2Fchat/red-dress", "/api/images/nope/red-dress",
                 "/api/uploads/..%2Fcheckpoints.sqlite", f"/api/uploads/{'0' * 32}", "/static/..%2Fapi.py"):
        res = client.get(path)
        assert res.status_code == 404, path
    assert client.get("/api/images/toy/red-dress").status_code == 200


def test_bad_fields_answer_with_one_json_message(client: TestClient, thread: str) -> None:
    url = f"/api/threads/{thread}/turns"
    assert "pick" in error(client.post(url, data={"text": "x", "pick": "two"}), 422)
    assert "k" in error(client.post(url, data={"text": "x", "k": "0"}), 422)
    assert "first message needs a reference" in error(client.post(url, data={"text": "make it red"}), 400)
    assert "remote images are not fetched" in error(
        client.post(url, data={"text": "x", "image_url": "http://127.0.0.1:9/a.png"}), 400)
    assert "not served here" in error(client.post("/api/threads", json={"gallery": "other"}), 400)
    assert error(client.post("/api/threads", json={"gallery": "toy", "extra": 1}), 422)


def test_openapi_schema_and_the_page(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert {"/api/search", "/api/threads", "/api/threads/{thread_id}", "/api/threads/{thread_id}/turns",
            "/api/threads/{thread_id}/undo", "/api/images/{gallery}/{item_id}"} <= set(schema["paths"])
    turn = schema["paths"]["/api/threads/{thread_id}/turns"]["post"]
    assert "multipart/form-data" in turn["requestBody"]["content"] and "413" in turn["responses"]
    page = client.get("/")
    assert page.status_code == 200 and '<script src="/static/app.js">' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/api/galleries").json() == [{"name": "toy", "count": 8, "default": True}]


@pytest.mark.parametrize("allow_remote", [False, True])
def test_image_url_never_reads_the_servers_disk(world, store: ChatStore, allow_remote: bool) -> None:
    """A path, existing or not, image or not, gets one and the same refusal: no file is read, none is revealed."""
    secret = world.images.parent / "secret.png"
    secret.write_bytes(world.image("red-dress").read_bytes())
    conv = Conversations(store, world.retriever, max_upload_bytes=LIMIT, allow_remote=allow_remote)
    with TestClient(create_app(conv)) as client:
        thread = client.post("/api/threads").json()["thread_id"]
        answers = set()
        for value in (str(secret), str(world.images.parent / "missing.png"), "/etc/hostname", "/etc",
                      f"file://{secret}", "secret.png", "../secret.png", "~/secret.png", "red-dress",
                      "ftp://127.0.0.1/a.png", "C:\\secret.png", "\x00"):
            res = client.post(f"/api/threads/{thread}/turns", data={"text": "make it red", "image_url": value})
            answers.add((res.status_code, error(res, 400)))
        assert answers == {(400, "image_url: only an http(s) URL is accepted here; send a local image as a file "
                                 "upload")}
        assert client.get(f"/api/threads/{thread}").json()["turns"] == []
    assert not any(store.uploads_dir.glob("*")) if store.uploads_dir.exists() else True


def test_answers_carry_no_server_paths(client: TestClient, thread: str, world) -> None:
    root = str(world.images.parent)
    turn = client.post(f"/api/threads/{thread}/turns", data={"text": "make it red"},
                       files=upload(world.image("blue-dress")))
    streamed = client.post(f"/api/threads/{thread}/turns", params={"stream": "true"}, data={"text": "in blue"})
    search = client.post("/api/search", data={"text": "make it red", "ref_id": "blue-dress"})
    state = client.get(f"/api/threads/{thread}")
    for res in (turn, streamed, search, state):
        assert res.status_code == 200, res.text
        assert root not in res.text and "/tmp" not in res.text and '"uri"' not in res.text
    hit = turn.json()["hits"][0]
    assert hit["id"] == "red-dress" and hit["name"] == "red-dress.png"
    assert search.json()["results"][0]["name"] == "red-dress.png"
    schema = client.get("/openapi.json").json()["components"]["schemas"]["HitOut"]["properties"]
    assert "name" in schema and "uri" not in schema


def test_error_answers_carry_no_server_paths(world, store: ChatStore, monkeypatch) -> None:
    from cirgraph.errors import GalleryError

    where = str(world.images.parent / "store" / "chroma.sqlite3")

    async def broken(*args, **kwargs):
        raise GalleryError(f"gallery toy: cannot read {where}: database is locked")

    monkeypatch.setattr(world.retriever, "asearch", broken)
    with TestClient(create_app(Conversations(store, world.retriever))) as client:
        detail = error(client.post("/api/search", data={"text": "x", "ref_id": "blue-dress"}), 503)
    assert detail.endswith("cannot read …/chroma.sqlite3: database is locked") and str(world.images) not in detail
