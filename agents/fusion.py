"""Scoring arithmetic of retrieval and rerank: pure functions over numbers, no models, no state.

Retrieval (WeiMoCIR-style late fusion): an item's score is the weighted mean of its component similarities,
- text_image:   cosine(mean description embedding, item image embedding)          (CIReVL)
- text_caption: max over the item's captions of cosine(mean description embedding, caption embedding)
- modification: the modification text itself, scored like the description in the same spaces with the same
                space weights. It anchors the search to what the user wrote when the LLM drifts from it (a small
                model drops or rewrites the change), as late fusion with the raw text does in WeiMoCIR.
- reference:    cosine(reference image embedding, item image embedding); in a caption-only gallery, the best
                cosine between the reference caption and the item's captions
- propositions: mean over propositions of +cosine (must show) or -cosine (must not show).
The description keeps its total weight (w_text_image + w_text_caption) over the spaces the gallery has: a gallery
without images gives text_image's share to text_caption. Weights are then re-normalised to sum to 1; an item
without captions leaves text_caption out of its own mean. Several descriptions are ensembled by averaging their
unit embeddings (one direction per space), as LDRE and ImageScope do.

Rerank: a verdict turns each yes/no answer into P(yes) = 0.5 +/- confidence/2 and scores a candidate by the mean
probability that its propositions hold; the verified score mixes min-max-normalised retrieval with that mean.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

COMPONENTS = ("text_image", "text_caption", "modification", "reference", "propositions")
TEXT_COMPONENTS = ("text_image", "text_caption")
NEUTRAL = 0.5  # verdict score of a candidate whose check failed or was never made


def unit(v: np.ndarray) -> np.ndarray:
    """L2-normalise the last axis (zero vectors stay zero)."""
    v = np.asarray(v, dtype=np.float32)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n == 0, 1.0, n)


def mean_direction(vectors: np.ndarray) -> np.ndarray:
    """The unit mean of unit vectors (n, d) -> (d,): the ensemble of several descriptions."""
    return unit(unit(np.atleast_2d(vectors)).mean(axis=0))


def space_shares(weights: Mapping[str, float], available: Iterable[str]) -> dict[str, float]:
    """How a text (the description, the modification) is scored across the text spaces the gallery has: in
    proportion to their weights, or equally when those are all 0 (CIReVL's text->image-only weights on a
    caption-only gallery). Sums to 1; {} without a text space."""
    spaces = [c for c in TEXT_COMPONENTS if c in set(available)]
    own = {c: float(weights.get(c, 0.0)) for c in spaces if weights.get(c, 0.0) > 0}
    if not own:
        own = {c: 1.0 for c in spaces}
    total = sum(own.values())
    return {c: w / total for c, w in own.items()}


def effective_weights(weights: Mapping[str, float], available: Iterable[str]) -> dict[str, float]:
    """Weights of the available components, summing to 1. The description keeps its total weight (the text
    components' sum) over the text spaces the gallery has (see space_shares); "modification" is scored in those
    same spaces, so it needs one of them."""
    available = set(available)
    shares = space_shares(weights, available)
    total_text = sum(max(float(weights.get(c, 0.0)), 0.0) for c in TEXT_COMPONENTS)
    out = {c: total_text * share for c, share in shares.items()} if total_text > 0 else {}
    for c in ("modification", "reference", "propositions"):
        if c in available and weights.get(c, 0.0) > 0 and (c != "modification" or shares):
            out[c] = float(weights[c])
    total = sum(out.values())
    return {c: out[c] / total for c in COMPONENTS if c in out} if total > 0 else {}


def best_caption_scores(caption_embeddings: Sequence[np.ndarray | None], query: np.ndarray) -> np.ndarray:
    """Per item, the best cosine between `query` (d,) and its captions (m, d); NaN for items without captions."""
    out = np.full(len(caption_embeddings), np.nan, dtype=np.float32)
    for i, emb in enumerate(caption_embeddings):
        if emb is not None and len(emb):
            out[i] = float(np.max(np.atleast_2d(emb) @ query))
    return out


def proposition_scores(similarities: np.ndarray, polarities: Sequence[str]) -> np.ndarray:
    """(p, n) similarities of p propositions to n items -> (n,) mean of +sim (must show) / -sim (must not show)."""
    sims = np.atleast_2d(np.asarray(similarities, dtype=np.float32))
    signs = np.array([1.0 if p == "must_show" else -1.0 for p in polarities], dtype=np.float32)[:, None]
    return (signs * sims).mean(axis=0)


def fuse(scores: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """Weighted mean over components per item; NaN scores (a component the item lacks) drop out of its mean."""
    names = [c for c in weights if c in scores]
    if not names:
        raise ValueError("fuse: no scored component has a weight")
    mat = np.vstack([np.asarray(scores[c], dtype=np.float64) for c in names])
    w = np.array([weights[c] for c in names], dtype=np.float64)[:, None]
    present = ~np.isnan(mat)
    num = np.where(present, mat, 0.0) * w
    den = (present * w).sum(axis=0)
    return np.where(den > 0, num.sum(axis=0) / np.where(den > 0, den, 1.0), -np.inf)


def p_yes(answer: str, confidence: float) -> float:
    """The probability of 'yes' an answer stands for: confidence 0 is a coin flip, 1 is certain."""
    c = min(max(float(confidence), 0.0), 1.0)
    return 0.5 + c / 2 if answer == "yes" else 0.5 - c / 2


def holds(answer: str, confidence: float, polarity: str) -> float:
    """The probability that a proposition holds, given the answer to its question."""
    p = p_yes(answer, confidence)
    return p if polarity == "must_show" else 1.0 - p


def verdict_score(answers: Mapping[int, tuple[str, float]], polarities: Sequence[str]) -> float:
    """Mean probability that the propositions (numbered from 1) hold; an unanswered one counts as NEUTRAL."""
    if not polarities:
        return NEUTRAL
    vals = [holds(*answers[i], pol) if i in answers else NEUTRAL for i, pol in enumerate(polarities, start=1)]
    return sum(vals) / len(vals)


def rerank_scores(retrieval: Sequence[float], verdicts: Sequence[float | None], weight: float) -> list[float]:
    """Scores of a ranked list whose head (one verdict per head item) was verified.

    Head: (1 - weight) * minmax(retrieval) + weight * verdict, the min-max taken over the head (NEUTRAL stands in
    for a missing verdict). Tail: (1 - weight) * the same normalisation, <= 0, so it stays below every verified
    item and in retrieval order.
    """
    head = len(verdicts)
    r = np.asarray(retrieval, dtype=np.float64)
    if head == 0:
        return r.tolist()
    lo, hi = float(r[:head].min()), float(r[:head].max())
    norm = (r - lo) / (hi - lo) if hi > lo else np.where(np.arange(len(r)) < head, 1.0, r - lo)
    v = np.array([NEUTRAL if x is None else x for x in verdicts], dtype=np.float64)
    out = (1.0 - weight) * norm
    out[:head] += weight * v
    if len(r) > head:
        out[head:] = np.minimum(out[head:], 0.0)
    return out.tolist()
