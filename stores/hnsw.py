"""HNSW search settings measured on a gallery's own vectors, and stored with it.

After an index run, `tune_ef_search` samples stored vectors as queries, compares Chroma's HNSW top-k with the exact
top-k over every stored vector, and keeps the smallest ef_search whose recall@k reaches the target. The value goes
into the collection's configuration (which Chroma applies when it next opens the index: this process reopens the
store at once, others follow the change marker) and, with the recall it reached, into the collection's metadata,
so `cirgraph index --json` and later runs can report it. A gallery indexed before this existed keeps the ef_search
stored in its configuration: `ef_search_of` reads it, nothing is assumed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

    from cirgraph.stores.gallery import Gallery

TARGET_RECALL = 0.98
SAMPLE = 200  # stored vectors used as queries
K = 50
# ef_search values tried, smallest first (a binary search over them: a handful of index reopens)
EF_LADDER = (50, 64, 80, 100, 128, 160, 200, 256, 320, 400, 512, 640, 800, 1000, 1400, 2000, 3000, 4000)
EF_KEY, RECALL_KEY = "cirgraph_ef_search", "cirgraph_recall_at_50"


@dataclass(frozen=True, slots=True)
class Tuned:
    """The ef_search chosen for one collection and what it reached."""

    ef_search: int
    recall_at_50: float
    queries: int
    vectors: int


def ef_search_of(col: Collection) -> int | None:
    """The ef_search a collection searches with (its stored configuration)."""
    try:
        return int(col.configuration_json["hnsw"]["ef_search"])
    except (KeyError, TypeError, ValueError):
        return None


def kth_best(unit: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Per query, its k-th best exact cosine over the rows of `unit`: the bar a found row must reach (with equal
    vectors, e.g. repeated captions, any of the tied rows is a right answer)."""
    out = []
    for start in range(0, len(queries), 64):
        sims = queries[start:start + 64] @ unit.T
        out.append(-np.partition(-sims, k - 1, axis=1)[:, k - 1])
    return np.concatenate(out)


def recall(col: Collection, queries: np.ndarray, unit: np.ndarray, kth: np.ndarray, row_of: dict[str, int],
           k: int) -> float:
    """Recall@k of the collection's HNSW search: the share of its k results whose exact cosine reaches the k-th
    best exact cosine (1e-6 of rounding allowed)."""
    res = col.query(query_embeddings=queries, n_results=k, include=[])
    found = []
    for q, ids in enumerate(res["ids"]):
        rows = [row_of[i] for i in ids if i in row_of]
        found.append(int(np.sum(unit[rows] @ queries[q] >= kth[q] - 1e-6)) / k if rows else 0.0)
    return float(np.mean(found))


def tune_collection(reopen: Any, col: Collection, *, target: float = TARGET_RECALL, sample: int = SAMPLE,
                    k: int = K, seed: int = 0) -> Tuned | None:
    """Choose and store the smallest ef_search of EF_LADDER reaching `target` recall@k on `col`'s own vectors.

    `reopen()` reopens the store and returns the collection afresh (Chroma applies a changed ef_search only to a
    freshly loaded index). None for a collection too small to need an index.
    """
    from cirgraph.stores.chroma import page_records

    rows = list(page_records(col, f"collection {col.name!r}: get", ["embeddings"]))
    if len(rows) <= k:
        return None
    ids = [r["id"] for r in rows]
    matrix = np.asarray([r["embeddings"] for r in rows], dtype=np.float32)
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(ids), size=min(sample, len(ids)), replace=False)
    unit = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-30)
    queries = unit[picked]
    kth, row_of = kth_best(unit, queries, k), {i: n for n, i in enumerate(ids)}
    ladder = [ef for ef in EF_LADDER if ef >= k] or [k]
    measured: dict[int, float] = {}

    def measure(ef: int) -> float:
        nonlocal col
        col.modify(configuration={"hnsw": {"ef_search": ef}})
        col = reopen()
        measured[ef] = recall(col, queries, unit, kth, row_of, k)
        return measured[ef]

    lo, hi = 0, len(ladder) - 1
    if measure(ladder[hi]) >= target:
        while lo < hi:  # smallest index whose recall reaches the target
            mid = (lo + hi) // 2
            if measure(ladder[mid]) >= target:
                hi = mid
            else:
                lo = mid + 1
    chosen = ladder[hi]
    if ef_search_of(col) != chosen:
        col.modify(configuration={"hnsw": {"ef_search": chosen}})
    col.modify(metadata={**(col.metadata or {}), EF_KEY: chosen, RECALL_KEY: round(measured[chosen], 4)})
    return Tuned(chosen, round(measured[chosen], 4), len(queries), len(ids))


def tune_gallery(gallery: Gallery, **kwargs: Any) -> dict[str, dict[str, Any]]:
    """Tune every HNSW index a gallery searches (its images, its captions): role -> Tuned as a dict."""
    out: dict[str, dict[str, Any]] = {}
    for role in ("images", "captions"):
        if gallery.hnsw_collection(role) is None:
            continue
        tuned = tune_collection(lambda r=role: gallery.reopened(r), gallery.hnsw_collection(role), **kwargs)
        if tuned is not None:
            out[role] = asdict(tuned)
    gallery.settings_changed()
    return out


def after_index(gallery: Gallery, changed: bool) -> dict[str, dict[str, Any]]:
    """The HNSW settings to report after an index run: measured anew when the run changed the gallery or no
    measurement is stored yet, else the stored ones."""
    stored = stored_settings(gallery)
    if changed or any(v.get("recall_at_50") is None for v in stored.values()):
        tuned = tune_gallery(gallery)
        return {role: tuned.get(role, stored[role]) for role in stored}
    return stored


def stored_settings(gallery: Gallery) -> dict[str, dict[str, Any]]:
    """role -> the ef_search each HNSW index of the gallery searches with, and the recall measured for it (if any)."""
    out = {}
    for role in ("images", "captions"):
        col = gallery.hnsw_collection(role)
        if col is not None:
            meta = col.metadata or {}
            out[role] = {"ef_search": ef_search_of(col), "recall_at_50": meta.get(RECALL_KEY)}
    return out
