"""Scoring arithmetic of retrieval and rerank: pure functions over numbers, no models, no state.

Retrieval (WeiMoCIR-style late fusion): an item's score is the weighted mean of its component similarities,
- text_image:   cosine(mean description embedding, item image embedding)          (CIReVL)
- text_caption: max over the item's captions of cosine(mean description embedding, caption embedding)
- reference:    cosine(reference image embedding, item image embedding)
- propositions: mean over propositions of +cosine (must show) or -cosine (must not show).
Weights are re-normalised over the components that exist: a gallery without captions has no text_caption, an item
without captions leaves it out of its own mean. Several descriptions are ensembled by averaging their unit
embeddings (one direction per space), as LDRE and ImageScope do.

Rerank: a verdict turns each yes/no answer into P(yes) = 0.5 +/- confidence/2 and scores a candidate by the mean
probability that its propositions hold; the verified score mixes min-max-normalised retrieval with that mean.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

COMPONENTS = ("text_image", "text_caption", "reference", "propositions")
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


def effective_weights(weights: Mapping[str, float], available: Iterable[str]) -> dict[str, float]:
    """Weights of the available components, summing to 1. When every available component has weight 0 (e.g.
    CIReVL's text->image-only weights on a caption-only gallery), the available text components share equally."""
    available = [c for c in COMPONENTS if c in set(available)]
    kept = {c: float(weights.get(c, 0.0)) for c in available if weights.get(c, 0.0) > 0}
    if not kept:
        kept = {c: 1.0 for c in available if c in TEXT_COMPONENTS}
    total = sum(kept.values())
    return {c: w / total for c, w in kept.items()} if total > 0 else {}


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
