"""The live clients a graph is built with: models, embedders, the gallery, and small caches.

Created once at the edges (SDK, CLI, eval runner) and bound into the nodes when the graph is compiled, so nodes
never create clients or read the environment. Per-run settings live in PipelineConfig instead.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlparse

from cirgraph.errors import ConfigError
from cirgraph.tools.protocols import Models

if TYPE_CHECKING:
    from PIL.Image import Image

    from cirgraph.agents.context import PipelineConfig
    from cirgraph.stores.base import GalleryReader


class JsonCache(Protocol):
    """What the caption cache needs; cirgraph.tools.cache.CallCache implements it persistently."""

    def get_json(self, namespace: str, key: str) -> Any | None: ...

    def put_json(self, namespace: str, key: str, value: Any) -> None: ...


class MemoryCache:
    """A bounded in-process JsonCache (least recently used entries leave first)."""

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get_json(self, namespace: str, key: str) -> Any | None:
        with self._lock:
            value = self._data.get((namespace, key))
            if value is not None:
                self._data.move_to_end((namespace, key))
            return value

    def put_json(self, namespace: str, key: str, value: Any) -> None:
        with self._lock:
            self._data[(namespace, key)] = value
            self._data.move_to_end((namespace, key))
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


def local_path(uri: str | None) -> Path | None:
    """The local file a gallery URI names (a plain path or file://), or None for other schemes."""
    if not uri:
        return None
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if not parsed.scheme or len(parsed.scheme) == 1 or Path(uri).exists():  # one letter: a Windows drive
        return Path(uri)
    return None


def load_uri_image(uri: str) -> Image:
    """Open a gallery item's image from a local path or file:// URI (other schemes: ImageError)."""
    from cirgraph.errors import ImageError
    from cirgraph.tools.images import load_image

    path = local_path(uri)
    if path is None:
        raise ImageError(uri, "only local paths and file:// URIs can be opened")
    return load_image(path)


@dataclass(frozen=True, kw_only=True, slots=True)
class Services(Models):
    """Live clients of one pipeline: the models (optional: a stage that needs a missing one is refused by `check`
    before the run starts, so a run never fails half-way for want of a client), the gallery and small caches."""

    gallery: GalleryReader
    caption_cache: JsonCache = field(default_factory=MemoryCache)
    memo: MemoryCache = field(default_factory=lambda: MemoryCache(256))  # derived values, e.g. reference embeddings
    image_loader: Callable[[str], Image] = load_uri_image

    def searchable(self) -> list[str]:
        """The text->item spaces this gallery and these embedders can search."""
        spaces = []
        if self.embedder is not None and self.gallery.has_images:
            spaces.append("text_image")
        if self.text_embedder is not None and self.gallery.has_captions:
            spaces.append("text_caption")
        return spaces

    def check(self, config: PipelineConfig) -> None:
        """ConfigError naming the setting and the missing client when `config` cannot run with these services."""
        if not self.searchable():
            raise ConfigError(
                f"gallery {self.gallery.name!r}: nothing to search: it has "
                f"{'images' if self.gallery.has_images else 'no images'} and "
                f"{'captions' if self.gallery.has_captions else 'no captions'}, and the retriever has "
                f"{'an' if self.embedder else 'no'} image-text embedder and "
                f"{'a' if self.text_embedder else 'no'} caption text embedder"
            )
        for stage in ("recompose", "decompose"):
            if getattr(config, stage) and self.llm is None:
                raise ConfigError(f"stage {stage!r} is on but no LLM was given: pass llm=, or switch it off "
                                  "(e.g. preset 'caption+modification')")
        if config.rerank and self.llm is None and self.vlm is None:
            raise ConfigError("stage 'rerank' is on but neither a vision model nor an LLM was given")
