"""The read side of a Gallery that search uses: kept facts (cirgraph.stores.facts), exact and HNSW queries.

A search asks the store at most once: below EXACT_MAX_VECTORS vectors, and under a `where` filter (one round trip
for the matching ids), it is one matrix product over the kept vectors; above, one HNSW query for ids and distances,
whose captions, uris and metadata come from the kept facts. The facts are read once per state of the gallery and
rebuilt after a write (this process's, or another's through the store's change marker).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cirgraph.errors import GalleryError, InputError
from cirgraph.stores import chroma
from cirgraph.stores.base import Hit
from cirgraph.stores.facts import EXACT_MAX_VECTORS, GalleryFacts, VectorTable, load_facts, top_rows

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

SERVER_RECHECK_S = 5.0  # a Chroma server has no change marker: its counts are compared at most this often


def reread_once(method: Callable[..., Any]) -> Callable[..., Any]:
    """A read of an embedded store that fails is tried once more on the store reopened: a process that reads while
    another writes can meet the write half-way (Chroma: "Error finding id", an HNSW label whose record is not there
    yet); the reopened store holds the finished write. A second failure is the error."""

    @functools.wraps(method)
    def read(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except GalleryError:
            if self._watch is None:  # a Chroma server does its own locking: nothing to reopen
                raise
            self._watch.reopen(chroma.reopen_embedded)
            return method(self, *args, **kwargs)

    return read


def query_vector(embedding: np.ndarray, k: int) -> np.ndarray:
    """A query as a (d,) float32 vector; InputError for other shapes, non-finite values or a bad k."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError("k", f"expected a positive integer, got {k!r}")
    vec = np.asarray(embedding, dtype=np.float32)
    if vec.ndim == 2 and vec.shape[0] == 1:
        vec = vec[0]
    if vec.ndim != 1 or vec.size == 0:
        raise InputError("query embedding", f"expected shape (d,) or (1, d), got {vec.shape}")
    if not np.all(np.isfinite(vec)):
        raise InputError("query embedding", "contains NaN or infinite values")
    return vec


class FactSearch:
    """Search over kept facts; mixed into cirgraph.stores.gallery.Gallery, whose collections and guards it uses."""

    _facts: tuple[Any, GalleryFacts] | None = None
    _facts_lock = threading.Lock()  # replaced per gallery by Gallery.__init__
    _searches = 0  # searches made without kept facts

    def _facts_key(self) -> Any:
        """What identifies the gallery's current state: the store's generation and writes in this process (an
        embedded store), or this object's writes and the collections' counts, rechecked every SERVER_RECHECK_S."""
        if self._watch is not None:
            return self._generation, self._watch.writes
        checked, counts = self._server_stamp
        if time.monotonic() - checked > SERVER_RECHECK_S:
            counts = tuple(self._guard("count", c.count) for c in (self.items_collection, self._captions) if c)
            self._server_stamp = (time.monotonic(), counts)
        return self._writes, counts

    def facts(self, *, build: bool = True) -> GalleryFacts | None:
        """The gallery's items, captions and (when they fit in memory) vectors, read once per state of the gallery;
        None when they are not read yet and `build` is False (reads during indexing do not build them)."""
        self._follow()
        key, kept = self._facts_key(), self._facts
        if kept is not None and kept[0] == key:
            return kept[1]
        if not build:
            return None
        with self._facts_lock:
            kept = self._facts
            if kept is None or kept[0] != key:
                facts = self._guard("read", load_facts, self.items_collection, self._captions,
                                    images=self._images is not None, page_records=chroma.page_records,
                                    name=self._what)
                kept = self._facts = (key, facts)
            return kept[1]

    def _search_facts(self) -> GalleryFacts | None:
        """The facts a search uses: the kept ones, else read now; but a gallery's first search in a process asks
        the store directly (reading 17k captions costs a one-shot `cirgraph search` about a second, more than the
        few round trips of one search), and from its second search on the facts are read and kept."""
        facts = self.facts(build=False)
        if facts is not None:
            return facts
        self._searches += 1
        return self.facts() if self._searches > 1 else None

    def _hit(self, facts: GalleryFacts, row: int, score: float, matched: str | None = None) -> Hit:
        meta = dict(facts.metadata[row])
        if matched is not None:
            meta["matched_caption"] = matched
        return Hit(id=facts.ids[row], score=float(score), uri=facts.uris[row],
                   captions=facts.captions_of(facts.ids[row]), metadata=meta)

    def _cosine(self, table: VectorTable, vec: np.ndarray, what: str) -> np.ndarray:
        if vec.size != table.matrix.shape[1]:
            raise GalleryError(f"{self._what(what)} failed: the query embedding has dimension {vec.size}, the "
                               f"gallery's vectors {table.matrix.shape[1]}")
        return table.cosine(vec)

    def _excluded_rows(self, facts: GalleryFacts, exclude: set[str]) -> list[int]:
        return [facts.row[x] for x in exclude if x in facts.row]

    def _only_where(self, scores: np.ndarray, col: Collection, where: Mapping[str, Any],
                    rows: dict[str, int]) -> np.ndarray:
        """`scores` (one per row of `rows`) with -inf for the records that do not match a `where` filter: one round
        trip, ids only."""
        res = self._guard("filter", col.get, where=dict(where), include=[])
        keep = np.asarray([rows[i] for i in res["ids"] if i in rows], dtype=np.int64)
        allowed = np.full_like(scores, -np.inf)
        allowed[keep] = scores[keep]
        return allowed

    def hnsw_collection(self, role: str) -> Collection | None:
        """The collection whose HNSW index searches `role` ("images" or "captions"); None where there is none."""
        self._follow()
        return self._images if role == "images" else self._captions

    def reopened(self, role: str) -> Collection | None:
        """Reopen the store now (a changed index setting applies to a freshly loaded index) and return the
        collection of `role` afresh."""
        if self._watch is not None:
            self._watch.reopen(chroma.reopen_embedded)
        else:
            with self._reopen_lock:
                self._open(self.client, self._image_ef, self._text_ef, create=False)
        return self.hnsw_collection(role)

    def settings_changed(self) -> None:
        """After an index setting changed: other processes reopen the store on their next read."""
        self._changed()

    @reread_once
    def query_images(self, embedding: np.ndarray, k: int, *, where: Mapping[str, Any] | None = None,
                     exclude_ids: Sequence[str] = ()) -> list[Hit]:
        """Top-k by image similarity: exact (one matrix product over the kept vectors) in a gallery of up to
        EXACT_MAX_VECTORS images and under a `where` filter, else one HNSW query. Excluded ids are over-fetched
        (k + len(exclude)): in benchmarks/bench_hnsw.py that is several times faster than a `$nin` filter."""
        vec, exclude = query_vector(embedding, k), set(exclude_ids)
        if self._images is None:
            return []
        facts = self._search_facts()
        if facts is None:
            return self._direct_images(vec, k, where, exclude)
        if facts.count == 0:
            return []
        if facts.images is not None and (where or facts.count <= EXACT_MAX_VECTORS):
            scores = self._cosine(facts.images, vec, "query images").astype(np.float64)
            if where:
                scores = self._only_where(scores, self._images, where, facts.row)
            scores[self._excluded_rows(facts, exclude)] = -np.inf
            return [self._hit(facts, r, scores[r]) for r in top_rows(scores, k, facts.ids)]
        n = min(k + len(exclude), facts.count)
        res = self._guard("query images", self._images.query, query_embeddings=[vec], n_results=n,
                          where=dict(where) if where else None, include=["distances"])
        hits = [self._hit(facts, facts.row[i], 1.0 - float(d)) for i, d in zip(res["ids"][0], res["distances"][0])
                if i not in exclude and i in facts.row]
        return hits[:k]

    @reread_once
    def query_captions(self, embedding: np.ndarray, k: int, *, where: Mapping[str, Any] | None = None,
                       exclude_ids: Sequence[str] = ()) -> list[Hit]:
        """Top-k items by their best caption; `metadata["matched_caption"]` is that caption.

        Exact (one matrix product over the kept caption vectors) up to EXACT_MAX_VECTORS captions and under a
        `where` filter; above, one HNSW query whose captions are over-fetched (k + excluded items, times the mean
        captions per item) and doubled until k distinct items are found: measured several times faster than a
        `$nin` filter.
        """
        vec, exclude = query_vector(embedding, k), set(exclude_ids)
        if self._captions is None:
            return []
        facts = self._search_facts()
        if facts is None:
            return self._direct_captions(vec, k, where, exclude)
        if facts.caption_count == 0:
            return []
        if facts.captions is not None and (where or facts.caption_count <= EXACT_MAX_VECTORS):
            per_caption = self._cosine(facts.captions, vec, "query captions")
            if where:
                per_caption = self._only_where(per_caption, self._captions, where, facts.caption_row)
            scores = facts.item_scores(per_caption)
            scores[self._excluded_rows(facts, exclude)] = -np.inf
            return [self._hit(facts, r, scores[r], facts.best_caption(r, per_caption))
                    for r in top_rows(scores, k, facts.ids)]
        return self._hnsw_captions(facts, vec, k, where, exclude)

    def _hnsw_captions(self, facts: GalleryFacts, vec: np.ndarray, k: int, where: Mapping[str, Any] | None,
                       exclude: set[str]) -> list[Hit]:
        total = facts.caption_count
        n = min(total, (k + len(exclude)) * -(-total // max(1, facts.count)))
        while True:
            res = self._guard("query captions", self._captions.query, query_embeddings=[vec], n_results=n,
                              where=dict(where) if where else None, include=["distances"])
            best: dict[str, tuple[float, str]] = {}
            for cid, d in zip(res["ids"][0], res["distances"][0]):
                item_id = cid.rsplit("#", 1)[0]
                if item_id not in exclude and cid in facts.caption_row:
                    best.setdefault(item_id, (1.0 - float(d), cid))  # results come best first
            if len(best) >= k or n >= total or len(res["ids"][0]) < n:
                break
            n = min(total, 2 * n)
        top = sorted(best.items(), key=lambda kv: -kv[1][0])[:k]
        return [self._hit(facts, facts.row[i], s, facts.caption_texts[facts.caption_row[cid]])
                for i, (s, cid) in top if i in facts.row]

    # --- a first search, before the facts are read: HNSW and a few round trips -----------------------------------

    def _direct_images(self, vec: np.ndarray, k: int, where: Mapping[str, Any] | None, exclude: set[str]) -> list[Hit]:
        n = min(k + len(exclude), self._guard("count", self._images.count))
        if n == 0:
            return []
        res = self._guard("query images", self._images.query, query_embeddings=[vec], n_results=n,
                          where=dict(where) if where else None, include=["distances", "uris", "metadatas"])
        uris = res["uris"][0] if res.get("uris") else [None] * len(res["ids"][0])
        hits = [Hit(id=i, score=1.0 - float(d), uri=u, metadata=dict(m or {}))
                for i, d, u, m in zip(res["ids"][0], res["distances"][0], uris, res["metadatas"][0])
                if i not in exclude][:k]
        captions = self.captions_of([h.id for h in hits])
        for hit in hits:
            hit.captions = captions.get(hit.id, [])
        return hits

    def _direct_captions(self, vec: np.ndarray, k: int, where: Mapping[str, Any] | None,
                         exclude: set[str]) -> list[Hit]:
        total = self._guard("count", self._captions.count)
        if total == 0:
            return []
        n = min(total, (k + len(exclude)) * -(-total // max(1, self._guard("count", self.items_collection.count))))
        while True:
            res = self._guard("query captions", self._captions.query, query_embeddings=[vec], n_results=n,
                              where=dict(where) if where else None, include=["distances", "documents"])
            best: dict[str, tuple[float, str]] = {}
            for cid, d, doc in zip(res["ids"][0], res["distances"][0], res["documents"][0]):
                item_id = cid.rsplit("#", 1)[0]
                if item_id not in exclude:
                    best.setdefault(item_id, (1.0 - float(d), doc))  # results come best first
            if len(best) >= k or n >= total or len(res["ids"][0]) < n:
                break
            n = min(total, 2 * n)
        top = sorted(best.items(), key=lambda kv: -kv[1][0])[:k]
        items = self.get([i for i, _ in top])
        return [Hit(id=i, score=s, uri=items[i].uri, captions=items[i].captions,
                    metadata={**items[i].metadata, "matched_caption": doc}) for i, (s, doc) in top if i in items]
