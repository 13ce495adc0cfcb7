"""The toy world for the assistant: a gallery of dresses, shirts and pets, and scripted models whose recompose
really applies the modification to the caption it is given, so multi-turn context is visible in the results."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cirgraph.chat.store import ChatStore
from cirgraph.chat.threads import Conversations
from cirgraph.retriever import Retriever
from cirgraph.testing.memory_gallery import TOY_ITEMS, MemoryGallery, build_toy_gallery
from cirgraph.testing.toy_pipeline import RECOMPOSE_KEY, toy_models

COLOURS = ("red", "blue", "green", "black", "white")
NOUNS = ("dress", "shirt", "dog", "cat")


def edit(caption: str, modification: str) -> str:
    """The toy recompose: swap the colour and the noun the modification names; add long sleeves when asked."""
    words = caption.split()
    mod = modification.lower()
    for group in (COLOURS, NOUNS):
        wanted = next((w for w in group if re.search(rf"\b{w}\b", mod)), None)
        if wanted:
            words = [wanted if w in group else w for w in words]
    text = " ".join(words)
    if "long sleeves" in mod and "long sleeves" not in text:
        text += " with long sleeves"
    return text


def recompose_rule(messages: Any, schema: Any) -> dict:
    """Reads the caption and the modification (the first two quoted lines of either recompose template)."""
    text = "\n".join(m.text for m in messages)
    caption, modification = re.findall(r'^"(.*)"$', text, re.M)[:2]
    return {"edits": [modification], "descriptions": [edit(caption, modification)]}


class World:
    """A retriever over the toy gallery, the folder of its images, and its scripted models."""

    def __init__(self, root: Path, preset: str = "cirevl", delay_s: float = 0.0, name: str = "toy") -> None:
        self.images = root / "images"
        self.gallery, self.embedder, self.text_embedder = build_toy_gallery(self.images, name=name)
        self.llm, self.vlm = toy_models(self.gallery, self.embedder, overrides={RECOMPOSE_KEY: recompose_rule},
                                        delay_s=delay_s)
        self.retriever = Retriever(gallery=self.gallery, llm=self.llm, vlm=self.vlm, embedder=self.embedder,
                                   text_embedder=self.text_embedder, config=preset)

    def image(self, item_id: str) -> Path:
        return self.images / f"{item_id}.png"


class CaptionWorld(World):
    """The toy world as a caption-only gallery: items are names with captions, no image files, no image index."""

    def __init__(self, root: Path, preset: str = "cirevl", name: str = "notes") -> None:
        super().__init__(root, preset=preset, name=name)
        self.gallery = MemoryGallery.build(list(TOY_ITEMS), captions={k: [v] for k, v in TOY_ITEMS.items()},
                                           text_embedder=self.text_embedder, name=name)
        self.llm, self.vlm = toy_models(self.gallery, self.embedder, overrides={RECOMPOSE_KEY: recompose_rule})
        self.retriever.close()
        self.retriever = Retriever(gallery=self.gallery, llm=self.llm, vlm=self.vlm,
                                   text_embedder=self.text_embedder, config=preset)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.retriever.close()


@pytest.fixture
def caption_world(tmp_path: Path) -> Iterator[CaptionWorld]:
    w = CaptionWorld(tmp_path / "captions")
    yield w
    w.retriever.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChatStore]:
    s = ChatStore(tmp_path / "chat" / "checkpoints.sqlite")
    yield s
    s.close()


@pytest.fixture
def conversations(world: World, store: ChatStore) -> Conversations:
    return Conversations(store, world.retriever)


def serve(app: object) -> Iterator[str]:
    """`app` under uvicorn on 127.0.0.1 (a free port) until the generator is closed; yields its URL."""
    import uvicorn

    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)
