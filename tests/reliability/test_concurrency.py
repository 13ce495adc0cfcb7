"""Many at once: 30 chat sessions of two turns each over one retriever (real Chroma, the openai SDK over HTTP to
the fake server), and two `cirgraph index` processes on one gallery while this process keeps searching it. The
turn-taking of index runs on a new store and readers following writers are tested in tests/stores/test_sharing.py."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cirgraph.agents.query import GalleryRef
from cirgraph.chat.session import ChatSession
from cirgraph.chat.store import ChatStore
from cirgraph.chat.threads import Conversations
from cirgraph.errors import GalleryError
from cirgraph.testing.fake_openai import FakeOpenAIServer
from cirgraph.testing.memory_gallery import TOY_ITEMS
from cirgraph.testing.toy_pipeline import CAPTION_KEY, RECOMPOSE_KEY
from tests.reliability.conftest import chat_client, cirgraph, cirgraph_env, retriever, stopwatch

WORDS = ("amber", "beige", "coral", "denim", "ebony", "fern", "gold", "hazel", "ivory", "jade")


def echo_recompose(body: dict) -> dict:
    """The description is the turn's own words, so a turn that read another thread's context would show it."""
    text = "\n".join(m["content"] for m in body["messages"] if isinstance(m["content"], str))
    caption, change = re.findall(r'^"(.*)"$', text, re.M)[:2]
    return {"edits": [], "descriptions": [f"{caption} {change}"]}


def test_thirty_chat_sessions_of_two_turns_at_once_never_mix(chroma_gallery, tmp_path: Path) -> None:
    gallery, _ = chroma_gallery
    starts = sorted(i for i, _, _ in gallery.iter_items())  # content hashes
    assert len(starts) == len(TOY_ITEMS)
    with FakeOpenAIServer({CAPTION_KEY: "a plain picture", RECOMPOSE_KEY: echo_recompose}, delay_s=0.02) as server, \
            ChatStore(tmp_path / "chats.sqlite") as store, \
            retriever(gallery, chat_client(server.base_url, timeout=10, max_concurrency=16), "cirevl") as search:
        conversations = Conversations(store, search)
        sessions = [ChatSession(f"s{i}", conversations=conversations, k=3) for i in range(30)]

        async def two_turns(i: int, chat: ChatSession) -> list:
            first = await chat.asend(f"make it {WORDS[i % 10]} number {i}", image=GalleryRef(starts[i % 8]))
            second = await chat.asend(f"now {WORDS[(i + 3) % 10]} again {i}")
            return [first, second]

        async def all_sessions() -> list:
            return await asyncio.gather(*(two_turns(i, s) for i, s in enumerate(sessions)))

        with stopwatch("30 chat sessions x 2 turns") as figures:
            turns = asyncio.run(all_sessions())
            figures.update(turns=sum(len(t) for t in turns), requests=len(server.chat_requests),
                           max_in_flight=server.max_in_flight)
    assert figures["turns"] == 60 and figures["max_in_flight"] > 1  # they did run at once
    for i, (first, second) in enumerate(turns):
        assert first.n == 1 and second.n == 2 and first.hits and second.hits
        assert f"number {i}" in first.description and f"again {i}" in second.description
        assert second.context == first.description  # its own first turn, no other session's
        assert first.explanation.get("degraded") in (None, [])
    assert figures["seconds"] < 30


def _noise_images(folder: Path, n: int) -> None:
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"img{i:03d}.png")


def test_two_index_runs_at_once_and_searches_meanwhile(tmp_path: Path) -> None:
    from cirgraph.retriever import Retriever
    from cirgraph.settings import Settings
    from cirgraph.stores.chroma import clear_client_cache

    folder, n = tmp_path / "photos", 24
    _noise_images(folder, n)
    home = tmp_path / "home"
    env = cirgraph_env(home, embedder="hash:32?delay=0.1", text_embedder="hash:16")
    seed = cirgraph(env, "index", str(folder / "img000.png"), "--gallery", "g", "--json")
    assert seed.wait(120) == 0, seed.stderr.read()
    settings = Settings(home=home)  # the gallery's own models
    clear_client_cache()
    search = Retriever.from_settings(settings, gallery="g", preset="modification-only")
    runs = [cirgraph(env, "index", str(folder), "--gallery", "g", "--batch-size", "4", "--json") for _ in range(2)]
    counts, seconds, errors = [], [], []
    try:
        with stopwatch("2 index runs on one gallery, searching meanwhile") as figures:
            while any(r.poll() is None for r in runs):
                started = time.perf_counter()
                try:
                    search.search(folder / "img000.png", "random pixels", k=5)
                except GalleryError as exc:
                    errors.append(str(exc))
                seconds.append(time.perf_counter() - started)
                counts.append(search.gallery.count())
                time.sleep(0.05)
            outs = [(r.returncode, r.stdout.read(), r.stderr.read()) for r in runs]
            final = search.search(folder / "img000.png", "random pixels", k=5)
            figures.update(searches=len(seconds), failed=len(errors), slowest_search=max(seconds, default=0.0),
                           counts_seen=f"{min(counts, default=0)}..{max(counts, default=0)}")
    finally:
        search.close()
        clear_client_cache()
    assert all(code == 0 for code, _, _ in outs), outs
    added = [json.loads(out)["added"] for _, out, _ in outs]
    assert sorted(added) == [0, n - 1] or sum(added) == n - 1, added  # the runs take turns: nothing twice
    assert counts == sorted(counts) and counts[-1] <= n  # a search never sees the gallery shrink or overfill
    assert len(final.hits) == 5 and search.gallery.count() == n
    assert len(seconds) >= 3 and max(seconds) < 5
    # a read that meets another process's write half-way is read again on the reopened store (stores/search.py)
    assert not errors, f"{len(errors)} of {len(seconds)} searches during an index failed; first: {errors[0][:300]}"
