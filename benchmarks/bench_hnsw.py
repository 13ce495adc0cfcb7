"""HNSW recall and query latency of an embedded Chroma collection on real embeddings, to choose the gallery's index
settings (M, ef_construction) and to see what ef_search a gallery needs.

Data (benchmarks/real_vectors.py, MiniLM all-MiniLM-L6-v2, 384-d): `cirr` is CIRR's 17,390 gallery captions (the
quick start's gallery); `real` is `--n` real-shaped vectors (default 100k): the 34,917 real vectors of every
annotation text (CIRR, CIRCO, FashionIQ), then unit means of two of them. Queries are the CIRR val modification
texts (held out of the collection). For each (max_neighbors M, ef_construction) a collection is built once and
ef_search is swept (changed with `collection.modify` and a reopen, which is how Chroma applies it). Recall@k is
measured against exact numpy search over the same queries; latency is per single query, after a warm-up. A last
section compares the two ways of excluding ids (over-fetching k + len(exclude) versus a `$nin` metadata filter).
`--random` measures uniform random unit vectors instead (HNSW's worst case, where the old settings came from).

    python benchmarks/bench_hnsw.py --data ../shared/data                        # cirr, then 100k real-shaped
    python benchmarks/bench_hnsw.py --data ../shared/data --sets cirr --builds 16:100,16:200,32:200
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time

import numpy as np


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def open_client(path: str):
    import chromadb
    from chromadb.api.shared_system_client import SharedSystemClient
    from chromadb.config import Settings

    SharedSystemClient.clear_system_cache()  # forget the cached client, so a reopen reloads the index
    return chromadb.PersistentClient(path=path, settings=Settings(anonymized_telemetry=False))


def build(path: str, name: str, data: np.ndarray, m: int, efc: int) -> float:
    """Create the collection and insert every vector in max-size batches; return the seconds it took."""
    from cirgraph.stores.embedding_function import NoEmbeddingFunction

    client = open_client(path)
    col = client.create_collection(
        name, embedding_function=NoEmbeddingFunction(),
        configuration={"hnsw": {"space": "cosine", "max_neighbors": m, "ef_construction": efc, "ef_search": 100}},
    )
    step = client.get_max_batch_size()
    started = time.perf_counter()
    for i in range(0, len(data), step):
        ids = [str(j) for j in range(i, min(len(data), i + step))]
        col.add(ids=ids, embeddings=data[i : i + step], metadatas=[{"item_id": j} for j in ids])
    col.count()
    return time.perf_counter() - started


def measure(path: str, name: str, queries: np.ndarray, truth: tuple, k: int, ef_search: int) -> tuple:
    """Recall@k and per-query latency (p50, p95 in ms) at one ef_search. `truth` is (the collection's vectors, each
    query's k-th best exact cosine): a result counts when its exact cosine reaches that bar, so any of several
    equal vectors (repeated captions) is a right answer."""
    from cirgraph.stores.embedding_function import NoEmbeddingFunction

    open_client(path).get_collection(name, embedding_function=NoEmbeddingFunction()).modify(
        configuration={"hnsw": {"ef_search": ef_search}}
    )
    col = open_client(path).get_collection(name, embedding_function=NoEmbeddingFunction())
    col.query(query_embeddings=queries[:1], n_results=k, include=[])  # loads the index
    hits, times = 0, []
    data, kth = truth
    for q, want in zip(queries, kth):
        started = time.perf_counter()
        res = col.query(query_embeddings=q[None, :], n_results=k, include=[])
        times.append((time.perf_counter() - started) * 1000)
        hits += int(np.sum(data[[int(i) for i in res["ids"][0]]] @ q >= want - 1e-6))
    times.sort()
    return hits / (k * len(queries)), statistics.median(times), times[int(0.95 * (len(times) - 1))]


def exclusion(path: str, name: str, queries: np.ndarray, k: int, n_exclude: int) -> dict[str, float]:
    """Median latency (ms) of excluding ids by over-fetching versus by a `$nin` filter on item_id."""
    from cirgraph.stores.embedding_function import NoEmbeddingFunction

    col = open_client(path).get_collection(name, embedding_function=NoEmbeddingFunction())
    col.query(query_embeddings=queries[:1], n_results=k, include=[])
    out = {}
    for label in ("overfetch", "$nin filter"):
        times = []
        for q in queries[:50]:
            exclude = [str(i) for i in range(n_exclude)]
            started = time.perf_counter()
            if label == "overfetch":
                res = col.query(query_embeddings=q[None, :], n_results=k + n_exclude, include=["distances"])
                kept = [i for i in res["ids"][0] if i not in set(exclude)][:k]
            else:
                res = col.query(query_embeddings=q[None, :], n_results=k, include=["distances"],
                                where={"item_id": {"$nin": exclude}})
                kept = res["ids"][0]
            times.append((time.perf_counter() - started) * 1000)
            assert len(kept) == k
        out[label] = statistics.median(times)
    return out


def dataset(args: argparse.Namespace, name: str) -> tuple[str, np.ndarray, np.ndarray]:
    """(label, collection vectors, query vectors)."""
    import json
    import sys
    from pathlib import Path

    if args.random:
        rng = np.random.default_rng(0)
        return f"{args.n} random {args.dim}-d", unit_rows(rng, args.n, args.dim), unit_rows(rng, args.queries, args.dim)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from real_vectors import cirr_captions, real_shaped, real_texts, real_vectors

    real, texts = real_vectors(args.data, args.cache), real_texts(args.data)
    wanted = {q["caption"].strip() for q in json.loads((args.data / "cirr" / "cap.rc2.val.dev.json").read_text())}
    query_rows = [i for i, t in enumerate(texts) if t in wanted][: args.queries]
    if name == "cirr":
        return "CIRR's 17,390 MiniLM captions", real[: len(cirr_captions(args.data))], real[query_rows]
    held_out = np.ones(len(real), dtype=bool)
    held_out[query_rows] = False
    data = real_shaped(real[held_out], args.n)
    return f"{args.n} real-shaped MiniLM vectors", data, real[query_rows]


def main() -> None:
    from pathlib import Path

    from cirgraph.stores.chroma import GALLERY_HNSW

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "cirgraph-bench")
    parser.add_argument("--sets", default="cirr,real", help="cirr and/or real, comma-separated")
    parser.add_argument("--random", action="store_true", help="uniform random unit vectors (--n, --dim) instead")
    parser.add_argument("--n", type=int, default=100_000, help="vectors in the real-shaped (or random) collection")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--builds", default="16:100,32:200", help="M:ef_construction pairs, comma-separated "
                                                                 "(16:100 is Chroma's default)")
    parser.add_argument("--ef-search", default="50,64,100,200,400,800", help="ef_search values, comma-separated")
    parser.add_argument("--exclusion", action="store_true", help="also time over-fetching against a $nin filter")
    args = parser.parse_args()

    builds = [tuple(int(v) for v in pair.split(":")) for pair in args.builds.split(",")]
    ef_values = [int(v) for v in args.ef_search.split(",")]
    print(f"gallery setting: {GALLERY_HNSW}")
    for name in (["random"] if args.random else args.sets.split(",")):
        label, data, queries = dataset(args, name)
        sims = queries @ data.T
        truth = (data, -np.partition(-sims, args.k - 1, axis=1)[:, args.k - 1])
        print(f"\n{label}: {len(data)} vectors, {len(queries)} queries, recall@{args.k} vs exact search")
        print(f"{'M':>4} {'ef_con':>6} {'build s':>8} {'s/10k':>6} {'ef_search':>9} {'recall':>7} {'p50 ms':>7} "
              f"{'p95 ms':>7}")
        path = tempfile.mkdtemp(prefix="bench-hnsw-")
        try:
            for m, efc in builds:
                coll = f"bench-m{m}-c{efc}"
                seconds = build(path, coll, data, m, efc)
                for ef in ef_values:
                    recall, p50, p95 = measure(path, coll, queries, truth, args.k, ef)
                    print(f"{m:>4} {efc:>6} {seconds:>8.1f} {seconds / len(data) * 1e4:>6.1f} {ef:>9} {recall:>7.3f} "
                          f"{p50:>7.2f} {p95:>7.2f}", flush=True)
            if args.exclusion:
                m, efc = builds[-1]
                for n_ex in (5, 100):
                    figures = exclusion(path, f"bench-m{m}-c{efc}", queries, args.k, n_ex)
                    print(f"exclude {n_ex:>3} ids (M={m}): " + ", ".join(f"{k} {v:.2f} ms" for k, v in figures.items()))
        finally:
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
