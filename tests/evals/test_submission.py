"""Submission files: round trips in the CIRR and CIRCO server formats, each validation error, and scoring."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from cirgraph.errors import InputError
from cirgraph.evals.loaders import load_split
from cirgraph.evals.metrics import circo_metrics, cirr_metrics
from cirgraph.evals.scoring import score_predictions
from cirgraph.evals.submission import (
    cirr_submission,
    read_submission,
    validate_circo_submission,
    validate_cirr_submission,
    write_circo_submission,
    write_cirr_submissions,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = Path(os.environ.get("CIRGRAPH_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


def shuffled_rankings(data, seed: int = 0) -> dict[str, list[str]]:
    """Whole-gallery rankings with the reference near the top and a repeated name, as a retriever might return."""
    rng = random.Random(seed)
    rankings = {}
    for query in data.queries:
        names = list(data.gallery)
        rng.shuffle(names)
        names.insert(1, query.reference)
        names.insert(3, names[0])
        rankings[query.id] = names
    return rankings


def test_cirr_round_trip(tmp_path: Path) -> None:
    data = load_split("cirr", "test1", FIXTURES)
    rankings = shuffled_rankings(data)
    recall_path, subset_path = write_cirr_submissions(data.queries, rankings, tmp_path, gallery=data.gallery)
    recall, subset = read_submission(recall_path), read_submission(subset_path)
    assert recall["version"] == "rc2" and recall["metric"] == "recall" and subset["metric"] == "recall_subset"
    for query in data.queries:
        expected = [n for n in dict.fromkeys(rankings[query.id]) if n != query.reference]
        assert recall[query.id] == expected[:50]
        assert subset[query.id] == [n for n in expected if n in query.subset_candidates][:3]
    assert validate_cirr_submission(recall, data.queries, data.gallery) == "recall"
    assert validate_cirr_submission(subset, data.queries, data.gallery) == "recall_subset"


def test_circo_round_trip(tmp_path: Path) -> None:
    data = load_split("circo", "test", FIXTURES)
    rankings = shuffled_rankings(data)
    path = write_circo_submission(data.queries, rankings, tmp_path / "circo.json", gallery=data.gallery)
    payload = read_submission(path)
    assert set(payload) == {"0", "1"} and all(len(v) == 50 and isinstance(v[0], int) for v in payload.values())
    assert payload["0"] == [int(n) for n in dict.fromkeys(rankings["0"])][:50]
    validate_circo_submission(payload, data.queries, data.gallery)


@pytest.fixture
def cirr_test1():
    data = load_split("cirr", "test1", FIXTURES)
    return data, cirr_submission(data.queries, shuffled_rankings(data), metric="recall")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p, q: p.pop(q[0].id), "query 12063: missing"),
        (lambda p, q: p.update({"99999": p[q[0].id]}), "query 99999: not a query of this split"),
        (lambda p, q: p[q[0].id].pop(), "query 12063: 49 names, expected 50"),
        (lambda p, q: p[q[0].id].__setitem__(1, p[q[0].id][0]), "query 12063: a name appears more than once"),
        (lambda p, q: p[q[0].id].__setitem__(0, "dev-1-0-img0"), "query 12063: not in the gallery: dev-1-0-img0"),
        (lambda p, q: p[q[0].id].__setitem__(0, q[0].reference), "query 12063: ranking holds the reference image"),
        (lambda p, q: p.update({"version": "rc1"}), "'version' must be 'rc2', found 'rc1'"),
        (lambda p, q: p.update({q[0].id: "test1-147-1-img1"}), "query 12063: ranking must be a list"),
    ],
)
def test_cirr_validation_errors(cirr_test1, change, message: str) -> None:
    data, payload = cirr_test1
    change(payload, data.queries)
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        validate_cirr_submission(payload, data.queries, data.gallery, source="recall.json")


def test_cirr_metric_and_subset_membership_are_checked(cirr_test1) -> None:
    data, payload = cirr_test1
    with pytest.raises(InputError, match="'metric' must be 'recall' or 'recall_subset', found 'map'"):
        validate_cirr_submission({**payload, "metric": "map"}, data.queries, data.gallery)
    subset = cirr_submission(data.queries, shuffled_rankings(data), metric="recall_subset")
    query = data.queries[0]
    outsider = next(n for n in data.gallery if n not in query.image_set)
    subset[query.id] = [outsider, *subset[query.id][:2]]
    with pytest.raises(InputError, match=f"query {query.id}: {outsider} not in the image set"):
        validate_cirr_submission(subset, data.queries, data.gallery)


def test_writing_a_too_short_ranking_names_the_query(tmp_path: Path) -> None:
    data = load_split("cirr", "test1", FIXTURES)
    rankings = shuffled_rankings(data)
    rankings["12064"] = rankings["12064"][:20]  # 20 names, one the reference and one a repeat: 18 remain
    with pytest.raises(InputError, match=r"recall submission: 1 problem\(s\): query 12064: 18 names, expected 50"):
        write_cirr_submissions(data.queries, rankings, tmp_path, gallery=data.gallery)


def test_circo_validation_errors() -> None:
    data = load_split("circo", "test", FIXTURES)
    good = {q.id: [int(n) for n in data.gallery[:50]] for q in data.queries}
    with pytest.raises(InputError, match="query 1: ranking holds something other than COCO image ids"):
        validate_circo_submission({**good, "1": ["x", *good["1"][1:]]}, data.queries, data.gallery)
    with pytest.raises(InputError, match="query 0: not in the gallery: 12"):
        validate_circo_submission({**good, "0": [12, *good["0"][1:]]}, data.queries, data.gallery)
    with pytest.raises(InputError, match="query 0: a name appears more than once"):
        validate_circo_submission({**good, "0": [good["0"][1], *good["0"][1:]]}, data.queries)
    with pytest.raises(InputError, match="query 1: missing"):
        validate_circo_submission({"0": good["0"]}, data.queries)


def test_read_submission_rejects_repeated_ids_and_non_objects(tmp_path: Path) -> None:
    path = tmp_path / "sub.json"
    path.write_text('{"0": [1], "1": [2], "0": [3]}')
    with pytest.raises(InputError, match="query ids appear more than once: 0"):
        read_submission(path)
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match="expected a JSON object"):
        read_submission(path)


def test_score_predictions_agrees_with_the_metrics(tmp_path: Path) -> None:
    data = load_split("cirr", "val", FIXTURES)
    rankings = shuffled_rankings(data, seed=3)
    for query in data.queries[:2]:  # put two targets near the top so the scores are not all zero
        rankings[query.id].insert(0, str(query.target))
    recall_path, subset_path = write_cirr_submissions(data.queries, rankings, tmp_path, gallery=data.gallery)
    expected = cirr_metrics(data.queries, rankings)
    both = score_predictions("cirr", "val", FIXTURES, [recall_path, subset_path])
    assert both == pytest.approx(expected) and both["R@1"] == 40.0
    only_recall = score_predictions("cirr", "val", FIXTURES, recall_path)
    assert set(only_recall) == {"R@1", "R@5", "R@10", "R@50"}


def test_score_predictions_on_circo_val(tmp_path: Path) -> None:
    data = load_split("circo", "val", FIXTURES)
    rankings = shuffled_rankings(data, seed=5)
    rankings["0"] = ["900003", "900002", *rankings["0"]]
    path = write_circo_submission(data.queries, rankings, tmp_path / "val.json", gallery=data.gallery)
    scores = score_predictions("circo", "val", FIXTURES, path)
    assert scores == pytest.approx(circo_metrics(data.queries, rankings))
    assert scores["R@5"] == pytest.approx(100 / 3)


def test_score_predictions_refuses_splits_without_ground_truth(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cirr test1: has no ground truth"):
        score_predictions("cirr", "test1", FIXTURES, tmp_path / "x.json")
    with pytest.raises(InputError, match="fashioniq: has no test-server format"):
        score_predictions("fashioniq", "val", FIXTURES, tmp_path / "x.json")


@pytest.mark.skipif(not (SHARED / "cirr").is_dir(), reason=f"real annotations not found at {SHARED}")
def test_score_a_full_val_file_on_the_dev_subset(tmp_path: Path) -> None:
    data = load_split("cirr", "val", SHARED)
    gallery = list(data.gallery or ())
    payload: dict[str, object] = {"version": "rc2", "metric": "recall"}
    for i, query in enumerate(data.queries):
        others = [n for n in gallery[:60] if n not in (query.reference, query.target)]
        # the target first for even rows, absent for odd rows: R@k = 50% for every k
        payload[query.id] = ([query.target] + others)[:50] if i % 2 == 0 else others[:50]
    payload["99999999"] = gallery[:50]  # a query of the full val file, not of the dev subset: ignored
    path = tmp_path / "recall.json"
    path.write_text(json.dumps(payload))
    scores = score_predictions("cirr", "val", SHARED, path)
    assert scores["R@1"] == pytest.approx(100 * 1054 / 2107)
