"""Throughput of a local OpenAI-compatible model server on cirgraph's small-model calls, at several concurrencies.

Sends the small-model recompose request (recompose/small: two worked examples as chat turns, one sentence out, at
most 48 tokens) for N distinct CIRR val modification texts, and the small rerank check (one yes/no token with
top_logprobs), through cirgraph's own OpenAIChatModel, C requests in flight at a time. Prints calls/s, completion
tokens/s and the median latency per concurrency, and the speed-up over C = 1 measured in the same run. Every request
is distinct at each concurrency (a different slice of queries), so no reply is reused; the shared prompt prefix
(system turn and examples) is what the server may cache.

    eval "$(scripts/llama-server.sh)"            # llama-server with 4 slots on 127.0.0.1:8765
    python benchmarks/bench_llm_server.py        # C = 1, 2, 4; 24 requests per concurrency
    python benchmarks/bench_llm_server.py --requests 40 --concurrency 1 4 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path

from cirgraph.prompts.loader import render
from cirgraph.tools.choices import classify
from cirgraph.tools.openai_chat import OpenAIChatModel
from cirgraph.tools.usage import collect_calls

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cirr"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def requests(data: Path, n: int, offset: int) -> list[tuple[str, str]]:
    """(caption, modification) pairs of CIRR val queries [offset, offset + n)."""
    captions = {c["candidate"].removesuffix(".png"): c["captions"] for c in
                json.loads((data / "mllm_captions.json").read_text())}
    queries = json.loads((data / "cap.rc2.val.dev.json").read_text())
    pairs = [(captions[q["reference"]][0], q["caption"]) for q in queries if q["reference"] in captions]
    return pairs[offset:offset + n]


async def measure(model: OpenAIChatModel, kind: str, pairs: list[tuple[str, str]], concurrency: int) -> dict:
    gate = asyncio.Semaphore(concurrency)

    async def one(caption: str, modification: str) -> float:
        async with gate:
            started = time.perf_counter()
            if kind == "recompose":
                prompt = render("recompose", "small", caption=caption, modification=modification, n=1)
                await model.complete(prompt.messages(), max_tokens=prompt.max_tokens)
            else:
                prompt = render("rerank", "small", mode="caption", with_reference=False, captions=[caption],
                                target=modification, questions=[])
                await classify(model, prompt.messages())
            return time.perf_counter() - started

    with collect_calls() as log:
        started = time.perf_counter()
        latencies = await asyncio.gather(*(one(c, m) for c, m in pairs))
        wall = time.perf_counter() - started
    usage = log.summary()
    return {"kind": kind, "concurrency": concurrency, "requests": len(pairs), "wall_s": round(wall, 2),
            "calls_per_s": round(len(pairs) / wall, 2),
            "completion_tokens_per_s": round(usage["completion_tokens"] / wall, 1),
            "prompt_tokens_per_call": round(usage["prompt_tokens"] / len(pairs), 1),
            "median_latency_s": round(statistics.median(latencies), 3), "failed": usage["failed_calls"]}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default=os.environ.get("CIRGRAPH_LLM_BASE_URL", "http://127.0.0.1:8765/v1"))
    parser.add_argument("--model", default=os.environ.get("CIRGRAPH_LLM_MODEL", "local"))
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--requests", type=int, default=24, help="requests per concurrency and kind")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    model = OpenAIChatModel(args.model, base_url=args.base_url, api_key=None, timeout=300,
                            max_concurrency=max(args.concurrency))
    print(f"server {args.base_url} ({args.model}); client machine: {os.cpu_count()} cores, {cpu_name()}")
    offset = 0
    for kind in ("recompose", "rerank"):
        base = None
        print(f"\n{kind}: C  calls/s  completion tok/s  prompt tok/call  median latency s  speed-up vs C=1")
        for c in args.concurrency:
            pairs = requests(args.data, args.requests, offset)
            offset += args.requests
            row = await measure(model, kind, pairs, c)
            base = base or row["calls_per_s"]
            print(f"{kind}: {c:>2}  {row['calls_per_s']:>7}  {row['completion_tokens_per_s']:>16}  "
                  f"{row['prompt_tokens_per_call']:>15}  {row['median_latency_s']:>16}  "
                  f"{row['calls_per_s'] / base:>6.2f}x" + (f"  ({row['failed']} failed)" if row["failed"] else ""))
    await model.aclose()


if __name__ == "__main__":
    asyncio.run(main())
