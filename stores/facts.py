"""What a search needs from a gallery that does not change between writes, read once and kept in memory.

`GalleryFacts` holds every item (id, uri, metadata), every caption (text, owner item) and, up to
RESIDENT_MAX_FLOATS, the stored vectors (image and caption embeddings, as stored). A query then makes at most one
store round trip (an HNSW query above EXACT_MAX_VECTORS, or a `where` filter), and none at all where an exact
search over the kept vectors is cheaper (`exact_top`). The facts belong to one state of the gallery: the Gallery
rebuilds them after a write, in this process or in another (cirgraph.stores.sharing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Exact search (one matrix-vector product) up to this many vectors, HNSW above. Measured with
# benchmarks/bench_query.py on MiniLM caption vectors (384-d) on 2 busy cores, a top-200 caption search: exact
# 2.5 / 5.4 / 11.3 ms against HNSW (tuned ef_search) 7.0 / 5.3 / 5.5 ms at 8k / 20k / 100k vectors.
EXACT_MAX_VECTORS = 20_000
# Up to this many floats a scan runs as a single-threaded einsum: a threaded BLAS product is faster on idle cores
# (0.1 ms against 0.5 ms for 8k x 384) but waits for its threads on busy ones (mean 7.7 ms against 1.5 ms at load 8).
SINGLE_THREAD_MAX_FLOATS = 4_000_000
# Vectors are kept in memory up to this many floats (1 GiB of float32); beyond, they are read by id on demand.
RESIDENT_MAX_FLOATS = 256 * 1024 * 1024


@dataclass
class VectorTable:
    """Stored vectors in rows, with the inverse of their norms (cosine = row @ q * inv_norm / |q|)."""

    matrix: np.ndarray  # (n, d) float32, as stored
    inv_norm: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        norms = np.linalg.norm(self.matrix, axis=1)
        self.inv_norm = (1.0 / np.where(norms == 0, 1.0, norms)).astype(np.float32)

    def cosine(self, query: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Cosine similarity of `query` (d,) to every row, or to `rows` (indexes)."""
        q = np.asarray(query, dtype=np.float32)
        q = q / max(float(np.linalg.norm(q)), 1e-30)
        matrix, inv = (self.matrix, self.inv_norm) if rows is None else (self.matrix[rows], self.inv_norm[rows])
        if matrix.size <= SINGLE_THREAD_MAX_FLOATS:
            return np.einsum("ij,j->i", matrix, q) * inv
        return (matrix @ q) * inv


@dataclass
class GalleryFacts:
    """One state of a gallery, as search reads it. Items are rows 0..n-1; captions are grouped by item."""

    ids: list[str]
    uris: list[str | None]
    metadata: list[dict[str, Any]]
    images: VectorTable | None = None  # image galleries, when resident
    caption_ids: list[str] = field(default_factory=list)  # "{item_id}#{i}", grouped by owner, in caption order
    caption_texts: list[str] = field(default_factory=list)
    caption_owner: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # item row per caption
    captions: VectorTable | None = None  # when resident
    vectors_resident: bool = True
    row: dict[str, int] = field(init=False)
    caption_row: dict[str, int] = field(init=False)
    caption_start: np.ndarray = field(init=False)  # per item: its first caption row (== next item's when none)

    def __post_init__(self) -> None:
        self.row = {item_id: i for i, item_id in enumerate(self.ids)}
        self.caption_row = {cid: i for i, cid in enumerate(self.caption_ids)}
        counts = np.bincount(self.caption_owner, minlength=len(self.ids)) if len(self.caption_owner) else \
            np.zeros(len(self.ids), dtype=np.int64)
        self.caption_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    @property
    def count(self) -> int:
        return len(self.ids)

    @property
    def caption_count(self) -> int:
        return len(self.caption_ids)

    def caption_rows(self, item_row: int) -> range:
        return range(int(self.caption_start[item_row]), int(self.caption_start[item_row + 1]))

    def captions_of(self, item_id: str) -> list[str]:
        row = self.row.get(item_id)
        return [] if row is None else [self.caption_texts[r] for r in self.caption_rows(row)]

    def item_scores(self, per_caption: np.ndarray) -> np.ndarray:
        """Per item, the best of its captions' scores (-inf for items without captions; `per_caption` holds -inf
        for captions that may not be matched)."""
        best = np.full(self.count, -np.inf, dtype=np.float64)
        has = self.caption_start[1:] > self.caption_start[:-1]
        if self.caption_count and has.any():
            best[has] = np.maximum.reduceat(per_caption, self.caption_start[:-1][has])
        return best

    def best_caption(self, item_row: int, per_caption: np.ndarray) -> str | None:
        """The text of the item's best caption under `per_caption` (the first of equals)."""
        rows = self.caption_rows(item_row)
        if not rows:
            return None
        return self.caption_texts[rows.start + int(np.argmax(per_caption[rows.start:rows.stop]))]


def top_rows(scores: np.ndarray, k: int, ids: Sequence[str]) -> list[int]:
    """Rows of the k best finite scores, best first (ties by id)."""
    finite = np.flatnonzero(np.isfinite(scores))
    if len(finite) == 0 or k < 1:
        return []
    if len(finite) > k:
        part = np.argpartition(-scores[finite], k - 1)[:k]
        finite = finite[part]
    return sorted((int(i) for i in finite), key=lambda i: (-scores[i], ids[i]))


def load_facts(items_col: Any, captions_col: Any, *, images: bool, page_records: Any, name: Any) -> GalleryFacts:
    """Read every item and caption record once (page by page); vectors too when they fit RESIDENT_MAX_FLOATS."""
    n_items = items_col.count()
    n_caps = captions_col.count() if captions_col is not None else 0
    dim = 0
    for col, n in ((items_col if images else None, n_items), (captions_col, n_caps)):
        if col is not None and n:
            head = col.get(limit=1, include=["embeddings"])["embeddings"]
            dim = max(dim, len(head[0]) if head is not None and len(head) else 0)
    resident = (n_items * images + n_caps) * max(dim, 1) <= RESIDENT_MAX_FLOATS
    include = ["uris", "metadatas"] + (["embeddings"] if images and resident else [])
    ids, uris, metas, vectors = [], [], [], []
    for r in page_records(items_col, name("get"), include):
        ids.append(r["id"])
        uris.append(r["uris"])
        metas.append(dict(r["metadatas"] or {}))
        if images and resident:
            vectors.append(r["embeddings"])
    row = {item_id: i for i, item_id in enumerate(ids)}
    caps: list[tuple[int, int, str, str, Any]] = []  # (owner row, caption index, id, text, vector)
    if captions_col is not None and n_caps:
        cap_include = ["documents", "metadatas"] + (["embeddings"] if resident else [])
        for r in page_records(captions_col, name("get captions"), cap_include):
            meta = r["metadatas"] or {}
            owner = row.get(meta.get("item_id"))
            if owner is not None:  # a caption without its item (an interrupted write) is never searched
                caps.append((owner, int(meta.get("caption_index", 0)), r["id"], r["documents"],
                             r["embeddings"] if resident else None))
    caps.sort(key=lambda c: (c[0], c[1]))
    facts = GalleryFacts(
        ids=ids, uris=uris, metadata=metas,
        images=VectorTable(np.asarray(vectors, dtype=np.float32)) if images and resident and ids else None,
        caption_ids=[c[2] for c in caps], caption_texts=[c[3] for c in caps],
        caption_owner=np.asarray([c[0] for c in caps], dtype=np.int64),
        captions=VectorTable(np.asarray([c[4] for c in caps], dtype=np.float32)) if resident and caps else None,
        vectors_resident=resident,
    )
    return facts
