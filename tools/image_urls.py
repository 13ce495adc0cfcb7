"""Images as the base64 data URLs that vision chat APIs accept, encoded once per image object.

A query sends the same decoded picture many times, at once (the reference beside every rerank candidate, checked
concurrently), and downscaling plus JPEG-encoding a photo costs milliseconds to tens of milliseconds of CPU. Images
are treated as immutable: an image changed in place after it was sent keeps its first URL.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING

from cirgraph.tools.images import to_data_url

if TYPE_CHECKING:
    from PIL.Image import Image


class _Entry:
    __slots__ = ("image", "lock", "url")

    def __init__(self, image: weakref.ref) -> None:
        self.image, self.lock, self.url = image, threading.Lock(), None


class DataUrls:
    """image -> data URL (downscaled to `max_side`), kept while the image object lives. Thread-safe: concurrent
    requests for one image wait for a single encoding."""

    def __init__(self, max_side: int = 768) -> None:
        self.max_side = max_side
        # Keyed by id(): PIL images compare by content and are unhashable. The weak reference tells a live entry
        # from one whose image died and whose id was reused.
        self._entries: dict[int, _Entry] = {}
        self._lock = threading.Lock()

    def cached(self, img: Image) -> str | None:
        """The URL of an image already encoded, else None (also while another thread is encoding it)."""
        with self._lock:
            entry = self._entries.get(id(img))
        return entry.url if entry is not None and entry.image() is img else None

    def __call__(self, img: Image) -> str:
        with self._lock:
            entry = self._entries.get(id(img))
            if entry is None or entry.image() is not img:
                # Drop the entries of images gone since (a URL can be hundreds of kB); few images live at once.
                self._entries = {k: e for k, e in self._entries.items() if e.image() is not None}
                entry = self._entries[id(img)] = _Entry(weakref.ref(img))
        with entry.lock:
            if entry.url is None:
                entry.url = to_data_url(img, max_side=self.max_side)
            return entry.url

    def __len__(self) -> int:
        """How many live images have an entry."""
        with self._lock:
            return sum(1 for e in self._entries.values() if e.image() is not None)
