"""A fourth benchmark is one module and one registry entry: a toy benchmark, registered here, goes through the shared
loaders, runner, reports and scoring without any of them knowing its name."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from cirgraph.agents.presets import preset
from cirgraph.evals import benchmarks
from cirgraph.evals.files import parse_entries
from cirgraph.evals.loaders import image_path, load_split
from cirgraph.evals.metrics import clean_ranking
from cirgraph.evals.runner import EvalSpec, Models, evaluate
from cirgraph.evals.scoring import score_predictions
from cirgraph.evals.submission import read_submission
from cirgraph.evals.task import AnnotationFile, Benchmark, BenchmarkTask, Query, Rankings, SplitPart, SplitSpec
from cirgraph.settings import Settings
from cirgraph.tools.hash_embedders import HashTextEmbedder

GALLERY = [f"pic{i}" for i in range(8)]
QUERIES = [{"qid": 1, "ref": "pic0", "text": "a red kite over the sea", "target": "pic3"},
           {"qid": 2, "ref": "pic1", "text": "two dogs asleep on a sofa", "target": "pic5"}]


class Entry(BaseModel):
    qid: int
    ref: str
    text: str
    target: str | None = None


def _split(name: str, has_ground_truth: bool) -> SplitSpec:
    part = SplitPart(queries=AnnotationFile(name=f"toy.{name}.json"), gallery=AnnotationFile(name="gallery.json"),
                     n_queries=2, n_gallery=len(GALLERY))
    return SplitSpec(name=name, parts=(part,), has_ground_truth=has_ground_truth)


class Toy:
    """The whole of a benchmark's behaviour: what its module would hold."""

    declaration = Benchmark(
        name="toy", description="Two queries over eight pictures.", reference="tests", revision="1",
        file_sha256={}, folder_aliases=("toy",), splits={"val": _split("val", True), "test": _split("test", False)},
        main_score="R@1", metrics=("R@1", "R@5"), license="CC0", images="none", citation="none")
    default_depth = 6
    has_server_format = True

    def read_queries(self, records: Any, source: Path, split: str, category: str | None) -> list[Query]:
        return [Query(id=str(e.qid), benchmark="toy", split=split, reference=e.ref, modification=e.text,
                      target=e.target, ground_truths=(e.target,) if e.target else ())
                for e in parse_entries(Entry, records, source, lambda record: "entry")]

    def read_gallery(self, data: Any) -> tuple[list[str], dict[str, str]]:
        return list(data), {}

    def gallery_from_images(self, images_dir: Path) -> list[str] | None:
        return None

    def image_candidates(self, name: str, images_dir: Path, image_files: Mapping[str, str]) -> list[Path]:
        return [images_dir / f"{name}.jpg"]

    def score(self, queries: Sequence[Query], rankings: Rankings, *,
              subset_rankings: Rankings | None = None) -> dict[str, float]:
        hits = {k: sum(q.target in clean_ranking(rankings[q.id])[:k] for q in queries) for k in (1, 5)}
        return {f"R@{k}": 100.0 * n / len(queries) for k, n in hits.items()}

    def run_notes(self, queries: Sequence[Query], results: Sequence[Any], depth: int) -> list[str]:
        return [f"toy: {len(results)} results, {depth} names each"]

    def write_submission(self, queries: Sequence[Query], rankings: Rankings, folder: Path, *, split: str,
                         gallery: Sequence[str] | None) -> list[Path]:
        path = folder / f"toy_{split}.json"
        path.write_text(json.dumps({q.id: list(rankings[q.id][:5]) for q in queries}))
        return [path]

    def score_submissions(self, payloads: Iterable[tuple[str, Mapping[str, Any]]], queries: Sequence[Query],
                          gallery: Sequence[str] | None) -> dict[str, float]:
        scores: dict[str, float] = {}
        for _, payload in payloads:
            scores.update(self.score(queries, payload))
        return scores


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The toy benchmark registered, and its data folder: annotations, and captions that name each target by its
    query's text (so a modification-only search ranks the target first)."""
    task: BenchmarkTask = Toy()
    monkeypatch.setitem(benchmarks.TASKS, "toy", task)
    data = tmp_path / "data" / "toy"
    data.mkdir(parents=True)
    (data / "gallery.json").write_text(json.dumps(GALLERY))
    (data / "toy.val.json").write_text(json.dumps(QUERIES))
    (data / "toy.test.json").write_text(json.dumps([{k: v for k, v in q.items() if k != "target"} for q in QUERIES]))
    captions = {name: [f"an ordinary picture number {i}"] for i, name in enumerate(GALLERY)}
    captions.update({q["target"]: [q["text"]] for q in QUERIES})
    (tmp_path / "captions.json").write_text(json.dumps(captions))
    return tmp_path


def run(toy: Path, split: str) -> Any:
    spec = EvalSpec("toy", split, toy / "data", captions_file=toy / "captions.json",
                    config=preset("modification-only"), out_dir=toy / "runs" / split)
    return evaluate(spec, Settings(), models=Models(text_embedder=HashTextEmbedder()))


def test_a_registered_benchmark_loads_through_the_shared_loaders(toy: Path) -> None:
    data = load_split("TOY", "val", toy / "data")
    assert [q.id for q in data.queries] == ["1", "2"] and data.gallery == tuple(GALLERY)
    assert benchmarks.get_benchmark("toy").main_score == "R@1"
    (toy / "images").mkdir()
    (toy / "images" / "pic3.jpg").write_bytes(b"")
    assert image_path(data, "pic3", toy / "images") == toy / "images" / "pic3.jpg"


def test_a_registered_benchmark_runs_scores_and_reports(toy: Path) -> None:
    record = run(toy, "val")
    assert record.benchmark == "toy" and record.counts["ok"] == 2
    assert record.metrics == {"R@1": 100.0, "R@5": 100.0} and record.main_value == 100.0
    assert record.config["k"] == 6 and all(len(q.ranking) == 6 for q in record.queries)  # its default depth
    assert "toy: 2 results, 6 names each" in record.notes


def test_a_registered_benchmark_writes_and_scores_submissions(toy: Path) -> None:
    record = run(toy, "test")
    assert record.metrics == {} and record.submission_error is None
    [path] = record.submissions
    payload = read_submission(path)
    assert sorted(payload) == ["1", "2"] and payload["1"][0] == "pic3"
    assert score_predictions("toy", "val", toy / "data", path) == {"R@1": 100.0, "R@5": 100.0}
