"""CIRCO: its declaration, annotation entries (annotations/{val,test}.json), the COCO unlabeled gallery, image
locations, metrics and test-server file, behind the benchmark protocol (cirgraph.evals.task.BenchmarkTask)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from cirgraph.evals.files import parse_entries
from cirgraph.evals.metrics import CIRCO_SEMANTIC_ASPECTS, circo_metrics
from cirgraph.evals.submission import validate_circo_submission, write_circo_submission
from cirgraph.evals.task import AnnotationFile, Benchmark, Query, Rankings, SplitPart, SplitSpec


class Entry(BaseModel):
    """One entry of val.json / test.json; test entries carry no targets or aspects."""

    model_config = ConfigDict(extra="ignore")

    id: int
    reference_img_id: int
    relative_caption: str
    shared_concept: str
    target_img_id: int | None = None
    gt_img_ids: list[int] = []
    semantic_aspects: list[str] = []


class ImageInfo(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: int


class ImageInfoFile(BaseModel):
    """COCO's image_info_unlabeled2017.json: the 123,403 gallery images."""

    model_config = ConfigDict(extra="ignore")

    images: list[ImageInfo]


def entry_label(record: object) -> str:
    return f"query id {record.get('id')}" if isinstance(record, dict) else "entry"


def image_name(image_id: int) -> str:
    """Gallery name of a COCO image id: the id in decimal, as the annotations write it."""
    return str(int(image_id))


def to_query(entry: Entry, split: str) -> Query:
    """The typed query; the target is listed first among the ground truths, as the annotations order them."""
    truths = [image_name(i) for i in entry.gt_img_ids]
    target = image_name(entry.target_img_id) if entry.target_img_id is not None else None
    if target is not None and target not in truths:
        truths.insert(0, target)
    return Query(
        id=str(entry.id),
        benchmark="circo",
        split=split,
        reference=image_name(entry.reference_img_id),
        modification=entry.relative_caption,
        target=target,
        ground_truths=tuple(truths),
        shared_concept=entry.shared_concept,
        semantic_aspects=tuple(entry.semantic_aspects),
    )


def file_name(name: str) -> str:
    """COCO file name of a gallery name: the id zero-padded to 12 digits."""
    return f"{int(name):012d}.jpg"


def image_candidates(name: str, images_dir: Path) -> list[Path]:
    """The COCO file under the images folder itself, its unlabeled2017/, or CIRCO's COCO2017_unlabeled/ layout."""
    base = file_name(name)
    return [
        images_dir / base,
        images_dir / "unlabeled2017" / base,
        images_dir / "COCO2017_unlabeled" / "unlabeled2017" / base,
    ]


def gallery_from_images(images_dir: Path) -> list[str] | None:
    """Gallery names from a folder of COCO files (when image_info_unlabeled2017.json is not at hand)."""
    for folder in (images_dir, images_dir / "unlabeled2017", images_dir / "COCO2017_unlabeled" / "unlabeled2017"):
        if folder.is_dir():
            stems = (p.stem for p in folder.glob("*.jpg"))
            names = sorted(image_name(int(s)) for s in stems if len(s) == 12 and s.isdigit())
            if names:
                return names
    return None


def _declaration() -> Benchmark:
    gallery = AnnotationFile(
        name="image_info_unlabeled2017.json",
        folders=("", "annotations", "COCO2017_unlabeled/annotations"),
        optional=True,
    )

    def split(name: str, n_queries: int, has_ground_truth: bool) -> SplitSpec:
        queries = AnnotationFile(name=f"{name}.json", folders=("", "annotations"))
        parts = (SplitPart(queries=queries, gallery=gallery, n_queries=n_queries, n_gallery=123_403),)
        return SplitSpec(name=name, parts=parts, has_ground_truth=has_ground_truth)

    aspects = tuple(f"mAP@10[{aspect}]" for aspect in CIRCO_SEMANTIC_ASPECTS)
    return Benchmark(
        name="circo",
        description="Composed Image Retrieval on COmmon Objects in context: COCO 2017 unlabeled images as the "
        "gallery, several annotated ground truths per query.",
        reference="https://github.com/miccunifi/CIRCO",
        revision="annotations/ of the CIRCO repository",
        file_sha256={
            "val.json": "6b31a1dbc3c85627501d9a250f87708f24a27d74d6a65360b6ddd2537a154d04",
            "test.json": "2f7c37e89220c990b6b0525d6f3ed63d3fc02e03ce336aa42a3b822841b14886",
        },
        folder_aliases=("circo", "CIRCO"),
        splits={"val": split("val", 220, True), "test": split("test", 800, False)},
        main_score="mAP@10",
        metrics=("mAP@5", "mAP@10", "mAP@25", "mAP@50", "R@5", "R@10", "R@25", "R@50", *aspects),
        license="CC BY-NC 4.0",
        images="COCO 2017 unlabeled images (unlabeled2017/, 12-digit zero-padded ids), Flickr terms of use.",
        citation="""@InProceedings{Baldrati_2023_ICCV,
  author    = {Baldrati, Alberto and Agnolucci, Lorenzo and Bertini, Marco and Del Bimbo, Alberto},
  title     = {Zero-Shot Composed Image Retrieval with Textual Inversion},
  booktitle = {Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  year      = {2023},
  pages     = {15338-15347}
}""",
    )


class Circo:
    """CIRCO behind the benchmark protocol: the gallery list is optional (the COCO images can stand in for it)."""

    declaration = _declaration()
    default_depth = 50
    has_server_format = True

    def read_queries(self, records: Any, source: Path, split: str, category: str | None) -> list[Query]:
        return [to_query(e, split) for e in parse_entries(Entry, records, source, entry_label)]

    def read_gallery(self, data: Any) -> tuple[list[str], dict[str, str]]:
        info = ImageInfoFile.model_validate(data)
        return [image_name(image.id) for image in info.images], {}

    def gallery_from_images(self, images_dir: Path) -> list[str] | None:
        return gallery_from_images(images_dir)

    def image_candidates(self, name: str, images_dir: Path, image_files: Mapping[str, str]) -> list[Path]:
        return image_candidates(name, images_dir)

    def score(self, queries: Sequence[Query], rankings: Rankings, *,
              subset_rankings: Rankings | None = None) -> dict[str, float]:
        return circo_metrics(queries, rankings)

    def run_notes(self, queries: Sequence[Query], results: Sequence[Any], depth: int) -> list[str]:
        return []

    def write_submission(self, queries: Sequence[Query], rankings: Rankings, folder: Path, *, split: str,
                         gallery: Sequence[str] | None) -> list[Path]:
        return [write_circo_submission(queries, rankings, folder / f"circo_{split}.json", gallery=gallery)]

    def score_submissions(self, payloads: Iterable[tuple[str, Mapping[str, Any]]], queries: Sequence[Query],
                          gallery: Sequence[str] | None) -> dict[str, float]:
        scores: dict[str, float] = {}
        for source, payload in payloads:
            validate_circo_submission(payload, queries, gallery, source=source, allow_extra=True)
            scores.update(circo_metrics(queries, payload))
        return scores


TASK = Circo()
