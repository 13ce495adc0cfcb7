"""Scoring by benchmark name: rankings with the benchmark's official metrics, and test-server files against a split
with ground truth (so rankings released by other systems can be compared with ours under the same metrics)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from cirgraph.errors import InputError
from cirgraph.evals.benchmarks import get_task
from cirgraph.evals.loaders import load_split
from cirgraph.evals.submission import read_submission
from cirgraph.evals.task import Query, Rankings

log = logging.getLogger(__name__)


def score(benchmark: str, queries: Sequence[Query], rankings: Rankings, *,
          subset_rankings: Rankings | None = None) -> dict[str, float]:
    """Every metric of `benchmark` for these queries and rankings (`subset_rankings`: see cirr_metrics)."""
    return get_task(benchmark).score(queries, rankings, subset_rankings=subset_rankings)


def score_predictions(
    benchmark: str, split: str, data_dir: Path | str, predictions_file: Path | str | Sequence[Path | str]
) -> dict[str, float]:
    """Score server-format rankings against a split with ground truth (CIRR val, CIRCO val).

    For CIRR give the recall file, the recall_subset file, or both (then the main score is included too).
    Ids the loaded split does not hold are ignored (a full-val file scored on the val dev subset), with a log line.
    """
    files = [predictions_file] if isinstance(predictions_file, (str, Path)) else list(predictions_file)
    task = get_task(benchmark)
    bench = task.declaration
    if not task.has_server_format:
        raise InputError(bench.name, "has no test-server format; score rankings with cirgraph.evals.scoring.score")
    if not bench.split(split).has_ground_truth:
        raise InputError(f"{bench.name} {split}", "has no ground truth; submit to the benchmark's evaluation server")
    data = load_split(bench.name, split, data_dir)
    queries = list(data.queries)

    def payloads() -> Iterator[tuple[str, Mapping[str, Any]]]:  # read one by one, each checked before the next
        for file in files:
            payload = read_submission(file)
            extra = len(set(payload) - {q.id for q in queries} - {"version", "metric"})
            if extra:
                log.info("%s: %d ids are not queries of the loaded %s %s; ignored", file, extra, benchmark, split)
            yield str(file), payload

    return task.score_submissions(payloads(), queries, data.gallery)
