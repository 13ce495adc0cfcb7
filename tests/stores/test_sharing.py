"""One embedded store, several processes: a reader that stays open sees what another process indexes, and
concurrent index runs take turns (every run exits 0, the added counts sum to the gallery's size). Real processes,
real Chroma; the caption embedder is the weightless hash one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cirgraph.settings import Settings
from cirgraph.stores.chroma import clear_client_cache

FIRST = {f"photo-{i}": [f"a {c} {n} on a table" for c, n in [("red", "cup"), ("blue", "car")][i % 2:][:1]]
         for i in range(18)}
MORE = {"new-0": ["a green kite over a beach"], "new-1": ["a yellow kite over a beach"],
        "new-2": ["an orange kite over a beach"]}


@pytest.fixture(autouse=True)
def _hash_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIRGRAPH_TEXT_EMBEDDER", "hash:16")
    monkeypatch.setenv("CIRGRAPH_EMBEDDER", "")
    yield
    clear_client_cache()


def write(path: Path, captions: dict) -> Path:
    path.write_text(json.dumps([{"candidate": k, "captions": v} for k, v in captions.items()]))
    return path


def index(captions: Path, gallery: str = "g") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cirgraph", "index", "--captions", str(captions), "--gallery",
                             gallery, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ.copy())


def test_an_open_reader_sees_what_another_process_indexed(tmp_path: Path) -> None:
    from cirgraph.clients import open_gallery

    assert index(write(tmp_path / "first.json", FIRST)).wait(120) == 0
    reader = open_gallery(Settings(), "g")
    query = reader.text_embedder.embed_texts(["a green kite over a beach"])[0]
    assert reader.count() == 18 and "new-0" not in [h.id for h in reader.query_captions(query, 5)]
    started = time.perf_counter()
    run = index(write(tmp_path / "more.json", MORE))
    assert run.wait(120) == 0, run.stderr.read()
    found = [h.id for h in reader.query_captions(query, 5)]  # the same Gallery object, never reopened by hand
    print(f"seen {time.perf_counter() - started:.2f} s after the other process started indexing")
    assert found[0] == "new-0" and "new-1" in found and reader.count() == 21
    assert set(reader.get(["new-1"])) == {"new-1"}


def test_reads_cost_one_stat_when_nothing_changed(tmp_path: Path) -> None:
    from cirgraph.clients import open_gallery

    assert index(write(tmp_path / "first.json", FIRST)).wait(120) == 0
    reader = open_gallery(Settings(), "g")
    client = reader.client
    vector = np.ones(16, dtype=np.float32)
    for _ in range(20):
        reader.query_captions(vector, 3)
    assert reader.client is client and reader._watch.generation == 0


@pytest.mark.parametrize("trial", range(3))
def test_concurrent_index_runs_on_a_new_store_take_turns(tmp_path: Path, trial: int) -> None:
    from cirgraph.clients import open_gallery

    captions = write(tmp_path / "first.json", FIRST)
    runs = [index(captions) for _ in range(4)]
    outs = [(r.wait(180), r.stdout.read(), r.stderr.read()) for r in runs]
    assert all(code == 0 for code, _, _ in outs), outs
    added = [json.loads(out)["added"] for _, out, _ in outs]
    size = open_gallery(Settings(), "g").count()
    assert size == 18 and sum(added) == size, added
    assert any("waiting for another writer" in err for _, _, err in outs)


def test_a_long_lived_retriever_finds_items_indexed_meanwhile(tmp_path: Path) -> None:
    from cirgraph.retriever import Retriever

    assert index(write(tmp_path / "first.json", FIRST)).wait(120) == 0
    retriever = Retriever.from_settings(gallery="g", preset="modification-only")
    try:
        before = retriever.search("photo-0", "a green kite over a beach", k=3)
        assert index(write(tmp_path / "more.json", MORE)).wait(120) == 0
        after = retriever.search("photo-0", "a green kite over a beach", k=3)
    finally:
        retriever.close()
    assert "new-0" not in before.ids and after.ids[0] == "new-0"


def test_a_running_http_server_finds_items_indexed_by_another_process(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from cirgraph.chat.api import create_app
    from cirgraph.chat.store import ChatStore
    from cirgraph.chat.threads import Conversations
    from cirgraph.retriever import Retriever

    assert index(write(tmp_path / "first.json", FIRST)).wait(120) == 0
    retriever = Retriever.from_settings(gallery="g", preset="modification-only")
    store = ChatStore(tmp_path / "chat" / "checkpoints.sqlite")
    try:
        with TestClient(create_app(Conversations(store, retriever))) as client:
            ask = {"text": "a green kite over a beach", "ref_id": "photo-0", "k": "3"}
            before = client.post("/api/search", data=ask).json()["results"]
            assert index(write(tmp_path / "more.json", MORE)).wait(120) == 0
            after = client.post("/api/search", data=ask).json()["results"]
            counts = client.get("/api/galleries").json()
    finally:
        store.close()
        retriever.close()
    assert "new-0" not in [h["id"] for h in before] and after[0]["id"] == "new-0"
    assert counts == [{"name": "g", "count": 21, "default": True}]
