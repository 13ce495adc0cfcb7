"""Per-query time of a modification-only search against the time of embedding its text alone, by gallery size.

A search's floor is its model: one MiniLM forward pass of the query text. This prints, for each gallery, the
median and mean seconds of `Retriever.search(..., config="modification-only")` (the whole pipeline: graph, text
embedding, store, fusion) and of `embed_texts([text])` alone, measured alternately on the same CIRR modification
texts in one run, and their ratio (the target is <= 3). It also prints what the store part costs by itself: the
top-200 caption search exact (one matrix product over the kept vectors) and through Chroma's HNSW (one round
trip), with HNSW's recall@50 against exact on those queries, which is where EXACT_MAX_VECTORS comes from. The
whole searches take the path the gallery takes at that size (exact up to EXACT_MAX_VECTORS, HNSW above).

Galleries: `cirr-val` is the caption-space CIRR val gallery (2,295 images, 8,163 real MiniLM caption vectors),
what `cirgraph eval run cirr --captions ...` searches; the sizes (default 2k, 20k, 100k) are caption-only
galleries of one real-shaped caption vector an item (benchmarks/real_vectors.py: real MiniLM vectors of the
annotation texts, beyond 34,917 unit means of two of them). Each gallery is indexed with the gallery's HNSW
settings and its ef_search is tuned as after `cirgraph index`; building 100k takes minutes.

    python benchmarks/bench_query.py --data ../shared/data
    python benchmarks/bench_query.py --sizes 2000 20000 --queries 50
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_vectors import DEFAULT_CACHE, MODEL, real_shaped, real_texts, real_vectors


def build(store: Path, name: str, ids: list[str], captions: list[list[str]], vectors: list[np.ndarray]):
    """A caption-only gallery from precomputed caption vectors; (gallery, seconds to add, tuning result, seconds)."""
    from cirgraph.stores.chroma import embedded_client
    from cirgraph.stores.gallery import Gallery, NewItem
    from cirgraph.stores.hnsw import tune_gallery

    g = Gallery(embedded_client(store), name, text_embedder=MODEL, create=True)
    started = time.perf_counter()
    for s in range(0, len(ids), 5000):
        g.add([NewItem(id=i, uri=None, metadata={"item_id": i}, captions=c, caption_embeddings=v)
               for i, c, v in zip(ids[s:s + 5000], captions[s:s + 5000], vectors[s:s + 5000])])
    added = time.perf_counter() - started
    started = time.perf_counter()
    tuned = tune_gallery(g)
    return g, added, tuned, time.perf_counter() - started


def cirr_val(data: Path, real: np.ndarray) -> tuple[list[str], list[list[str]], list[np.ndarray]]:
    """The CIRR val gallery's names, captions and caption vectors (rows of the cached real vectors)."""
    entries = json.loads((data / "cirr" / "mllm_captions.json").read_text(encoding="utf-8"))
    val = set(json.loads((data / "cirr" / "split.rc2.val.json").read_text(encoding="utf-8")))
    ids, caps, vecs, row = [], [], [], 0
    for e in entries:
        n = len(e["captions"])
        name = e["candidate"].rsplit(".", 1)[0]
        if name in val:
            ids.append(name)
            caps.append(list(e["captions"]))
            vecs.append(real[row:row + n])
        row += n
    return ids, caps, vecs


def measure(g, texts: list[str], embedder, reference: str) -> dict[str, float]:
    """Alternate whole searches and embeddings alone on the same texts; medians, means and the store's part."""
    import cirgraph.stores.search as search_module
    from cirgraph.agents.query import GalleryRef
    from cirgraph.retriever import Retriever

    retriever = Retriever(gallery=g, text_embedder=embedder, config="modification-only")
    for text in texts[:2]:  # warm: the graph compiled, the facts read (on a gallery's second search)
        retriever.search(GalleryRef(reference), text, k=50)
    search_s, embed_s = [], []
    for text in texts:
        t0 = time.perf_counter()
        embedder.embed_texts([text])
        t1 = time.perf_counter()
        retriever.search(GalleryRef(reference), text, k=50)
        t2 = time.perf_counter()
        embed_s.append(t1 - t0)
        search_s.append(t2 - t1)
    vectors = embedder.embed_texts(texts)
    exact_s, hnsw_s, recalls = [], [], []
    limit = search_module.EXACT_MAX_VECTORS
    for vec in vectors:
        try:
            search_module.EXACT_MAX_VECTORS = 10**12
            t0 = time.perf_counter()
            exact = g.query_captions(vec, 200)
            t1 = time.perf_counter()
            search_module.EXACT_MAX_VECTORS = 0
            approx = g.query_captions(vec, 200)
        finally:
            search_module.EXACT_MAX_VECTORS = limit
        t2 = time.perf_counter()
        exact_s.append(t1 - t0)
        hnsw_s.append(t2 - t1)
        recalls.append(len({h.id for h in approx[:50]} & {h.id for h in exact[:50]}) / 50)
    med = statistics.median
    return {"search_p50": med(search_s), "search_mean": statistics.fmean(search_s), "embed_p50": med(embed_s),
            "embed_mean": statistics.fmean(embed_s), "ratio_p50": med(search_s) / med(embed_s),
            "ratio_mean": statistics.fmean(search_s) / statistics.fmean(embed_s), "exact_p50": med(exact_s),
            "hnsw_p50": med(hnsw_s), "recall50": statistics.fmean(recalls)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="Where the real vectors are cached.")
    parser.add_argument("--sizes", type=int, nargs="*", default=[2000, 20000, 100000])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--no-cirr", action="store_true", help="Skip the CIRR val caption gallery.")
    args = parser.parse_args()

    import os

    from cirgraph.tools.embedders import load_text_embedder

    real = real_vectors(args.data, args.cache)
    texts_all = real_texts(args.data)
    queries = [q["caption"] for q in json.loads((args.data / "cirr" / "cap.rc2.val.dev.json").read_text())]
    queries = [q for q in queries if q.strip()][: args.queries]
    embedder = load_text_embedder(MODEL)
    print(f"{os.cpu_count()} CPUs; {len(queries)} CIRR val modification texts a gallery; embedder "
          f"{type(embedder).__name__}; times in ms")
    header = (f"{'gallery':>9} {'items':>7} {'vectors':>8} {'add s':>6} {'tune s':>6} {'ef':>4} {'search':>7} "
              f"{'embed':>6} {'ratio':>5} {'mean ratio':>10} {'exact':>6} {'hnsw':>6} {'R@50':>5}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        plans = [] if args.no_cirr else [("cirr-val", *cirr_val(args.data, real))]
        for n in args.sizes:
            vecs = real_shaped(real, n)
            plans.append((f"{n // 1000}k", [f"i{i}" for i in range(n)],
                          [[texts_all[i] if i < len(texts_all) else f"mixture {i}"] for i in range(n)],
                          [vecs[i:i + 1] for i in range(n)]))
        for label, ids, caps, vecs in plans:
            g, added, tuned, tune_s = build(Path(tmp) / label, label.replace("-", ""), ids, caps, vecs)
            m = measure(g, queries, embedder, ids[0])
            ef = tuned.get("captions", {}).get("ef_search", "-")
            rows.append(f"{label:>9} {len(ids):>7} {sum(len(v) for v in vecs):>8} {added:>6.1f} {tune_s:>6.1f} "
                        f"{ef:>4} {m['search_p50'] * 1e3:>7.1f} {m['embed_p50'] * 1e3:>6.1f} "
                        f"{m['ratio_p50']:>5.2f} {m['ratio_mean']:>10.2f} {m['exact_p50'] * 1e3:>6.2f} "
                        f"{m['hnsw_p50'] * 1e3:>6.2f} {m['recall50']:>5.3f}")
            print(header if len(rows) == 1 else "", rows[-1], sep="\n" if len(rows) == 1 else "", flush=True)
    print("search / embed: p50 of whole modification-only searches (k=50) over p50 of the embedding alone; "
          "exact / hnsw: the top-200 caption search alone; R@50: HNSW top-50 against exact")


if __name__ == "__main__":
    main()
