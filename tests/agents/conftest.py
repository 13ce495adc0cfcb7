"""A toy world per test: a gallery of eight coloured images with hash embedders, and scripted models."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cirgraph.agents.services import Services
from cirgraph.testing.fake_chat import ScriptedChatModel
from cirgraph.testing.memory_gallery import MemoryGallery, build_toy_gallery
from cirgraph.testing.toy_pipeline import toy_models


@dataclass
class World:
    dir: Path
    gallery: MemoryGallery
    embedder: Any
    text_embedder: Any

    def path(self, item_id: str) -> Path:
        return self.dir / f"{item_id}.png"

    def models(self, **kwargs: Any) -> tuple[ScriptedChatModel, ScriptedChatModel]:
        return toy_models(self.gallery, self.embedder, **kwargs)

    def services(self, llm: Any = None, vlm: Any = None, **kwargs: Any) -> Services:
        return Services(gallery=self.gallery, llm=llm, vlm=vlm, embedder=self.embedder,
                        text_embedder=self.text_embedder, **kwargs)

    def retriever(self, config: Any = "reflect", **kwargs: Any) -> Any:
        from cirgraph.retriever import Retriever

        models = kwargs.pop("models", None) or self.models()
        return Retriever(gallery=self.gallery, llm=models[0], vlm=models[1], embedder=self.embedder,
                         text_embedder=self.text_embedder, config=config, **kwargs)


@pytest.fixture
def world(tmp_path: Path) -> World:
    gallery, embedder, text_embedder = build_toy_gallery(tmp_path / "images")
    return World(tmp_path / "images", gallery, embedder, text_embedder)


@pytest.fixture
def caption_world(tmp_path: Path) -> World:
    """The same items with captions only: no image embeddings, no readable images."""
    gallery, embedder, text_embedder = build_toy_gallery(tmp_path / "images", images=False, name="captions")
    gallery.uris = {}
    return World(tmp_path / "images", gallery, embedder, text_embedder)


@pytest.fixture
def image_world(tmp_path: Path) -> World:
    """The same items with image embeddings only."""
    gallery, embedder, text_embedder = build_toy_gallery(tmp_path / "images", captions=False, name="images")
    return World(tmp_path / "images", gallery, embedder, text_embedder)
