"""retrieve: rank gallery items by the weighted fusion of description->image, description->caption, reference
image and proposition similarities (see cirgraph.agents.fusion), the reference itself always excluded.

The reference is excluded by gallery id, by content hash (galleries keyed by content), and as an exact image
duplicate (cosine >= DUPLICATE_COSINE to the reference's embedding). Candidates are the union of each component's
approximate top-M (M = the candidate pool, never below k); then every candidate gets every component score exactly
from its stored embeddings, so the fused scores compare like with like. The work is synchronous (embedders, the
store) and runs in a worker thread, so concurrent queries overlap.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from langgraph.runtime import Runtime

from cirgraph.agents.context import PipelineConfig
from cirgraph.agents.fusion import (
    best_caption_scores,
    effective_weights,
    fuse,
    mean_direction,
    proposition_scores,
    unit,
)
from cirgraph.agents.nodes._trace import traced
from cirgraph.agents.query import baseline_query, reference_image
from cirgraph.agents.services import Services
from cirgraph.agents.state import PipelineState, Reference
from cirgraph.errors import ConfigError

# An item this close to the reference image is the reference itself (the same picture stored under another id).
DUPLICATE_COSINE = 0.9995


@traced("retrieve")
async def retrieve(state: PipelineState, runtime: Runtime[PipelineConfig], *, services: Services) -> dict[str, Any]:
    """Search with the current descriptions (or the baseline text) and keep the top results with their scores."""
    ctx = runtime.context
    queries = list(state.get("descriptions") or [baseline_query(state, ctx.baseline_text)])
    hits, weights, excluded = await asyncio.to_thread(
        rank, services, ctx, queries, list(state.get("propositions") or []), state["reference"]
    )
    return {"queries": queries, "hits": hits, "weights": weights, "excluded": excluded,
            "round": state.get("round", 0) + 1}


def rank(services: Services, ctx: PipelineConfig, queries: list[str], propositions: list[dict],
         reference: Reference) -> tuple[list[dict], dict[str, float], list[str]]:
    """Ranked hit records (id, uri, captions, metadata, components, retrieval_score, score), the weights used, and
    the gallery items excluded as the reference (its id, its content hash, and exact image duplicates of it)."""
    gallery = services.gallery
    exclude = sorted({x for x in (reference["id"], reference["hash"]) if x})
    spaces = services.searchable()  # asked once: a store may answer it with a round trip
    ref_vec = _reference_vector(services, reference) if "text_image" in spaces or gallery.has_images else None
    available = set(spaces)
    if ref_vec is not None:
        available.add("reference")
    if propositions and available & {"text_image", "text_caption"}:
        available.add("propositions")
    weights = effective_weights(ctx.weights, available)
    if not weights:
        raise ConfigError(f"gallery {gallery.name!r}: no fusion component is available to search it")
    vectors = _query_vectors(services, queries, weights)
    if ref_vec is not None:
        vectors["reference"] = ref_vec
    searches = {"text_image": gallery.query_images, "text_caption": gallery.query_captions,
                "reference": gallery.query_images}
    candidates: dict[str, Any] = {}
    for component, search in searches.items():
        if component in weights:
            for hit in search(vectors[component], ctx.pool, exclude_ids=exclude):
                if hit.id not in exclude:
                    candidates.setdefault(hit.id, hit)
    ids = list(candidates)
    if not ids:
        return [], weights, []
    scores, duplicates = _exact_scores(services, ids, vectors, weights, propositions, "text_image" in spaces)
    fused = fuse(scores, weights)
    # an item without any embedding the weights use scores -inf: it cannot be ranked, so it is left out
    keep = [i for i in range(len(ids)) if np.isfinite(fused[i]) and not duplicates[i]]
    order = sorted(keep, key=lambda i: (-fused[i], ids[i]))
    depth = max(ctx.k, ctx.rerank_depth if ctx.rerank else 0)
    hits = [_record(candidates[ids[i]], fused[i], {c: s[i] for c, s in scores.items()}) for i in order[:depth]]
    present = [x for x in exclude if x == reference["id"]] + sorted(set(gallery.get([reference["hash"]])))
    return hits, weights, present + [ids[i] for i in range(len(ids)) if duplicates[i]]


def _reference_vector(services: Services, reference: Reference) -> np.ndarray | None:
    """The reference's image embedding: stored in the gallery when it is an item, else embedded now (and kept for
    the query's later rounds)."""
    keys = [x for x in (reference["id"], reference["hash"]) if x]
    stored = services.gallery.image_embeddings(keys) if keys else {}
    for key in keys:
        if key in stored:
            return unit(np.asarray(stored[key]).reshape(-1))
    image = reference_image(reference)
    if services.embedder is None or image is None:
        return None
    key = f"{services.embedder.name}|{reference['hash']}"
    vector = services.memo.get_json("reference-embedding", key)
    if vector is None:
        vector = unit(services.embedder.embed_images([image])[0])
        services.memo.put_json("reference-embedding", key, vector)
    return vector


def _query_vectors(services: Services, queries: list[str], weights: dict[str, float]) -> dict[str, np.ndarray]:
    """One ensembled query direction per text space in use."""
    out = {}
    if "text_image" in weights:
        out["text_image"] = mean_direction(services.embedder.embed_texts(queries))
    if "text_caption" in weights:
        out["text_caption"] = mean_direction(services.text_embedder.embed_texts(queries))
    return out


def _exact_scores(services: Services, ids: list[str], vectors: dict[str, np.ndarray], weights: dict[str, float],
                  propositions: list[dict], image_space: bool) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """component -> (n,) scores of every candidate (NaN where an item lacks the embedding a component needs), and
    which candidates are image duplicates of the reference."""
    gallery, scores = services.gallery, {}
    need_images = bool({"text_image", "reference"} & set(vectors)) or ("propositions" in weights and image_space)
    need_captions = "text_caption" in weights or ("propositions" in weights and not image_space)
    images = _image_matrix(gallery.image_embeddings(ids), ids) if need_images and ids else None
    captions = gallery.caption_embeddings(ids) if need_captions and ids else {}
    caption_list = [captions.get(i) for i in ids]
    duplicates = np.zeros(len(ids), dtype=bool)
    if "reference" in vectors and images is not None:
        ref_sims = images @ vectors["reference"]
        duplicates = np.nan_to_num(ref_sims, nan=0.0) >= DUPLICATE_COSINE
    for component in ("text_image", "reference"):
        if component in weights:
            scores[component] = images @ vectors[component]
    if "text_caption" in weights:
        scores["text_caption"] = best_caption_scores(caption_list, vectors["text_caption"])
    if "propositions" in weights:
        texts = [p["text"] for p in propositions]
        if image_space:
            sims = services.embedder.embed_texts(texts) @ images.T
        else:
            emb = services.text_embedder.embed_texts(texts)
            sims = np.vstack([best_caption_scores(caption_list, e) for e in emb])
        scores["propositions"] = proposition_scores(sims, [p["polarity"] for p in propositions])
    return scores, duplicates


def _image_matrix(stored: dict[str, np.ndarray], ids: list[str]) -> np.ndarray:
    """(n, d) image embeddings in `ids` order; rows of items without one are NaN (they drop out of the fusion)."""
    dim = next((np.asarray(v).size for v in stored.values()), 1)
    mat = np.full((len(ids), dim), np.nan, dtype=np.float32)
    for row, item_id in enumerate(ids):
        if item_id in stored:
            mat[row] = np.asarray(stored[item_id], dtype=np.float32).reshape(-1)
    return mat


def _record(hit: Any, fused: float, components: dict[str, float]) -> dict[str, Any]:
    comps = {c: (None if np.isnan(v) else round(float(v), 6)) for c, v in components.items()}
    return {"id": hit.id, "uri": hit.uri, "captions": list(hit.captions), "metadata": dict(hit.metadata),
            "components": comps, "retrieval_score": float(fused), "score": float(fused), "verdict": None}
