"""Ranking by fusion: the gallery ranked by the weighted fusion of description->image, description->caption,
modification text, reference and proposition similarities (the weights and score algebra: cirgraph.agents.fusion),
the reference itself always excluded.

The reference is excluded by gallery id, by content hash (galleries keyed by content), and as an exact image
duplicate (cosine >= DUPLICATE_COSINE to the reference's embedding). Candidates are the union of each component's
approximate top-M (M = the candidate pool, never below k); then every candidate gets every component score exactly
from its stored embeddings, so the fused scores compare like with like. Steps: `_plan` (weights, query vectors),
`_candidates` (the searches), `_exact_scores` (every component for every candidate), `_ordered` (fused ranking).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cirgraph.agents.context import PipelineConfig
from cirgraph.agents.fusion import (
    best_caption_scores,
    effective_weights,
    fuse,
    mean_direction,
    proposition_scores,
    space_shares,
    unit,
)
from cirgraph.agents.query import reference_image
from cirgraph.agents.services import Services
from cirgraph.agents.state import Reference
from cirgraph.errors import ConfigError

TEXT_SPACES = ("text_image", "text_caption")
# An item this close to the reference image is the reference itself (the same picture stored under another id).
DUPLICATE_COSINE = 0.9995


@dataclass
class Ranked:
    """What one retrieval round found."""

    hits: list[dict]  # ranked hit records: id, uri, captions, metadata, components, retrieval_score, score
    weights: dict[str, float]  # the effective fusion weights
    excluded: list[str]  # gallery ids left out as the reference: its id, its content hash, exact image duplicates
    extra_scores: dict[str, float] = field(default_factory=dict)  # requested ids outside `hits` -> fused score


def rank(services: Services, ctx: PipelineConfig, queries: list[str], propositions: list[dict],
         reference: Reference, *, modification: str | None = None, caption: str | None = None,
         score_ids: list[str] = ()) -> Ranked:
    """Rank the gallery for `queries` (the descriptions, ensembled). `modification` and `caption` feed the
    modification and (caption-space) reference components. `score_ids` are gallery items to score exactly even
    when the approximate search does not return them (the CIRR image set, for an exact Recall_subset): those
    outside the kept hits come back in `extra_scores`; they never enter the hits, so the ranking stays what the
    search alone finds."""
    exclude = sorted({x for x in (reference["id"], reference["hash"]) if x})
    plan = _plan(services, ctx, queries, propositions, reference, modification=modification, caption=caption)
    candidates = _candidates(services.gallery, plan, ctx.pool, exclude)
    ids = list(candidates)
    extra = [i for i in dict.fromkeys(score_ids) if i not in candidates and i not in exclude]
    if not ids and not extra:
        return Ranked([], plan.weights, [])
    scores, duplicates = _exact_scores(services, ids + extra, plan.vectors, plan.weights, propositions, plan.spaces,
                                       mod_vectors=plan.mod_vectors, shares=plan.shares,
                                       reference=(plan.ref_space, plan.ref_vec))
    return _ordered(services, ctx, candidates, ids + extra, scores, duplicates, plan.weights, reference, exclude,
                    score_ids)


@dataclass
class _Plan:
    """What a round searches with: the effective weights, the query vectors per space, the modification's vectors
    and their shares, and the reference's space and vector."""

    spaces: list[str]
    weights: dict[str, float]
    shares: dict[str, float]
    vectors: dict[str, np.ndarray]
    mod_vectors: dict[str, np.ndarray]
    ref_space: str | None
    ref_vec: np.ndarray | None


def _plan(services: Services, ctx: PipelineConfig, queries: list[str], propositions: list[dict],
          reference: Reference, *, modification: str | None, caption: str | None) -> _Plan:
    """The components the gallery can serve, their weights, and every query text embedded (one call per space)."""
    gallery = services.gallery
    spaces = services.searchable()  # asked once: a store may answer it with a round trip
    ref_space, ref_vec = None, None
    if "text_image" in spaces or gallery.has_images:
        ref_space, ref_vec = "text_image", _reference_image_vector(services, reference)
    elif caption and "text_caption" in spaces and ctx.w_reference > 0:
        ref_space = "text_caption"  # the caption is embedded with the query texts below
    available = set(spaces)
    if ref_vec is not None or ref_space == "text_caption":
        available.add("reference")
    if modification and available & set(TEXT_SPACES):
        available.add("modification")
    if propositions and available & set(TEXT_SPACES):
        available.add("propositions")
    weights = effective_weights(ctx.weights, available)
    if not weights:
        raise ConfigError(f"gallery {gallery.name!r}: no fusion component is available to search it")
    shares = space_shares(ctx.weights, available) if "modification" in weights else {}
    # one embedding call per text space: the descriptions, then the modification, then the reference caption
    wanted = {space: list(queries) if space in weights else [] for space in TEXT_SPACES}
    for space in shares:
        wanted[space].append(modification)
    if ref_space == "text_caption" and "reference" in weights:
        wanted["text_caption"].append(caption)
    vectors, mod_vectors = {}, {}
    for space, texts in wanted.items():
        if not texts:
            continue
        embedded = unit(_embedder(services, space).embed_texts(texts))
        if space in weights:
            vectors[space] = mean_direction(embedded[: len(queries)])
        if space in shares:
            mod_vectors[space] = embedded[len(queries) if space in weights else 0]
        if space == ref_space == "text_caption" and "reference" in weights:
            ref_vec = embedded[-1]
    return _Plan(spaces, weights, shares, vectors, mod_vectors, ref_space, ref_vec)


def _candidates(gallery: Any, plan: _Plan, pool: int, exclude: list[str]) -> dict[str, Any]:
    """The union of each component's approximate top-`pool`, in search order, the reference left out."""
    searches = {"text_image": gallery.query_images, "text_caption": gallery.query_captions}
    order = [(space, plan.vectors[space]) for space in searches if space in plan.vectors]
    order += [(space, vec) for space, vec in plan.mod_vectors.items()]
    if plan.ref_vec is not None and "reference" in plan.weights:
        order.append((plan.ref_space, plan.ref_vec))
    candidates: dict[str, Any] = {}
    for space, vector in order:
        for hit in searches[space](vector, pool, exclude_ids=exclude):
            if hit.id not in exclude:
                candidates.setdefault(hit.id, hit)
    return candidates


def _ordered(services: Services, ctx: PipelineConfig, candidates: dict[str, Any], every: list[str],
             scores: dict[str, np.ndarray], duplicates: np.ndarray, weights: dict[str, float],
             reference: Reference, exclude: list[str], score_ids: list[str]) -> Ranked:
    """The fused ranking of the candidates (the first len(candidates) of `every`), cut at the depth a round keeps,
    and the fused scores of the asked-for items left out of it."""
    ids = every[: len(candidates)]
    fused = fuse(scores, weights)
    # an item without any embedding the weights use scores -inf: it cannot be ranked, so it is left out
    keep = [i for i in range(len(ids)) if np.isfinite(fused[i]) and not duplicates[i]]
    order = sorted(keep, key=lambda i: (-fused[i], ids[i]))
    depth = max(ctx.k, ctx.rerank_depth if ctx.rerank else 0)
    hits = [_record(candidates[ids[i]], fused[i], {c: s[i] for c, s in scores.items()}) for i in order[:depth]]
    # the asked-for items that can be ranked but were not kept: candidates below the depth, and the extra ones
    kept, asked = {h["id"] for h in hits}, set(score_ids)
    extra_scores = {x: float(fused[i]) for i, x in enumerate(every)
                    if x in asked and x not in kept and np.isfinite(fused[i]) and not duplicates[i]}
    present = [x for x in exclude if x == reference["id"]] + sorted(set(services.gallery.get([reference["hash"]])))
    return Ranked(hits, weights, present + [x for i, x in enumerate(every) if duplicates[i]], extra_scores)


def _reference_image_vector(services: Services, reference: Reference) -> np.ndarray | None:
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


def _embedder(services: Services, space: str) -> Any:
    return services.embedder if space == "text_image" else services.text_embedder


def _exact_scores(services: Services, ids: list[str], vectors: dict[str, np.ndarray], weights: dict[str, float],
                  propositions: list[dict], spaces: list[str], *, mod_vectors: dict[str, np.ndarray],
                  shares: dict[str, float], reference: tuple[str | None, np.ndarray | None],
                  ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """component -> (n,) scores of every candidate (NaN where an item lacks the embedding a component needs), and
    which candidates are image duplicates of the reference."""
    gallery, scores = services.gallery, {}
    image_space = "text_image" in spaces
    ref_space, ref_vec = reference
    use_ref = ref_vec is not None and ("reference" in weights or ref_space == "text_image")
    need_images = "text_image" in vectors or "text_image" in mod_vectors or (
        use_ref and ref_space == "text_image") or ("propositions" in weights and image_space)
    need_captions = "text_caption" in vectors or "text_caption" in mod_vectors or (
        "reference" in weights and ref_space == "text_caption") or ("propositions" in weights and not image_space)
    images = _image_matrix(gallery.image_embeddings(ids), ids) if need_images and ids else None
    captions = gallery.caption_embeddings(ids) if need_captions and ids else {}
    caption_list = [captions.get(i) for i in ids]

    def similarity(space: str, vector: np.ndarray) -> np.ndarray:
        return images @ vector if space == "text_image" else best_caption_scores(caption_list, vector)

    duplicates = np.zeros(len(ids), dtype=bool)
    if use_ref and ref_space == "text_image" and images is not None:
        ref_sims = images @ ref_vec
        duplicates = np.nan_to_num(ref_sims, nan=0.0) >= DUPLICATE_COSINE
        if "reference" in weights:
            scores["reference"] = ref_sims
    elif "reference" in weights and ref_vec is not None:
        scores["reference"] = similarity(ref_space, ref_vec)
    for space, vector in vectors.items():
        scores[space] = similarity(space, vector)
    if mod_vectors:
        scores["modification"] = fuse({s: similarity(s, v) for s, v in mod_vectors.items()}, shares)
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
