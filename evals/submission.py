"""Test-server submission files for CIRR and CIRCO: build, validate, write and read them.

CIRR takes two JSON files, {"version": "rc2", "metric": "recall", pairid: top-50 names} and the same with
"recall_subset" and the top 3 of the query's image set; CIRCO takes {query id: top-50 COCO image ids}.
cirgraph.evals.scoring.score_predictions scores files in these formats against CIRR val or CIRCO val, so rankings
released by other systems can be compared with ours under the same metrics.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from cirgraph.errors import InputError
from cirgraph.evals.files import read_json
from cirgraph.evals.metrics import clean_ranking
from cirgraph.evals.task import Query, Rankings

CIRR_VERSION = "rc2"
TOP_K = {"recall": 50, "recall_subset": 3, "circo": 50}
CirrMetric = Literal["recall", "recall_subset"]
_MAX_LISTED = 10


def cirr_submission(queries: Sequence[Query], rankings: Rankings, *, metric: CirrMetric) -> dict[str, Any]:
    """The CIRR server payload: rankings deduplicated, the reference removed, restricted to the image set for
    recall_subset, cut to the top 50 (recall) or 3 (recall_subset)."""
    payload: dict[str, Any] = {"version": CIRR_VERSION, "metric": metric}
    for query in queries:
        ranking = clean_ranking(_ranking_of(query, rankings), exclude={query.reference})
        if metric == "recall_subset":
            members = set(query.subset_candidates)
            ranking = [name for name in ranking if name in members]
        payload[query.id] = ranking[: TOP_K[metric]]
    return payload


def circo_submission(queries: Sequence[Query], rankings: Rankings) -> dict[str, list[int]]:
    """The CIRCO server payload: top-50 unique COCO ids (integers, as the official examples write them)."""
    payload: dict[str, list[int]] = {}
    for query in queries:
        ranking = clean_ranking(_ranking_of(query, rankings))[: TOP_K["circo"]]
        if not all(name.isdigit() for name in ranking):
            raise InputError(f"query {query.id}", "CIRCO rankings must be COCO image ids")
        payload[query.id] = [int(name) for name in ranking]
    return payload


def write_cirr_submissions(
    queries: Sequence[Query],
    rankings: Rankings,
    directory: Path | str,
    *,
    gallery: Sequence[str],
    subset_rankings: Rankings | None = None,
    stem: str = "cirr",
) -> tuple[Path, Path]:
    """Validate and write `<stem>_recall.json` and `<stem>_recall_subset.json`; returns both paths."""
    subset_source = rankings if subset_rankings is None else subset_rankings
    paths = []
    for metric, source in (("recall", rankings), ("recall_subset", subset_source)):
        payload = cirr_submission(queries, source, metric=metric)
        validate_cirr_submission(payload, queries, gallery, source=f"{metric} submission")
        paths.append(_write(payload, Path(directory) / f"{stem}_{metric}.json"))
    return paths[0], paths[1]


def write_circo_submission(
    queries: Sequence[Query], rankings: Rankings, path: Path | str, *, gallery: Sequence[str] | None = None
) -> Path:
    """Validate and write a CIRCO submission file."""
    payload = circo_submission(queries, rankings)
    validate_circo_submission(payload, queries, gallery, source="CIRCO submission")
    return _write(payload, Path(path))


def read_submission(path: Path | str) -> dict[str, Any]:
    """Parse a submission file; a query id written twice is an error (plain JSON parsing keeps the last)."""
    path = Path(path)

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated:
            raise InputError(str(path), f"query ids appear more than once: {', '.join(repeated[:_MAX_LISTED])}")
        return dict(pairs)

    payload = read_json(path, object_pairs_hook=unique)
    if not isinstance(payload, dict):
        raise InputError(str(path), f"expected a JSON object of query id -> ranking, found {type(payload).__name__}")
    return payload


def validate_cirr_submission(
    payload: Mapping[str, Any],
    queries: Sequence[Query],
    gallery: Sequence[str] | None,
    *,
    source: str = "submission",
    allow_extra: bool = False,
) -> CirrMetric:
    """Check a CIRR payload as the server would; returns its metric, raises InputError listing every problem."""
    problems = []
    if payload.get("version") != CIRR_VERSION:
        problems.append(f"'version' must be {CIRR_VERSION!r}, found {payload.get('version')!r}")
    metric = payload.get("metric")
    if metric not in ("recall", "recall_subset"):
        raise InputError(source, f"'metric' must be 'recall' or 'recall_subset', found {metric!r}")
    rankings = {key: value for key, value in payload.items() if key not in ("version", "metric")}
    problems += _check_rankings(rankings, queries, gallery, TOP_K[metric], allow_extra)
    for query in queries:
        ranking = rankings.get(query.id)
        if isinstance(ranking, list) and query.reference in ranking:
            problems.append(f"query {query.id}: ranking holds the reference image {query.reference}")
        if metric == "recall_subset" and isinstance(ranking, list):
            outside = [name for name in ranking if name not in query.subset_candidates]
            if outside:
                problems.append(f"query {query.id}: {', '.join(map(str, outside))} not in the image set")
    _raise(source, problems)
    return metric


def validate_circo_submission(
    payload: Mapping[str, Any],
    queries: Sequence[Query],
    gallery: Sequence[str] | None = None,
    *,
    source: str = "submission",
    allow_extra: bool = False,
) -> None:
    """Check a CIRCO payload: every query, 50 unique ids each, in the gallery when the gallery is known."""
    problems = []
    for key, ranking in payload.items():
        if isinstance(ranking, list) and not all(str(i).isdigit() for i in ranking):
            problems.append(f"query {key}: ranking holds something other than COCO image ids")
    rankings = {key: [str(i) for i in value] if isinstance(value, list) else value for key, value in payload.items()}
    _raise(source, problems + _check_rankings(rankings, queries, gallery, TOP_K["circo"], allow_extra))


def _check_rankings(
    rankings: Mapping[str, Any], queries: Sequence[Query], gallery: Sequence[str] | None, length: int, extra: bool
) -> list[str]:
    """Problems shared by every format: missing or unknown ids, wrong lengths, repeats, names off the gallery."""
    ids = {query.id for query in queries}
    problems = [f"query {qid}: missing" for qid in (query.id for query in queries) if qid not in rankings]
    if not extra:
        problems += [f"query {key}: not a query of this split" for key in rankings if key not in ids]
    names = set(gallery) if gallery is not None else None
    for key, ranking in rankings.items():
        if key not in ids:
            continue
        if not isinstance(ranking, list):
            problems.append(f"query {key}: ranking must be a list, found {type(ranking).__name__}")
            continue
        if len(ranking) != length:
            problems.append(f"query {key}: {len(ranking)} names, expected {length}")
        if len(set(map(str, ranking))) != len(ranking):
            problems.append(f"query {key}: a name appears more than once")
        unknown = [str(name) for name in ranking if names is not None and str(name) not in names]
        if unknown:
            problems.append(f"query {key}: not in the gallery: {', '.join(unknown[:3])}")
    return problems


def _raise(source: str, problems: list[str]) -> None:
    if problems:
        shown = "; ".join(problems[:_MAX_LISTED])
        more = f" (and {len(problems) - _MAX_LISTED} more)" if len(problems) > _MAX_LISTED else ""
        raise InputError(source, f"{len(problems)} problem(s): {shown}{more}")


def _ranking_of(query: Query, rankings: Rankings) -> Sequence[str]:
    if query.id not in rankings:
        raise InputError(f"query {query.id}", "has no ranking")
    return rankings[query.id]


def _write(payload: Mapping[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return path
