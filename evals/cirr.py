"""CIRR: its declaration, annotation entries (captions/cap.rc2.*.json, image_splits/split.rc2.*.json), image
locations, metrics and test-server files, behind the benchmark protocol (cirgraph.evals.task.BenchmarkTask)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter

from cirgraph.evals.files import parse_entries
from cirgraph.evals.metrics import cirr_metrics, cirr_recall, cirr_subset_recall
from cirgraph.evals.submission import validate_cirr_submission, write_cirr_submissions
from cirgraph.evals.task import AnnotationFile, Benchmark, Query, Rankings, SplitPart, SplitSpec


class ImageSet(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: int
    members: list[str]


class Entry(BaseModel):
    """One entry of cap.rc2.<split>.json; test1 entries carry no targets."""

    model_config = ConfigDict(extra="ignore")

    pairid: int
    reference: str
    caption: str
    img_set: ImageSet
    target_hard: str | None = None
    target_soft: dict[str, float] = {}


def entry_label(record: object) -> str:
    """How an entry is named in error messages."""
    return f"pairid {record.get('pairid')}" if isinstance(record, dict) else "entry"


def to_query(entry: Entry, split: str) -> Query:
    """The typed query for one CIRR entry; the ground truth is target_hard, as the official evaluation uses."""
    target = entry.target_hard
    return Query(
        id=str(entry.pairid),
        benchmark="cirr",
        split=split,
        reference=entry.reference,
        modification=entry.caption,
        target=target,
        ground_truths=(target,) if target else (),
        image_set=tuple(entry.img_set.members),
        soft_targets=dict(entry.target_soft),
    )


def image_candidates(name: str, images_dir: Path, relative_path: str | None) -> list[Path]:
    """Where an image may be: the split file's relative path ('./dev/dev-1-0-img0.png') under the images folder,
    under its img_raw/ (as some downloads unpack), or the bare file when the folder is the split's own."""
    relative = Path(relative_path) if relative_path else Path(f"{name}.png")
    return [images_dir / relative, images_dir / "img_raw" / relative, images_dir / relative.name]


def _declaration() -> Benchmark:
    def part(split: str, n_queries: int, n_gallery: int, dev_subset: bool) -> SplitPart:
        queries = AnnotationFile(
            name=f"cap.rc2.{split}.json",
            alternatives=("cap.rc2.val.dev.json",) if dev_subset else (),
            folders=("", "captions"),
        )
        gallery = AnnotationFile(name=f"split.rc2.{split}.json", folders=("", "image_splits"))
        return SplitPart(queries=queries, gallery=gallery, n_queries=n_queries, n_gallery=n_gallery)

    return Benchmark(
        name="cirr",
        description="Composed Image Retrieval on Real-life images: NLVR2 photos, one target per query, "
        "and a 6-image set per query for Recall_subset.",
        reference="https://github.com/Cuberick-Orion/CIRR",
        revision="rc2",
        file_sha256={
            "cap.rc2.val.dev.json": "554bd19ee0bfe888bfcdc00822747dfbcd2dc737bf2df21ee8bbc19958b7338b",
            "split.rc2.val.json": "de36f7a7219c8bb06347a67748cfc68405be7dad62853a1e31846c98e491235b",
            "cap.rc2.test1.json": "26a2b2e7a5c96c903491aefc7d5f237f03d3cca97712e1b6bb3b231db5ff8001",
            "split.rc2.test1.json": "bf2bb9ed0659c4aae35de72350652b9ab75d36a060211f826bec15c58ec12566",
        },
        folder_aliases=("cirr", "CIRR", "cirr_dataset"),
        splits={
            "val": SplitSpec(name="val", parts=(part("val", 4181, 2297, True),), has_ground_truth=True),
            "test1": SplitSpec(name="test1", parts=(part("test1", 4148, 2315, False),), has_ground_truth=False),
        },
        main_score="(R@5+Rs@1)/2",
        metrics=("R@1", "R@5", "R@10", "R@50", "Rs@1", "Rs@2", "Rs@3", "(R@5+Rs@1)/2"),
        license="MIT",
        images="NLVR2 images (request access from the NLVR2 authors); the split files map names to ./dev/, ./test1/.",
        citation="""@InProceedings{Liu_2021_ICCV,
  author    = {Liu, Zheyuan and Rodriguez-Opazo, Cristian and Teney, Damien and Gould, Stephen},
  title     = {Image Retrieval on Real-Life Images With Pre-Trained Vision-and-Language Models},
  booktitle = {Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  year      = {2021},
  pages     = {2125-2134}
}""",
    )


def subset_depth_note(queries: Sequence[Query], results: Sequence[Any], depth: int) -> list[str]:
    """Recall_subset orders the image set within each ranking and the members scored exactly below it (the
    subset tail). A member the search could not score (no embedding, or a record from before the tail existed)
    leaves the order unknown, and the query counts as a miss. Say how often that happened."""
    unknown = 0
    for query, result in zip(queries, results, strict=True):
        ranked = set(result.ranking) | set(result.subset_tail)
        if result.status == "ok" and query.target not in ranked and set(query.subset_candidates) - ranked - {
                query.target}:
            unknown += 1
    if not unknown:
        return []
    return [f"Recall_subset: in {unknown} of {len(results)} queries the target and other image-set members are "
            f"neither in the top {depth} nor scored below it; they count as misses (a lower bound)"]


class Cirr:
    """CIRR behind the benchmark protocol. Runs keep 200 ranked names, so that Recall_subset, which orders the
    query's image set within the full ranking, finds nearly every member."""

    declaration = _declaration()
    default_depth = 200
    has_server_format = True

    def read_queries(self, records: Any, source: Path, split: str, category: str | None) -> list[Query]:
        return [to_query(e, split) for e in parse_entries(Entry, records, source, entry_label)]

    def read_gallery(self, data: Any) -> tuple[list[str], dict[str, str]]:
        mapping = TypeAdapter(dict[str, str]).validate_python(data)
        return list(mapping), mapping

    def gallery_from_images(self, images_dir: Path) -> list[str] | None:
        return None

    def image_candidates(self, name: str, images_dir: Path, image_files: Mapping[str, str]) -> list[Path]:
        return image_candidates(name, images_dir, image_files.get(name))

    def score(self, queries: Sequence[Query], rankings: Rankings, *,
              subset_rankings: Rankings | None = None) -> dict[str, float]:
        return cirr_metrics(queries, rankings, subset_rankings=subset_rankings)

    def run_notes(self, queries: Sequence[Query], results: Sequence[Any], depth: int) -> list[str]:
        return subset_depth_note(queries, results, depth)

    def write_submission(self, queries: Sequence[Query], rankings: Rankings, folder: Path, *, split: str,
                         gallery: Sequence[str] | None) -> list[Path]:
        return list(write_cirr_submissions(queries, rankings, folder, gallery=gallery or (), stem=f"cirr_{split}"))

    def score_submissions(self, payloads: Iterable[tuple[str, Mapping[str, Any]]], queries: Sequence[Query],
                          gallery: Sequence[str] | None) -> dict[str, float]:
        """The recall file, the recall_subset file, or both (then the main score is included too)."""
        scores: dict[str, float] = {}
        for source, payload in payloads:
            metric = validate_cirr_submission(payload, queries, gallery, source=source, allow_extra=True)
            scorer = cirr_recall if metric == "recall" else cirr_subset_recall
            scores.update(scorer(queries, payload))
        if "R@5" in scores and "Rs@1" in scores:
            scores["(R@5+Rs@1)/2"] = (scores["R@5"] + scores["Rs@1"]) / 2
        return scores


TASK = Cirr()
