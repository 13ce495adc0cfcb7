"""Thumbnails of gallery items and uploaded references, for the web chat.

A gallery image is found only through the gallery: the item id is looked up, and the file its stored URI names is
read. A client never supplies a path, so there is nothing to traverse; unknown ids, remote URIs and missing files
are all "not found".
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from cirgraph.agents.services import local_path
from cirgraph.tools.images import DEFAULT_MAX_PIXELS, downscale, load_image

if TYPE_CHECKING:
    from cirgraph.stores.base import GalleryReader

MIN_SIDE, MAX_SIDE = 32, 1024


def gallery_file(gallery: GalleryReader, item_id: str) -> Path | None:
    """The local image file of a gallery item, or None (unknown id, non-file URI, file gone)."""
    item = gallery.get([item_id]).get(item_id)
    path = local_path(item.uri) if item is not None else None
    return path if path is not None and path.is_file() else None


class Thumbnails:
    """JPEG thumbnails by (file, size), the most recent `max_entries` kept in memory."""

    def __init__(self, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_entries: int = 512) -> None:
        self.max_pixels = max_pixels
        self.max_entries = max_entries
        self._cache: OrderedDict[tuple[str, float, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, path: Path, side: int) -> bytes:
        """A JPEG of the image at `path`, its longer side at most `side` (clamped to 32..1024); ImageError if the
        file is not a usable image."""
        side = max(MIN_SIDE, min(MAX_SIDE, side))
        key = (str(path), path.stat().st_mtime, side)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        buf = io.BytesIO()
        downscale(load_image(path, max_pixels=self.max_pixels), side).save(buf, format="JPEG", quality=85)
        data = buf.getvalue()
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return data
