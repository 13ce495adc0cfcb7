"""The official metrics of CIRR, CIRCO and FashionIQ, as pure functions of queries and ranked gallery names.

Every function takes the queries to score and their rankings (query id -> gallery names, best first) and
returns percentages. Rankings are cleaned the same way everywhere: only the first occurrence of a name counts
(so a duplicate can neither score twice nor push a hit down), and a ranking shorter than k is scored as it is.
The reference image is removed from CIRR rankings, as the CIRR protocol prescribes; CIRCO and FashionIQ
rankings are scored as given, as their official evaluations do (the reference is never a ground truth there,
so a reference left in a ranking only costs a rank).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

import numpy as np

from cirgraph.errors import InputError
from cirgraph.evals.task import Query, Rankings

CIRR_KS = (1, 5, 10, 50)
CIRR_SUBSET_KS = (1, 2, 3)
CIRCO_KS = (5, 10, 25, 50)
FASHIONIQ_KS = (10, 50)
# The aspects the CIRCO authors tagged val queries with; "mAP@10[aspect]" is reported for each.
CIRCO_SEMANTIC_ASPECTS: tuple[str, ...] = (
    "cardinality", "addition", "negation", "direct_addressing", "compare_change", "comparative_statement",
    "statement_with_conjunction", "spatial_relations_background", "viewpoint",
)  # fmt: skip


def clean_ranking(ranking: Iterable[object], exclude: Collection[str] = ()) -> list[str]:
    """The ranking as names, first occurrences only, without the excluded names (CIRR: the reference)."""
    seen: set[str] = set(exclude)
    cleaned = []
    for item in ranking:
        name = str(item)
        if name not in seen:
            seen.add(name)
            cleaned.append(name)
    return cleaned


def _rankings(queries: Sequence[Query], rankings: Rankings) -> list[Sequence[str]]:
    """The ranking of every query, in query order; every query must have one and a ground truth."""
    if not queries:
        raise InputError("queries", "nothing to score")
    ordered = []
    for query in queries:
        if not query.has_ground_truth:
            raise InputError(f"query {query.id}", "has no ground truth (a test split is scored by its server)")
        if query.id not in rankings:
            raise InputError(f"query {query.id}", "has no ranking")
        ordered.append(rankings[query.id])
    return ordered


def _target_positions(targets: Sequence[str], rankings: Sequence[Sequence[str]]) -> np.ndarray:
    """0-based position of each query's target in its (cleaned) ranking; infinity when absent."""
    positions = np.full(len(targets), np.inf)
    for row, (target, ranking) in enumerate(zip(targets, rankings, strict=True)):
        for position, name in enumerate(ranking):
            if name == target:
                positions[row] = position
                break
    return positions


def _recall(positions: np.ndarray, ks: Sequence[int], prefix: str) -> dict[str, float]:
    return {f"{prefix}@{k}": float(np.mean(positions < k) * 100) for k in ks}


def cirr_recall(queries: Sequence[Query], rankings: Rankings, ks: Sequence[int] = CIRR_KS) -> dict[str, float]:
    """CIRR Recall@k over the whole gallery, the reference removed from each ranking; target = target_hard."""
    ordered = _rankings(queries, rankings)
    cleaned = [clean_ranking(r, exclude={q.reference}) for q, r in zip(queries, ordered, strict=True)]
    return _recall(_target_positions([str(q.target) for q in queries], cleaned), ks, "R")


def cirr_subset_recall(
    queries: Sequence[Query], rankings: Rankings, ks: Sequence[int] = CIRR_SUBSET_KS
) -> dict[str, float]:
    """CIRR Recall_subset@k: the ranking restricted to the query's image set without the reference (five
    candidates), as the official evaluation masks the full ranking. Works on full rankings and on the
    top-3 lists of a recall_subset submission alike."""
    ordered = _rankings(queries, rankings)
    restricted = []
    for query, ranking in zip(queries, ordered, strict=True):
        if not query.image_set:
            raise InputError(f"query {query.id}", "has no image set (Recall_subset is defined for CIRR only)")
        members = set(query.subset_candidates)
        restricted.append([n for n in clean_ranking(ranking, exclude={query.reference}) if n in members])
    return _recall(_target_positions([str(q.target) for q in queries], restricted), ks, "Rs")


def cirr_metrics(
    queries: Sequence[Query], rankings: Rankings, *, subset_rankings: Rankings | None = None
) -> dict[str, float]:
    """All CIRR metrics and the main score (R@5 + Rs@1) / 2. Recall_subset comes from `subset_rankings` when
    given (a recall_subset submission), else from the full `rankings`."""
    scores = cirr_recall(queries, rankings)
    scores.update(cirr_subset_recall(queries, subset_rankings if subset_rankings is not None else rankings))
    scores["(R@5+Rs@1)/2"] = (scores["R@5"] + scores["Rs@1"]) / 2
    return scores


def _average_precisions(queries: Sequence[Query], rankings: Sequence[Sequence[str]], ks: Sequence[int]) -> np.ndarray:
    """AP@k per query and k (rows: queries, columns: ks), the CIRCO definition:
    AP@k = sum over ranks i <= k of precision@i * rel(i), divided by min(k, number of ground truths)."""
    depth = max(ks)
    relevant = np.zeros((len(queries), depth), dtype=bool)
    for row, (query, ranking) in enumerate(zip(queries, rankings, strict=True)):
        truths = set(query.ground_truths)
        for position, name in enumerate(ranking[:depth]):
            relevant[row, position] = name in truths
    hits = np.cumsum(relevant, axis=1) * relevant
    precisions = hits / np.arange(1, depth + 1)
    n_truths = np.array([len(set(q.ground_truths)) for q in queries])
    return np.stack([precisions[:, :k].sum(axis=1) / np.minimum(n_truths, k) for k in ks], axis=1)


def circo_metrics(queries: Sequence[Query], rankings: Rankings, ks: Sequence[int] = CIRCO_KS) -> dict[str, float]:
    """CIRCO mAP@k over all ground truths, Recall@k against the single annotated target, and the
    semantic-aspect mAP@10: for each aspect, the mean AP@10 of the queries tagged with it (a query with
    several aspects counts in each), as the official CIRCO evaluation computes it. An aspect no scored
    query carries is left out rather than reported as NaN."""
    cleaned = [clean_ranking(r) for r in _rankings(queries, rankings)]
    aps = _average_precisions(queries, cleaned, ks)
    scores = {f"mAP@{k}": float(aps[:, col].mean() * 100) for col, k in enumerate(ks)}
    scores.update(_recall(_target_positions([str(q.target) for q in queries], cleaned), ks, "R"))
    at10 = _average_precisions(queries, cleaned, (10,))[:, 0]
    for aspect in CIRCO_SEMANTIC_ASPECTS:
        rows = [i for i, q in enumerate(queries) if aspect in q.semantic_aspects]
        if rows:
            scores[f"mAP@10[{aspect}]"] = float(at10[rows].mean() * 100)
    return scores


def fashioniq_metrics(
    queries: Sequence[Query], rankings: Rankings, ks: Sequence[int] = FASHIONIQ_KS
) -> dict[str, float]:
    """FashionIQ Recall@k per category ("dress/R@10"), their mean over the categories scored ("avg/R@10";
    the published figure when all three are), and the challenge score avg/(R@10+R@50)/2."""
    ordered = _rankings(queries, rankings)
    by_category: dict[str, list[int]] = {}
    for row, query in enumerate(queries):
        if query.category is None:
            raise InputError(f"query {query.id}", "has no FashionIQ category")
        by_category.setdefault(query.category, []).append(row)
    scores: dict[str, float] = {}
    for category, rows in by_category.items():
        cleaned = [clean_ranking(ordered[row]) for row in rows]
        positions = _target_positions([str(queries[row].target) for row in rows], cleaned)
        scores.update({f"{category}/{name}": value for name, value in _recall(positions, ks, "R").items()})
    for k in ks:
        scores[f"avg/R@{k}"] = float(np.mean([scores[f"{c}/R@{k}"] for c in by_category]))
    if set(ks) >= {10, 50}:
        scores["avg/(R@10+R@50)/2"] = (scores["avg/R@10"] + scores["avg/R@50"]) / 2
    return scores
