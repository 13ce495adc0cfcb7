"""The official metrics on small cases worked out by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import pytest

from cirgraph.errors import InputError
from cirgraph.evals.benchmarks import get_benchmark
from cirgraph.evals.metrics import (
    circo_metrics,
    cirr_metrics,
    cirr_recall,
    cirr_subset_recall,
    clean_ranking,
    fashioniq_metrics,
)
from cirgraph.evals.scoring import score
from cirgraph.evals.task import Query


def cirr_query(qid: str, target: str, members: tuple[str, ...] = (), reference: str = "ref") -> Query:
    return Query(
        id=qid, benchmark="cirr", split="val", reference=reference, modification="m", target=target,
        ground_truths=(target,), image_set=members,
    )  # fmt: skip


def circo_query(qid: str, truths: tuple[str, ...], aspects: tuple[str, ...] = ()) -> Query:
    return Query(
        id=qid, benchmark="circo", split="val", reference="ref", modification="m", target=truths[0],
        ground_truths=truths, semantic_aspects=aspects,
    )  # fmt: skip


def fiq_query(qid: str, category: str, target: str) -> Query:
    return Query(
        id=qid, benchmark="fashioniq", split="val", reference="ref", modification="m", target=target,
        ground_truths=(target,), category=category,
    )  # fmt: skip


def test_clean_ranking_keeps_first_occurrences_and_drops_excluded() -> None:
    assert clean_ranking(["a", "b", "a", "ref", "c", "b"], exclude={"ref"}) == ["a", "b", "c"]
    assert clean_ranking([3, "3", 4]) == ["3", "4"]  # CIRCO ids as integers are names too


def test_cirr_recall_removes_the_reference_and_duplicates() -> None:
    queries = [cirr_query("1", "t"), cirr_query("2", "t"), cirr_query("3", "t"), cirr_query("4", "t")]
    rankings = {
        # ref and the repeated x1 are dropped: [x1, t] -> target at rank 2: hit for k >= 5, miss at k = 1
        "1": ["ref", "x1", "x1", "x1", "t"],
        # target first: hit everywhere
        "2": ["t", "x1"],
        # ranks 1..9 are x1..x9, the target is 10th: hit at 10 and 50 only
        "3": [f"x{i}" for i in range(1, 10)] + ["t"],
        # a short ranking without the target: miss everywhere
        "4": ["x1"],
    }
    # R@1 = 1/4, R@5 = 2/4, R@10 = 3/4, R@50 = 3/4
    assert cirr_recall(queries, rankings) == {"R@1": 25.0, "R@5": 50.0, "R@10": 75.0, "R@50": 75.0}


def test_cirr_reference_left_in_would_have_cost_a_rank() -> None:
    # 50 names before the target, one of them the reference: removing it puts the target 50th, a hit at 50
    ranking = ["ref"] + [f"x{i}" for i in range(49)] + ["t"]
    assert cirr_recall([cirr_query("1", "t")], {"1": ranking})["R@50"] == 100.0


def test_cirr_subset_recall_ranks_within_the_image_set() -> None:
    members = ("ref", "t", "m1", "m2", "m3", "m4")
    q1, q2 = cirr_query("1", "t", members), cirr_query("2", "t", members)
    rankings = {
        # restricted to {t, m1..m4}: [m1, t] (ref and x's dropped, m1 repeated once) -> target 2nd
        "1": ["x1", "ref", "m1", "x2", "m1", "t", "m2"],
        # restricted: [m3, m2, m1, t] -> target 4th: a miss for k <= 3
        "2": ["m3", "m2", "x1", "m1", "t"],
    }
    # Rs@1 = 0/2, Rs@2 = 1/2, Rs@3 = 1/2
    assert cirr_subset_recall([q1, q2], rankings) == {"Rs@1": 0.0, "Rs@2": 50.0, "Rs@3": 50.0}


def test_cirr_main_score_is_mean_of_r5_and_rs1() -> None:
    members = ("ref", "t", "m1", "m2", "m3", "m4")
    queries = [cirr_query("1", "t", members), cirr_query("2", "t", members)]
    # query 1: target 1st overall and in the set; query 2: target 7th overall, 2nd in the set (after m1)
    rankings = {"1": ["t", "m1"], "2": ["x1", "x2", "m1", "x3", "x4", "x5", "t"]}
    scores = cirr_metrics(queries, rankings)
    # R@5 = 1/2 = 50, Rs@1 = 1/2 = 50, main = (50 + 50) / 2 = 50
    assert scores["R@5"] == 50.0 and scores["Rs@1"] == 50.0 and scores["(R@5+Rs@1)/2"] == 50.0
    assert scores["Rs@2"] == 100.0
    assert set(scores) == set(get_benchmark("cirr").metrics)


def test_cirr_subset_rankings_override_the_full_ranking() -> None:
    members = ("ref", "t", "m1", "m2", "m3", "m4")
    query = cirr_query("1", "t", members)
    scores = cirr_metrics([query], {"1": ["m1", "t"]}, subset_rankings={"1": ["t", "m1", "m2"]})
    assert scores["Rs@1"] == 100.0 and scores["R@1"] == 0.0


def test_circo_average_precision_by_hand() -> None:
    # ground truths {g1, g2, g3}; ranking: g1, x, g2, x, x, x, x, x, x, g3
    # precision at the hits: rank 1 -> 1/1, rank 3 -> 2/3, rank 10 -> 3/10
    # AP@5  = (1 + 2/3) / min(5, 3)        = 0.5556
    # AP@10 = (1 + 2/3 + 3/10) / min(10, 3) = 0.6556
    # AP@25 = AP@50 = AP@10 (no further hits, same divisor 3)
    query = circo_query("0", ("g1", "g2", "g3"), ("cardinality",))
    ranking = ["g1", "x1", "g2", "x2", "x3", "x4", "x5", "x6", "x7", "g3"]
    scores = circo_metrics([query], {"0": ranking})
    assert scores["mAP@5"] == pytest.approx(100 * (1 + 2 / 3) / 3)
    assert scores["mAP@10"] == pytest.approx(100 * (1 + 2 / 3 + 3 / 10) / 3)
    assert scores["mAP@25"] == scores["mAP@50"] == pytest.approx(scores["mAP@10"])
    # Recall@k against the annotated target g1 only, found first
    assert scores["R@5"] == 100.0
    assert scores["mAP@10[cardinality]"] == pytest.approx(scores["mAP@10"])
    assert "mAP@10[negation]" not in scores  # no query carries it


def test_circo_divisor_is_min_of_k_and_ground_truths() -> None:
    # 8 ground truths, all in the first 8 ranks: every precision is 1
    # AP@5 = 5 / min(5, 8) = 1; AP@10 = 8 / min(10, 8) = 1
    truths = tuple(f"g{i}" for i in range(8))
    scores = circo_metrics([circo_query("0", truths)], {"0": list(truths)})
    assert scores["mAP@5"] == scores["mAP@10"] == 100.0
    # the same ground truths, found at ranks 2, 4, ..., 16 behind x's:
    # precisions 1/2, 2/4, ..., 8/16 = 0.5 each; AP@5 = (0.5 + 0.5) / 5 = 0.2; AP@10 = 5 * 0.5 / 8 = 0.3125
    interleaved = [name for g in truths for name in (f"x{g}", g)]
    scores = circo_metrics([circo_query("0", truths)], {"0": interleaved})
    assert scores["mAP@5"] == pytest.approx(20.0)
    assert scores["mAP@10"] == pytest.approx(31.25)
    # AP@25 = 8 * 0.5 / 8 = 0.5
    assert scores["mAP@25"] == pytest.approx(50.0)


def test_circo_duplicates_count_once_and_recall_targets_only_the_annotated_image() -> None:
    # ranking g2, g2, g1: the duplicate is dropped, so g1 is 2nd; the target is g1
    # AP@5 = (1/1 + 2/2) / min(5, 2) = 1 -- the duplicate neither scores twice nor pushes g1 down
    query = circo_query("0", ("g1", "g2"), ("viewpoint", "addition"))
    scores = circo_metrics([query], {"0": ["g2", "g2", "g1"]})
    assert scores["mAP@5"] == 100.0
    assert scores["R@5"] == 100.0
    # Recall against g1 alone: with g1 missing, R@50 is 0 although g2 is 1st
    assert circo_metrics([query], {"0": ["g2"]})["R@50"] == 0.0


def test_circo_semantic_aspect_map_averages_queries_carrying_the_aspect() -> None:
    # q0 (aspects a: cardinality, negation): AP@10 = 1 (single truth first)
    # q1 (aspect: negation): truth 2nd -> AP@10 = (1/2) / 1 = 0.5
    # cardinality: mean(1) = 100; negation: mean(1, 0.5) = 75; overall mAP@10 = 75
    q0 = circo_query("0", ("g",), ("cardinality", "negation"))
    q1 = circo_query("1", ("h",), ("negation",))
    scores = circo_metrics([q0, q1], {"0": ["g"], "1": ["x", "h"]})
    assert scores["mAP@10[cardinality]"] == 100.0
    assert scores["mAP@10[negation]"] == 75.0
    assert scores["mAP@10"] == 75.0


def test_fashioniq_recall_per_category_and_average() -> None:
    queries = [fiq_query("d0", "dress", "t"), fiq_query("d1", "dress", "t"), fiq_query("s0", "shirt", "t")]
    rankings = {
        "d0": ["t"],  # rank 1: hit at 10 and 50
        "d1": [f"x{i}" for i in range(20)] + ["t"],  # rank 21: hit at 50 only
        "s0": ["x"],  # missing: no hit
    }
    scores = fashioniq_metrics(queries, rankings)
    # dress: R@10 = 1/2, R@50 = 2/2; shirt: 0, 0; avg over the two categories: R@10 = 25, R@50 = 50
    assert scores == {
        "dress/R@10": 50.0, "dress/R@50": 100.0, "shirt/R@10": 0.0, "shirt/R@50": 0.0,
        "avg/R@10": 25.0, "avg/R@50": 50.0, "avg/(R@10+R@50)/2": 37.5,
    }  # fmt: skip


def test_fashioniq_reference_is_not_removed() -> None:
    # FashionIQ's evaluation ranks the whole gallery: a reference at rank 1 pushes the target to rank 11
    ranking = ["ref"] + [f"x{i}" for i in range(9)] + ["t"]
    assert fashioniq_metrics([fiq_query("d0", "dress", "t")], {"d0": ranking})["dress/R@10"] == 0.0


def test_missing_ranking_and_missing_ground_truth_name_the_query() -> None:
    with pytest.raises(InputError, match="query 2: has no ranking"):
        cirr_recall([cirr_query("1", "t"), cirr_query("2", "t")], {"1": ["t"]})
    test_query = Query(id="9", benchmark="cirr", split="test1", reference="r", modification="m")
    with pytest.raises(InputError, match="query 9: has no ground truth"):
        cirr_recall([test_query], {"9": ["t"]})
    with pytest.raises(InputError, match="nothing to score"):
        score("circo", [], {})


def test_extra_rankings_are_ignored_and_score_dispatches() -> None:
    scores = score("fashioniq", [fiq_query("d0", "dress", "t")], {"d0": ["t"], "other": ["t"]})
    assert scores["avg/R@10"] == 100.0
    with pytest.raises(InputError, match="unknown"):
        score("nope", [], {})
