"""Independent transcriptions of each protocol compared with cirgraph.evals.metrics: plain loops straight from
the definitions, on seeded random rankings with duplicates, short lists and references; and the array form of the
official evaluations (CIRR's masking, CIRCO's compute_metrics) on the real val queries."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

from cirgraph.evals.loaders import load_split
from cirgraph.evals.metrics import CIRCO_SEMANTIC_ASPECTS, circo_metrics, cirr_metrics, fashioniq_metrics
from cirgraph.evals.task import Query

GALLERY = [f"img{i:03d}" for i in range(120)]
SHARED = Path(os.environ.get("CIRGRAPH_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
real_data = pytest.mark.skipif(not (SHARED / "cirr").is_dir(), reason=f"real annotations not found at {SHARED}")


def first_occurrences(ranking: list[str]) -> list[str]:
    out: list[str] = []
    for name in ranking:
        if name not in out:
            out.append(name)
    return out


def reference_cirr(queries: list[Query], rankings: dict[str, list[str]]) -> dict[str, float]:
    """CIRR: drop the reference, then hit@k = target among the first k; subset: keep only set members."""
    totals = {f"R@{k}": 0 for k in (1, 5, 10, 50)} | {f"Rs@{k}": 0 for k in (1, 2, 3)}
    for q in queries:
        ranking = [n for n in first_occurrences(rankings[q.id]) if n != q.reference]
        subset = [n for n in ranking if n in q.image_set and n != q.reference]
        for k in (1, 5, 10, 50):
            totals[f"R@{k}"] += q.target in ranking[:k]
        for k in (1, 2, 3):
            totals[f"Rs@{k}"] += q.target in subset[:k]
    scores = {name: 100.0 * hits / len(queries) for name, hits in totals.items()}
    scores["(R@5+Rs@1)/2"] = (scores["R@5"] + scores["Rs@1"]) / 2
    return scores


def reference_ap(ranking: list[str], truths: tuple[str, ...], k: int) -> float:
    """AP@k = (1 / min(k, |GT|)) * sum_{i <= k} precision@i * rel(i)."""
    total, hits = 0.0, 0
    for i, name in enumerate(ranking[:k], start=1):
        if name in truths:
            hits += 1
            total += hits / i
    return total / min(k, len(truths))


def reference_circo(queries: list[Query], rankings: dict[str, list[str]]) -> dict[str, float]:
    scores: dict[str, float] = {}
    cleaned = {q.id: first_occurrences(rankings[q.id]) for q in queries}
    for k in (5, 10, 25, 50):
        scores[f"mAP@{k}"] = 100 * sum(reference_ap(cleaned[q.id], q.ground_truths, k) for q in queries) / len(queries)
        scores[f"R@{k}"] = 100 * sum(q.target in cleaned[q.id][:k] for q in queries) / len(queries)
    for aspect in CIRCO_SEMANTIC_ASPECTS:
        tagged = [q for q in queries if aspect in q.semantic_aspects]
        if tagged:
            aps = [reference_ap(cleaned[q.id], q.ground_truths, 10) for q in tagged]
            scores[f"mAP@10[{aspect}]"] = 100 * sum(aps) / len(aps)
    return scores


def reference_fashioniq(queries: list[Query], rankings: dict[str, list[str]]) -> dict[str, float]:
    scores: dict[str, float] = {}
    categories = sorted({q.category for q in queries if q.category})
    for category in categories:
        members = [q for q in queries if q.category == category]
        for k in (10, 50):
            hits = sum(q.target in first_occurrences(rankings[q.id])[:k] for q in members)
            scores[f"{category}/R@{k}"] = 100 * hits / len(members)
    for k in (10, 50):
        scores[f"avg/R@{k}"] = sum(scores[f"{c}/R@{k}"] for c in categories) / len(categories)
    scores["avg/(R@10+R@50)/2"] = (scores["avg/R@10"] + scores["avg/R@50"]) / 2
    return scores


def noisy_ranking(rng: random.Random, favoured: list[str]) -> list[str]:
    """A ranking with the favoured names near the top some of the time, repeats, and a random length."""
    ranking = rng.sample(GALLERY, rng.randint(0, 80))
    for name in favoured:
        if rng.random() < 0.7:
            ranking.insert(rng.randint(0, min(len(ranking), 30)), name)
    for _ in range(rng.randint(0, 6)):
        if ranking:
            ranking.insert(rng.randint(0, len(ranking)), rng.choice(ranking))
    return ranking


def random_cirr(rng: random.Random, n: int) -> tuple[list[Query], dict[str, list[str]]]:
    queries, rankings = [], {}
    for i in range(n):
        members = rng.sample(GALLERY, 6)
        reference, target = members[0], members[rng.randint(1, 5)]
        queries.append(
            Query(
                id=str(i),
                benchmark="cirr",
                split="val",
                reference=reference,
                modification="m",
                target=target,
                ground_truths=(target,),
                image_set=tuple(rng.sample(members, 6)),
            )
        )
        rankings[str(i)] = noisy_ranking(rng, [reference, target, *members])
    return queries, rankings


def random_circo(rng: random.Random, n: int) -> tuple[list[Query], dict[str, list[str]]]:
    queries, rankings = [], {}
    for i in range(n):
        truths = tuple(rng.sample(GALLERY, rng.randint(1, 14)))
        aspects = tuple(rng.sample(CIRCO_SEMANTIC_ASPECTS, rng.randint(0, 3)))
        queries.append(
            Query(
                id=str(i),
                benchmark="circo",
                split="val",
                reference="ref",
                modification="m",
                target=truths[0],
                ground_truths=truths,
                semantic_aspects=aspects,
            )
        )
        rankings[str(i)] = noisy_ranking(rng, ["ref", *truths])
    return queries, rankings


def random_fashioniq(rng: random.Random, n: int) -> tuple[list[Query], dict[str, list[str]]]:
    queries, rankings = [], {}
    for i in range(n):
        category = rng.choice(["dress", "shirt", "toptee"])
        target = rng.choice(GALLERY)
        queries.append(
            Query(
                id=f"{category}-{i}",
                benchmark="fashioniq",
                split="val",
                reference="ref",
                modification="m",
                target=target,
                ground_truths=(target,),
                category=category,
            )
        )
        rankings[f"{category}-{i}"] = noisy_ranking(rng, [target])
    return queries, rankings


@pytest.mark.parametrize("seed", range(20))
def test_cirr_matches_the_reference_transcription(seed: int) -> None:
    queries, rankings = random_cirr(random.Random(seed), 40)
    expected = reference_cirr(queries, rankings)
    assert cirr_metrics(queries, rankings) == pytest.approx(expected)


@pytest.mark.parametrize("seed", range(20))
def test_circo_matches_the_reference_transcription(seed: int) -> None:
    queries, rankings = random_circo(random.Random(seed), 40)
    expected = reference_circo(queries, rankings)
    assert circo_metrics(queries, rankings) == pytest.approx(expected)


@pytest.mark.parametrize("seed", range(20))
def test_fashioniq_matches_the_reference_transcription(seed: int) -> None:
    queries, rankings = random_fashioniq(random.Random(seed), 40)
    expected = reference_fashioniq(queries, rankings)
    assert fashioniq_metrics(queries, rankings) == pytest.approx(expected)


def test_random_cases_are_not_degenerate() -> None:
    # the comparison means something only if hits and misses both occur
    queries, rankings = random_cirr(random.Random(0), 200)
    scores = reference_cirr(queries, rankings)
    assert 0 < scores["R@1"] < scores["R@50"] < 100 and 0 < scores["Rs@1"] < 100
    queries, rankings = random_circo(random.Random(0), 200)
    assert 0 < reference_circo(queries, rankings)["mAP@10"] < 100


@real_data
def test_cirr_matches_the_official_masking_on_real_queries() -> None:
    """The official evaluation's array form (as CLIP4Cir's CIRR validation writes it): sort the whole gallery,
    mask out the reference, then mask to the image-set members; here on 300 real val queries."""
    data = load_split("cirr", "val", SHARED)
    queries, names = list(data.queries[:300]), np.array(data.gallery)
    rng = np.random.default_rng(0)
    scores = rng.random((len(queries), len(names)))
    column = {name: i for i, name in enumerate(names)}
    for row, query in enumerate(queries):
        scores[row, column[query.reference]] += 1.0  # the reference on top: it must be removed
        scores[row, column[str(query.target)]] += rng.random() * 0.05
    ranked = names[np.argsort(-scores, axis=1)]
    n = len(queries)
    references = np.array([q.reference for q in queries])
    kept = ranked[ranked != np.repeat(references, len(names)).reshape(n, -1)].reshape(n, len(names) - 1)
    labels = kept == np.repeat(np.array([q.target for q in queries]), len(names) - 1).reshape(n, -1)
    members = np.array([list(q.image_set) for q in queries])
    group_labels = labels[(kept[..., None] == members[:, None, :]).sum(-1).astype(bool)].reshape(n, -1)
    official = {f"R@{k}": 100 * labels[:, :k].sum() / n for k in (1, 5, 10, 50)}
    official |= {f"Rs@{k}": 100 * group_labels[:, :k].sum() / n for k in (1, 2, 3)}
    ours = cirr_metrics(queries, {q.id: list(ranked[row]) for row, q in enumerate(queries)})
    assert {k: ours[k] for k in official} == pytest.approx(official)
    assert 0 < official["Rs@1"] < 100


@real_data
def test_circo_matches_the_official_evaluation_on_real_queries() -> None:
    """The array form of the CIRCO repository's compute_metrics, on the 220 real val queries."""
    data = load_split("circo", "val", SHARED)
    rng = random.Random(1)
    pool = sorted({t for q in data.queries for t in q.ground_truths}) + [str(i) for i in range(1, 3000)]
    rankings = {}
    for query in data.queries:
        ranking = rng.sample(pool, 60)
        for truth in query.ground_truths:
            if rng.random() < 0.5:
                ranking.insert(rng.randint(0, 40), truth)
        rankings[query.id] = list(dict.fromkeys(ranking))[:50]  # the official code wants unique ids
    aps: dict[int, list[float]] = {k: [] for k in (5, 10, 25, 50)}
    recalls: dict[int, list[float]] = {k: [] for k in (5, 10, 25, 50)}
    for query in data.queries:
        predictions = np.array(rankings[query.id], dtype=int)
        truths = np.array(query.ground_truths, dtype=int)
        ap_labels = np.isin(predictions, truths)
        precisions = np.cumsum(ap_labels, axis=0) * ap_labels / np.arange(1, ap_labels.shape[0] + 1)
        for k in aps:
            aps[k].append(float(np.sum(precisions[:k]) / min(len(truths), k)))
            recalls[k].append(float(np.sum((predictions == int(str(query.target)))[:k])))
    official = {f"mAP@{k}": 100 * float(np.mean(v)) for k, v in aps.items()}
    official |= {f"R@{k}": 100 * float(np.mean(v)) for k, v in recalls.items()}
    ours = circo_metrics(list(data.queries), rankings)
    assert {k: ours[k] for k in official} == pytest.approx(official)
    assert 0 < official["mAP@10"] < 100
