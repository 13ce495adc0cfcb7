"""An exact-search, in-memory GalleryReader for unit tests and small experiments.

    gallery = MemoryGallery.build(["a", "b"], image_embeddings=embs, captions={"a": ["a red dress"]},
                                  text_embedder=HashTextEmbedder())

Same contract as the Chroma gallery (cirgraph.stores.base.GalleryReader): cosine scores, excluded ids, `where`
filters on metadata (equality, $eq, $ne, $in, $nin, and $and / $or of those), an item's caption score being its
best caption's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cirgraph.errors import GalleryError
from cirgraph.stores.base import Hit, Item

if TYPE_CHECKING:
    from cirgraph.tools.protocols import TextEmbedder


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n == 0, 1.0, n)


def _compare(op: str, have: Any, value: Any) -> bool:
    if op == "$eq":
        return have == value
    if op == "$ne":
        return have != value
    if op == "$in":
        return have in value
    if op == "$nin":
        return have not in value
    raise GalleryError(f"where filter: unsupported operator {op!r} (use $eq, $ne, $in, $nin)")


def matches(metadata: Mapping[str, Any], where: Mapping[str, Any] | None) -> bool:
    """Whether an item's metadata satisfies a Chroma-style `where` filter (the subset the pipeline uses)."""
    if not where:
        return True
    for key, cond in where.items():
        if key == "$and":
            ok = all(matches(metadata, c) for c in cond)
        elif key == "$or":
            ok = any(matches(metadata, c) for c in cond)
        elif isinstance(cond, Mapping):
            ((op, value),) = cond.items()
            ok = _compare(op, metadata.get(key), value)
        else:
            ok = metadata.get(key) == cond
        if not ok:
            return False
    return True


class MemoryGallery:
    """Items with optional image embeddings (n, d) and optional caption embeddings (per item (m, d)).

    Search is exact and vectorised (one matrix product per query), so it also serves benchmarks of a few thousand
    items without becoming the bottleneck.
    """

    def __init__(self, name: str = "memory", *, ids: Sequence[str], image_embeddings: np.ndarray | None = None,
                 captions: Mapping[str, Sequence[str]] | None = None,
                 caption_embeddings: Mapping[str, np.ndarray] | None = None,
                 uris: Mapping[str, str] | None = None, metadata: Mapping[str, Mapping[str, Any]] | None = None):
        self.name = name
        self.ids = list(ids)
        if len(set(self.ids)) != len(self.ids):
            raise GalleryError(f"gallery {name!r}: duplicate ids")
        self._index = {item_id: i for i, item_id in enumerate(self.ids)}
        self._images = None if image_embeddings is None else _unit(image_embeddings)
        if self._images is not None and len(self._images) != len(self.ids):
            raise GalleryError(f"gallery {name!r}: {len(self._images)} image embeddings for {len(self.ids)} ids")
        self.captions = {k: list(v) for k, v in (captions or {}).items()}
        self._captions = {k: _unit(np.atleast_2d(v)) for k, v in (caption_embeddings or {}).items()
                          if len(v) and k in self._index}
        # all caption vectors stacked, grouped by item: per-item best scores come from one product + reduceat
        owners = [i for i, item_id in enumerate(self.ids) if item_id in self._captions]
        self._cap_rows = np.array(owners, dtype=np.int64)
        self._cap_matrix = (np.vstack([self._captions[self.ids[i]] for i in owners]) if owners else None)
        sizes = [len(self._captions[self.ids[i]]) for i in owners]
        self._cap_starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) if owners else None
        self.uris = dict(uris or {})
        self.metadata = {k: dict(v) for k, v in (metadata or {}).items()}
        self.queries = 0  # ANN-style queries served, for tests that count them

    @classmethod
    def build(cls, ids: Sequence[str], *, image_embeddings: np.ndarray | None = None,
              captions: Mapping[str, Sequence[str]] | None = None, text_embedder: TextEmbedder | None = None,
              name: str = "memory", **kwargs: Any) -> MemoryGallery:
        """A gallery whose caption embeddings are computed with `text_embedder` (needed when captions are given)."""
        caption_embeddings = None
        if captions:
            if text_embedder is None:
                raise GalleryError(f"gallery {name!r}: captions were given without a text embedder to embed them")
            caption_embeddings = {k: text_embedder.embed_texts(list(v)) for k, v in captions.items() if v}
        return cls(name, ids=ids, image_embeddings=image_embeddings, captions=captions,
                   caption_embeddings=caption_embeddings, **kwargs)

    @property
    def has_images(self) -> bool:
        return self._images is not None

    @property
    def has_captions(self) -> bool:
        return bool(self._captions)

    def count(self) -> int:
        return len(self.ids)

    def _mask(self, where: Mapping[str, Any] | None, exclude_ids: Sequence[str]) -> np.ndarray:
        """Which items may be returned."""
        allowed = np.ones(len(self.ids), dtype=bool)
        for item_id in exclude_ids:
            if item_id in self._index:
                allowed[self._index[item_id]] = False
        if where:
            for i, item_id in enumerate(self.ids):
                allowed[i] &= matches(self.metadata.get(item_id, {}), where)
        return allowed

    def _top(self, scores: np.ndarray, k: int) -> list[Hit]:
        """Hits of the k best finite scores (scores: one per item, -inf for items not eligible)."""
        eligible = int(np.isfinite(scores).sum())
        k = min(k, eligible)
        if k <= 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        order = sorted((int(i) for i in top if np.isfinite(scores[i])), key=lambda i: (-scores[i], self.ids[i]))
        return [Hit(id=self.ids[i], score=float(scores[i]), uri=self.uris.get(self.ids[i]),
                    captions=list(self.captions.get(self.ids[i], [])),
                    metadata=dict(self.metadata.get(self.ids[i], {}))) for i in order[:k]]

    def query_images(self, embedding: np.ndarray, k: int, *, where: Mapping[str, Any] | None = None,
                     exclude_ids: Sequence[str] = ()) -> list[Hit]:
        if self._images is None:
            raise GalleryError(f"gallery {self.name!r} has no image embeddings")
        self.queries += 1
        scores = self._images @ _unit(np.asarray(embedding).reshape(-1))
        return self._top(np.where(self._mask(where, exclude_ids), scores, -np.inf), k)

    def query_captions(self, embedding: np.ndarray, k: int, *, where: Mapping[str, Any] | None = None,
                       exclude_ids: Sequence[str] = ()) -> list[Hit]:
        if self._cap_matrix is None:
            raise GalleryError(f"gallery {self.name!r} has no caption embeddings")
        self.queries += 1
        per_caption = self._cap_matrix @ _unit(np.asarray(embedding).reshape(-1))
        scores = np.full(len(self.ids), -np.inf, dtype=np.float64)
        scores[self._cap_rows] = np.maximum.reduceat(per_caption, self._cap_starts)
        return self._top(np.where(self._mask(where, exclude_ids), scores, -np.inf), k)

    def image_embeddings(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        if self._images is None:
            return {}
        return {i: self._images[self._index[i]] for i in ids if i in self._index}

    def caption_embeddings(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        return {i: self._captions[i] for i in ids if i in self._captions}

    def get(self, ids: Sequence[str]) -> dict[str, Item]:
        return {i: Item(id=i, uri=self.uris.get(i), captions=list(self.captions.get(i, [])),
                        metadata=dict(self.metadata.get(i, {}))) for i in ids if i in self._index}


TOY_ITEMS: dict[str, str] = {
    "red-dress": "a red dress on a hanger",
    "blue-dress": "a blue dress on a hanger",
    "green-dress": "a green dress on a hanger",
    "red-shirt": "a red shirt with long sleeves",
    "blue-shirt": "a blue shirt with long sleeves",
    "black-dog": "a black dog running on grass",
    "white-dog": "a white dog sleeping on a sofa",
    "white-cat": "a white cat sitting on a sofa",
}


def build_toy_gallery(directory: Any, items: Mapping[str, str] = TOY_ITEMS, *, images: bool = True,
                      captions: bool = True, dim: int = 64, name: str = "toy") -> tuple[MemoryGallery, Any, Any]:
    """A small world for tests: one PNG per item under `directory`, hash embedders that place each image near the
    words of its description, and a MemoryGallery over them. Returns (gallery, image-text embedder, text embedder).
    """
    from pathlib import Path

    from PIL import Image as PILImage

    from cirgraph.tools.hash_embedders import HashImageTextEmbedder, HashTextEmbedder
    from cirgraph.tools.images import image_fingerprint

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    image_words, uris, pictures = {}, {}, []
    for n, (item_id, words) in enumerate(items.items()):
        img = PILImage.new("RGB", (24, 16), ((37 * n) % 256, (91 * n + 40) % 256, (53 * n + 90) % 256))
        img.putpixel((n % 24, 0), (255, 255, 255))
        path = folder / f"{item_id}.png"
        img.save(path)
        pictures.append(img)
        image_words[image_fingerprint(img)] = words
        uris[item_id] = str(path)
    embedder = HashImageTextEmbedder(dim=dim, image_words=image_words)
    text_embedder = HashTextEmbedder(dim=dim)
    gallery = MemoryGallery.build(
        list(items), image_embeddings=embedder.embed_images(pictures) if images else None,
        captions={k: [v] for k, v in items.items()} if captions else None, text_embedder=text_embedder,
        uris=uris, name=name,
    )
    embedder.calls = text_embedder.calls = 0
    return gallery, embedder, text_embedder
