"""The assistant over a real Chroma gallery in a temporary CIRGRAPH_HOME: turns, resumption and thumbnails of
content-hash ids (the web API serves the file the gallery stored, never one named by the client)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cirgraph.chat.api import create_app
from cirgraph.chat.session import ChatSession
from cirgraph.chat.store import ChatStore
from cirgraph.chat.threads import Conversations
from cirgraph.retriever import Retriever
from cirgraph.testing.memory_gallery import build_toy_gallery
from cirgraph.tools.images import content_hash


@pytest.fixture
def chroma(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Retriever, Path]]:
    from cirgraph import clients
    from cirgraph.settings import Settings
    from cirgraph.stores.chroma import clear_client_cache
    from cirgraph.stores.indexer import Indexer

    monkeypatch.setenv("CIRGRAPH_EMBEDDER", "hash:32")
    monkeypatch.setenv("CIRGRAPH_TEXT_EMBEDDER", "hash:16")
    images = tmp_path / "images"
    build_toy_gallery(images)  # writes the toy PNGs
    gallery = clients.open_gallery(Settings(), "chatty", create=True, kind="images")
    Indexer(gallery).index(images)
    retriever = Retriever(gallery=gallery, embedder=gallery.image_embedder, config="modification-only")
    yield retriever, images
    retriever.close()
    clear_client_cache()


def test_turns_and_thumbnails_over_chroma(chroma: tuple[Retriever, Path], tmp_path: Path) -> None:
    retriever, images = chroma
    red = content_hash((images / "red-dress.png").read_bytes())
    path = tmp_path / "checkpoints.sqlite"
    with ChatStore(path) as store, ChatSession("c", retriever=retriever, store=store, k=3) as chat:
        first = chat.send("a red dress", image=images / "blue-dress.png")
        assert len(first.hits) == 3 and all(h.uri and Path(h.uri).is_file() for h in first.hits)
        picked = chat.send("but green", pick=1)
        assert picked.reference == {"kind": "gallery", "id": first.ids[0]}
    with ChatStore(path) as store:
        conv = Conversations(store, retriever)
        with ChatSession("c", conversations=conv) as chat:
            assert [t.n for t in chat.history()] == [1, 2]
        with TestClient(create_app(conv)) as client:
            assert client.get(f"/api/images/chatty/{red}").headers["content-type"] == "image/jpeg"
            for bad in (str(images / "red-dress.png"), "red-dress.png", f"..%2F{red}", f"{red}%2F..%2F..%2Fsecret",
                        "..%2F..%2Fetc%2Fpasswd"):
                assert client.get(f"/api/images/chatty/{bad}").status_code == 404, bad
            thread = client.get("/api/threads/c").json()
            assert thread["turns"][1]["reference"]["url"] == f"/api/images/chatty/{first.ids[0]}"
