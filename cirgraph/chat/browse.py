"""Finding gallery items to start a conversation from: by id or caption text, or a random sample.

Works on any gallery reader: the item ids come from the gallery itself (a list of ids, or `iter_items`) and are
kept until the gallery's count changes; captions are searched with Chroma's document filter where the gallery has
a caption collection, else read in batches (at most `SCAN_LIMIT` items). Answers are gallery items, named by id;
whether an item has an image the server can show is decided by the file its stored URI names.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cirgraph.agents.services import local_path
from cirgraph.errors import GalleryError

if TYPE_CHECKING:
    from cirgraph.stores.base import GalleryReader, Item

SCAN_LIMIT = 50_000  # items whose captions are read one batch at a time when the store cannot filter them
BATCH = 500


def has_image_file(uri: str | None) -> bool:
    """True when a stored URI names an image file on this machine (so the thumbnail route can serve it)."""
    path = local_path(uri)
    try:
        return path is not None and path.is_file()
    except OSError:
        return False


class ItemFinder:
    """Id and caption look-ups over one gallery."""

    def __init__(self, gallery: GalleryReader) -> None:
        self.gallery = gallery
        self._ids: list[str] = []
        self._count: int | None = None
        self._lock = threading.Lock()

    def ids(self) -> list[str]:
        """Every item id, in the gallery's order (listed again when the gallery's count changes)."""
        count = self.gallery.count()
        with self._lock:
            if count != self._count:
                listed = getattr(self.gallery, "ids", None)
                if isinstance(listed, Sequence) and not isinstance(listed, str):
                    self._ids = list(listed)
                elif hasattr(self.gallery, "iter_items"):
                    self._ids = [item_id for item_id, _, _ in self.gallery.iter_items()]
                else:
                    raise GalleryError(f"gallery {self.gallery.name!r}: its items cannot be listed")
                self._count = count
            return self._ids

    def sample(self, n: int, rng: random.Random | None = None) -> list[Item]:
        """Up to `n` items drawn at random."""
        ids = self.ids()
        chosen = (rng or random.Random()).sample(ids, min(n, len(ids)))
        found = self.gallery.get(chosen)
        return [found[i] for i in chosen if i in found]

    def find(self, query: str, limit: int) -> list[Item]:
        """Items whose id is `query`, then whose id contains it, then whose caption contains it (case ignored)."""
        needle = query.strip().lower()
        if not needle:
            return []
        ids = self.ids()
        exact = [i for i in ids if i.lower() == needle]
        partial = [i for i in ids if needle in i.lower() and i.lower() != needle]
        wanted = list(dict.fromkeys(exact + partial))[:limit]
        if len(wanted) < limit:
            wanted += [i for i in self._caption_matches(query.strip(), limit * 2) if i not in wanted]
        found = self.gallery.get(wanted[:limit])
        return [found[i] for i in wanted[:limit] if i in found]

    def _caption_matches(self, query: str, limit: int) -> list[str]:
        collection = getattr(self.gallery, "captions_collection", None)
        if collection is not None:
            return self._chroma_matches(collection, query, limit)
        needle, hits = query.lower(), []
        ids = self.ids()[:SCAN_LIMIT]
        for start in range(0, len(ids), BATCH):
            for item_id, item in self.gallery.get(ids[start:start + BATCH]).items():
                if any(needle in caption.lower() for caption in item.captions):
                    hits.append(item_id)
                    if len(hits) >= limit:
                        return hits
        return hits

    def _chroma_matches(self, collection: Any, query: str, limit: int) -> list[str]:
        """Chroma's `$contains` is case-sensitive: the text as typed, in lower case, and capitalised."""
        from cirgraph.stores import chroma

        hits: list[str] = []
        for variant in dict.fromkeys((query, query.lower(), query[:1].upper() + query[1:].lower())):
            res = chroma.guarded(f"gallery {self.gallery.name!r}: find captions", collection.get,
                                 where_document={"$contains": variant}, include=["metadatas"], limit=limit * 4)
            for meta in res.get("metadatas") or []:
                item_id = (meta or {}).get("item_id")
                if item_id and item_id not in hits:
                    hits.append(item_id)
            if len(hits) >= limit:
                break
        return hits[:limit]
