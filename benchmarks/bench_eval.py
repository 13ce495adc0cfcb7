"""Speed-up of the evaluation runner with query concurrency, against chat models with a fixed latency.

Writes a synthetic CIRR-format split (unique prompts, a caption-space gallery of G images) and evaluates the cirevl
preset (one recompose call per query) with every model call taking `--delay` seconds: once through an in-process
scripted model (asyncio sleep) and once over HTTP through the fake OpenAI-compatible server (the real client, retries
and JSON parsing included). Each measurement has its own CIRGRAPH_HOME, so no call is answered from the cache; the
caption gallery is built before timing starts. Seconds per query are measured at concurrency 1 (over
`--baseline` queries) and at each C (over `--waves` * C queries); speed-up(C) = s/q(1) / s/q(C), and the runner does its
job when it is >= 0.8 * C. The retrieval itself is CPU work (about 30-50 ms a query here), so few cores cap the
speed-up near (delay + retrieval) / retrieval; the table prints that work too.

    python benchmarks/bench_eval.py                            # C = 4, 8, 16; 1 s per call
    python benchmarks/bench_eval.py --delay 0.2 --concurrency 8 32
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

WORDS = "red blue green dog cat car dress shirt table beach snow grass two three small large wooden glass".split()


def write_split(folder: Path, n_queries: int, n_gallery: int) -> Path:
    """A CIRR-format val split and its captions: gallery images described by three words each."""
    names = [f"dev-{i}-0-img0" for i in range(n_gallery)]
    captions = {n: [" ".join(WORDS[(i * k) % len(WORDS)] for k in (1, 3, 7))] for i, n in enumerate(names)}
    queries = []
    for q in range(n_queries):
        ref, target = names[q % n_gallery], names[(q * 7 + 1) % n_gallery]
        members = [ref, target, *names[(q + 2) % n_gallery:(q + 2) % n_gallery + 4]][:6]
        queries.append({"pairid": q, "reference": ref, "target_hard": target, "target_soft": {target: 1.0},
                        "caption": f"make it {WORDS[q % len(WORDS)]}, variant {q}",  # unique: no cache hits
                        "img_set": {"id": q, "members": members}})
    (folder / "cap.rc2.val.json").write_text(json.dumps(queries))
    (folder / "split.rc2.val.json").write_text(json.dumps({n: f"./dev/{n}.png" for n in names}))
    (folder / "captions.json").write_text(json.dumps(captions))
    return folder


def reply(text: str) -> dict:
    return {"edits": [], "descriptions": [text.rsplit('"', 2)[-2] if '"' in text else "a photo"]}


def scripted_model(delay: float):
    from cirgraph.testing.fake_chat import ScriptedChatModel

    return ScriptedChatModel({'{"edits"': lambda messages, schema: reply(messages[-1].text)}, delay_s=delay)


def http_model(server, concurrency: int):
    from cirgraph.tools.openai_chat import OpenAIChatModel

    return OpenAIChatModel("fake-model", base_url=server.base_url, api_key="k", max_concurrency=concurrency)


def measure(data: Path, model, concurrency: int, queries: int) -> float:
    """Seconds per query of the query phase of one run over the first `queries` queries, in a fresh home."""
    from cirgraph.agents.presets import preset
    from cirgraph.evals.runner import EvalSpec, Models, Reporter, evaluate
    from cirgraph.settings import Settings
    from cirgraph.tools.hash_embedders import HashTextEmbedder

    class Clock(Reporter):
        def start(self, run_id: str, total: int, finished: int) -> None:
            self.started = time.perf_counter()

        def finish(self, record, folder) -> None:
            self.wall = time.perf_counter() - self.started

    with tempfile.TemporaryDirectory() as home:
        os.environ["CIRGRAPH_HOME"] = home
        spec = EvalSpec("cirr", "val", data, captions_file=data / "captions.json", config=preset("cirevl"),
                        concurrency=concurrency, depth=50, limit=queries)
        clock = Clock()
        record = evaluate(spec, Settings(), models=Models(llm=model, text_embedder=HashTextEmbedder()),
                          reporter=clock)
        assert record.counts["failed"] == 0, record.failures[:3]
        return clock.wall / queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=int, default=12, help="queries measured at concurrency 1")
    parser.add_argument("--gallery", type=int, default=500)
    parser.add_argument("--delay", type=float, default=1.0, help="seconds per model call")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--waves", type=int, default=4, help="queries per unit of concurrency at each C")
    args = parser.parse_args()
    from cirgraph.testing.fake_openai import FakeOpenAIServer

    n = max(args.baseline, args.waves * max(args.concurrency))
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAIServer(
            {'{"edits"': lambda body: reply(body["messages"][-1]["content"])}, delay_s=args.delay) as server:
        data = write_split(Path(tmp), n, args.gallery)
        measure(data, scripted_model(0.0), 1, 2)  # warm-up: imports, graph compilation
        work = measure(data, scripted_model(0.0), 1, args.baseline)
        print(f"cirevl preset, {args.delay} s per model call, {os.cpu_count()} CPUs; "
              f"work besides the model: {1000 * work:.0f} ms a query\n")
        print(f"{'model':<10} {'C':>3} {'queries':>7} {'s/q(1)':>7} {'s/q(C)':>7} {'speed-up':>9} {'target':>7}  ok")
        for kind in ("scripted", "http"):
            make = (lambda c: scripted_model(args.delay)) if kind == "scripted" else (lambda c: http_model(server, c))
            base = measure(data, make(1), 1, args.baseline)
            for c in args.concurrency:
                per_query = measure(data, make(c), c, args.waves * c)
                speedup = base / per_query
                print(f"{kind:<10} {c:>3} {args.waves * c:>7} {base:>7.3f} {per_query:>7.3f} {speedup:>9.2f} "
                      f"{0.8 * c:>7.1f}  {'yes' if speedup >= 0.8 * c else 'NO'}")


if __name__ == "__main__":
    main()
