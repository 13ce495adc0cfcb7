"""Orchestration cost of the retrieval pipeline, against chat models that answer after a fixed delay.

1. Overhead per query at concurrency 1: wall time minus the model's critical path (one delay per stage that calls
   a model; rerank's checks run in parallel, so they count once). Target: <= 5% of model time.
2. Batch speed-up of `search_many` at concurrency C: T(1) / T(C) over the same queries. Target: >= 0.8 * C.

Every query uses a fresh reference picture (so captioning is never cached) over an in-memory gallery of N items
with hash embedders; retrieval compute is counted as overhead. With --photos SIDE the references are SIDE-pixel
photos and gallery items have images too, so rerank shows the vision model each candidate beside the reference,
as in production (and every image is downscaled and JPEG-encoded for the request).

Wall-clock ratios are only as good as the machine is idle: every figure comes with the client process's CPU time
per query (the pipeline's own work plus the HTTP client's; the fake server runs in its own process), which bounds
the batch speed-up from above at about T(1) / (N * CPU per query) when one process runs the whole batch.

    python benchmarks/bench_pipeline.py                    # scripted models (no HTTP)
    python benchmarks/bench_pipeline.py --backend http     # OpenAIChatModel -> the fake OpenAI-compatible server
    python benchmarks/bench_pipeline.py --backend http --photos 640
    python benchmarks/bench_pipeline.py --delay 0.2 --queries 32 --items 5000 --preset reflect
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np


def build_gallery(items: int, dim: int, photos: bool = False):
    """A memory gallery of `items` captioned items with random image embeddings (and image URIs when `photos`), and
    the hash embedders."""
    from cirgraph.tools.hash_embedders import HashImageTextEmbedder, HashTextEmbedder
    from cirgraph.testing.memory_gallery import MemoryGallery

    rng = np.random.default_rng(0)
    colours, things = ["red", "blue", "green", "black", "white"], ["dress", "shirt", "dog", "cat", "car"]
    ids = [f"item-{i}" for i in range(items)]
    captions = {i: [f"a {colours[n % 5]} {things[(n // 5) % 5]} number {n}"] for n, i in enumerate(ids)}
    text_embedder = HashTextEmbedder(dim=dim)
    uris = {i: f"bench://{i}" for i in ids} if photos else None
    gallery = MemoryGallery.build(ids, image_embeddings=rng.standard_normal((items, dim)), captions=captions,
                                  text_embedder=text_embedder, name="bench", uris=uris)
    return gallery, HashImageTextEmbedder(dim=dim), text_embedder


def photo(seed: int, side: int):
    """A side x 3/4 side RGB picture with a photo's texture (a colour gradient under noise), distinct per seed."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = side * 3 // 4, side
    base = np.linspace(rng.integers(0, 128, 3), rng.integers(128, 256, 3), w)[None, :, :]
    pixels = np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def item_images(side: int, distinct: int = 32):
    """An image loader for the gallery's bench:// URIs: it decodes one of `distinct` JPEG files, as a loader of
    real files would (generating a photo per call would cost more than the pipeline)."""
    from cirgraph.tools.images import decode_image

    files = references(distinct, side)
    return lambda uri: decode_image(files[int(uri.rsplit("-", 1)[1]) % distinct], name=uri)


def references(n: int, side: int = 0) -> list[bytes]:
    """n distinct pictures as file bytes: small PNGs, or JPEG photos `side` pixels wide."""
    from PIL import Image

    out = []
    for i in range(n):
        if side:
            img, fmt = photo(10_000 + i, side), "JPEG"
        else:
            img, fmt = Image.new("RGB", (64, 48), (i % 256, (7 * i) % 256, (13 * i) % 256)), "PNG"
            img.putpixel((i % 64, 0), (255, 255, 255))
        buf = io.BytesIO()
        img.save(buf, format=fmt)
        out.append(buf.getvalue())
    return out


RULES = {
    "describing a photograph": "a blue dress on a hanger in a bright room",
    '{"edits"': {"edits": ["blue -> red"], "descriptions": ["a red dress", "a red dress on a hanger",
                                                          "a long red dress on a hanger in a bright room"]},
    '{"propositions"': {"propositions": [
        {"text": "the dress is red", "polarity": "must_show", "question": "Is the dress red?"},
        {"text": "a blue dress", "polarity": "must_not_show", "question": "Is the dress blue?"}]},
    '{"answers"': {"answers": [{"index": 1, "answer": "yes", "confidence": 0.9},
                               {"index": 2, "answer": "no", "confidence": 0.9}]},
    '{"diagnosis"': {"diagnosis": "colour too weak", "descriptions": ["a bright red dress"]},
}


@contextlib.contextmanager
def chat_models(backend: str, delay: float) -> Iterator[tuple[object, object]]:
    """(llm, vlm) answering RULES after `delay` seconds: in process, or over HTTP to the fake server."""
    if backend == "scripted":
        from cirgraph.testing.fake_chat import ScriptedChatModel

        yield ScriptedChatModel(RULES, name="llm", delay_s=delay), ScriptedChatModel(RULES, name="vlm", delay_s=delay)
        return
    from cirgraph.tools.openai_chat import OpenAIChatModel

    # The server runs in its own process, as a real endpoint would: in-process, its threads would share our GIL.
    script = ("import json, sys; from cirgraph.testing.fake_openai import FakeOpenAIServer\n"
              "rules, delay = json.loads(sys.argv[1]), float(sys.argv[2])\n"
              "with FakeOpenAIServer(rules, delay_s=delay) as s:\n"
              "    print(s.base_url, flush=True); sys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", script, json.dumps(RULES), str(delay)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        base_url = proc.stdout.readline().strip()
        make = lambda name: OpenAIChatModel("fake", base_url=base_url, api_key="k", name=name,  # noqa: E731
                                            max_concurrency=256, max_retries=1)
        yield make("llm"), make("vlm")
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def model_critical_path(result, delay: float) -> float:
    """One delay per stage run that called a model (rerank's parallel checks count once)."""
    return sum(delay for s in result.stages if s["calls"] > 0)


def cpu_cost(retriever, refs: list[bytes], preset: str) -> None:
    """Process CPU time per query against instant models: the pipeline's own work, robust to a busy machine
    (wall-clock figures below include scheduling delays when other processes compete for the cores)."""
    retriever.search(refs[0], "make it red", config=preset)
    retriever.services.caption_cache.__init__()
    cpu, wall, stages = time.process_time(), time.perf_counter(), {}
    for ref in refs[1:]:
        for s in retriever.search(ref, "make it red", config=preset).stages:
            stages[s["stage"]] = stages.get(s["stage"], 0.0) + s["seconds"]
    n = len(refs) - 1
    cpu, wall = (time.process_time() - cpu) / n, (time.perf_counter() - wall) / n
    print(f"\n[0] pipeline cost with instant models ({n} queries, preset {preset!r}): {cpu * 1000:.1f} ms CPU, "
          f"{wall * 1000:.1f} ms wall per query; retrieve {stages.get('retrieve', 0) / n * 1000:.1f} ms of it")


def overhead(retriever, refs: list[bytes], delay: float, preset: str) -> None:
    walls, paths, retrieve_s, stage_s = [], [], [], {}
    retriever.search(refs[0], "make it red", config=preset)  # warm-up: graph compile, imports
    cpu = time.process_time()
    for ref in refs[1:]:
        started = time.perf_counter()
        res = retriever.search(ref, "make it red", config=preset)
        walls.append(time.perf_counter() - started)
        paths.append(model_critical_path(res, delay))
        retrieve_s.append(sum(s["seconds"] for s in res.stages if s["stage"] == "retrieve"))
        for s in res.stages:
            stage_s.setdefault(s["stage"], []).append(s["seconds"])
    cpu = (time.process_time() - cpu) / len(walls)
    wall, path, search = statistics.mean(walls), statistics.mean(paths), statistics.mean(retrieve_s)
    over, orchestration = wall - path, wall - path - search
    print(f"\n[1] overhead at concurrency 1 ({len(walls)} queries, preset {preset!r}, delay {delay * 1000:.0f} ms)")
    print(f"    wall {wall * 1000:.1f} ms/query ({cpu * 1000:.1f} ms CPU), model critical path {path * 1000:.1f} ms, "
          f"retrieval compute (embedders + store) {search * 1000:.1f} ms")
    print(f"    orchestration overhead {orchestration * 1000:.1f} ms = {orchestration / path:.2%} of model time "
          f"(target <= 5%: {'ok' if orchestration / path <= 0.05 else 'MISSED'}); "
          f"with retrieval compute {over * 1000:.1f} ms = {over / path:.2%}")
    print("    per stage (mean): " + ", ".join(f"{k} {statistics.mean(v) * 1000:.1f} ms" for k, v in stage_s.items()))


def speedup(retriever, refs: list[bytes], levels: list[int], preset: str) -> None:
    queries = [(ref, "make it red") for ref in refs]
    print(f"\n[2] batch speed-up of search_many ({len(queries)} queries, preset {preset!r})")
    print("      C    wall s   speed-up   efficiency   target >= 0.8*C   CPU ms/query   CPU-bound ceiling")
    base = None
    for c in levels:
        retriever.services.caption_cache.__init__()  # fresh captions each level: same work at every C
        started, cpu = time.perf_counter(), time.process_time()
        retriever.search_many(queries, concurrency=c, config=preset)
        wall, cpu = time.perf_counter() - started, (time.process_time() - cpu) / len(queries)
        base = base or wall * (1 if c == 1 else c)  # T(1); estimated from the first level when it is not 1
        s = base / wall
        # one process runs the batch: it cannot finish before its own CPU work does, on one core at best
        print(f"    {c:3d}  {wall:8.2f}   {s:8.2f}   {s / c:10.2f}   {'ok' if s >= 0.8 * c else 'MISSED':>15}"
              f"   {cpu * 1000:12.1f}   {base / (cpu * len(queries)):17.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["scripted", "http"], default="scripted")
    parser.add_argument("--delay", type=float, default=0.1, help="seconds per model answer")
    parser.add_argument("--items", type=int, default=1000, help="gallery size")
    parser.add_argument("--dim", type=int, default=64, help="embedding size")
    parser.add_argument("--queries", type=int, default=16, help="queries per measurement")
    parser.add_argument("--preset", default="rerank")
    parser.add_argument("--levels", default="1,2,4,8,16", help="concurrency levels")
    parser.add_argument("--photos", type=int, default=0, metavar="SIDE",
                        help="photo-sized references and item images SIDE pixels wide (0: small references only)")
    args = parser.parse_args()

    from cirgraph.retriever import Retriever

    gallery, embedder, text_embedder = build_gallery(args.items, args.dim, photos=bool(args.photos))
    refs = references(args.queries + 1, args.photos)
    levels = [int(x) for x in args.levels.split(",")]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print(f"backend {args.backend}, gallery {args.items} items x {args.dim} d, model delay {args.delay * 1000:.0f} ms, "
          f"photos {args.photos or 'no'}; {os.cpu_count()} CPUs, load average {load}")
    parts = {"gallery": gallery, "embedder": embedder, "text_embedder": text_embedder, "config": args.preset,
             "image_loader": item_images(args.photos) if args.photos else None}
    with chat_models(args.backend, 0.0) as (llm, vlm), Retriever(llm=llm, vlm=vlm, **parts) as retriever:
        cpu_cost(retriever, refs, args.preset)
    with chat_models(args.backend, args.delay) as (llm, vlm), Retriever(llm=llm, vlm=vlm, **parts) as retriever:
        overhead(retriever, refs, args.delay, args.preset)
        speedup(retriever, refs[1:], levels, args.preset)


if __name__ == "__main__":
    main()
