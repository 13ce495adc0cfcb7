"""Real embeddings for the search benchmarks: MiniLM (all-MiniLM-L6-v2) vectors of real text from the benchmark
annotations, cached in a .npy file so the benchmarks that share them embed once.

- `cirr_captions`: CIRR's 17,390 multimodal-LLM gallery captions (val and test1), the quick start's gallery.
- `real_texts`: those, then every other sentence of the annotation files (CIRR modification texts, FashionIQ
  relative captions, CIRCO relative captions and shared concepts): 34,945 texts, 33k distinct.
- `real_shaped(n)`: the real vectors, then (beyond them) unit means of two random real vectors, as a text about two
  things embeds between them: n vectors whose neighbourhoods look like real ones, at sizes the data cannot reach.

    python benchmarks/real_vectors.py --data ../shared/data --out ~/.cache/cirgraph-bench   # embed once
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

DEFAULT_CACHE = Path.home() / ".cache" / "cirgraph-bench"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def cirr_captions(data: Path) -> list[str]:
    entries = json.loads((data / "cirr" / "mllm_captions.json").read_text(encoding="utf-8"))
    return [c for e in entries for c in e["captions"]]


def other_sentences(data: Path) -> list[str]:
    """The annotation files' other sentences, distinct, in file order."""
    out: list[str] = []
    for f in sorted((data / "cirr").glob("cap.rc2.*.json")):
        out += [q["caption"] for q in json.loads(f.read_text(encoding="utf-8"))]
    for f in sorted((data / "fashioniq").glob("cap.*.json")):
        out += [c for q in json.loads(f.read_text(encoding="utf-8")) for c in q["captions"]]
    for f in sorted((data / "circo").glob("*.json")):
        out += [q.get(k) or "" for q in json.loads(f.read_text(encoding="utf-8"))
                for k in ("relative_caption", "shared_concept")]
    seen = set(cirr_captions(data))
    return [t for t in dict.fromkeys(t.strip() for t in out) if t and t not in seen]


def real_texts(data: Path) -> list[str]:
    return cirr_captions(data) + other_sentences(data)


def embedder():
    """The bulk MiniLM encoder (transformers, batched): the model the quick start's captions use."""
    from cirgraph.tools.hf_embedders import HFTextEmbedder

    return HFTextEmbedder(MODEL, batch_size=128)


def real_vectors(data: Path, cache: Path = DEFAULT_CACHE, *, verbose: bool = True) -> np.ndarray:
    """MiniLM vectors of `real_texts(data)`, in that order (the first 17,390 are CIRR's captions); cached."""
    texts = real_texts(data)
    path = Path(cache).expanduser() / f"minilm-real-{len(texts)}.npy"
    if path.is_file():
        return np.load(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model, parts, started = embedder(), [], time.perf_counter()
    for start in range(0, len(texts), 2048):
        parts.append(model.embed_texts(texts[start:start + 2048]))
        if verbose:
            done = start + len(parts[-1])
            print(f"embedded {done}/{len(texts)} texts, {done / (time.perf_counter() - started):.0f}/s", flush=True)
    vectors = np.concatenate(parts).astype(np.float32)
    np.save(path, vectors)
    return vectors


def real_shaped(real: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """n unit vectors: the real ones first, then unit means of random pairs of them."""
    if n <= len(real):
        return real[:n].copy()
    rng = np.random.default_rng(seed)
    pairs = rng.integers(len(real), size=(n - len(real), 2))
    mixed = real[pairs[:, 0]] + real[pairs[:, 1]]
    mixed /= np.maximum(np.linalg.norm(mixed, axis=1, keepdims=True), 1e-12)
    return np.concatenate([real, mixed.astype(np.float32)])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()
    vecs = real_vectors(args.data, args.out)
    print(f"{len(vecs)} vectors of dimension {vecs.shape[1]} in {args.out}")
