"""FashionIQ: its declaration, annotation entries (captions/cap.<category>.val.json,
image_splits/split.<category>.val.json), image locations and metrics, behind the benchmark protocol
(cirgraph.evals.task.BenchmarkTask). It has no test server: val is scored here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter

from cirgraph.errors import InputError
from cirgraph.evals.files import parse_entries
from cirgraph.evals.metrics import fashioniq_metrics
from cirgraph.evals.task import AnnotationFile, Benchmark, Query, Rankings, SplitPart, SplitSpec

_STRIP = ".?, "
CATEGORIES: tuple[str, ...] = ("dress", "shirt", "toptee")


class Entry(BaseModel):
    """One entry of cap.<category>.<split>.json: `candidate` is the reference image."""

    model_config = ConfigDict(extra="ignore")

    candidate: str
    captions: list[str]
    target: str | None = None


def entry_label(record: object) -> str:
    return f"candidate {record.get('candidate')}" if isinstance(record, dict) else "entry"


def join_captions(captions: list[str] | tuple[str, ...]) -> str:
    """The modification text of a FashionIQ query: captions stripped of '.?, ' and joined with ' and '
    (the zero-shot convention of SEARLE and CIReVL); empty captions are left out."""
    parts = [c.strip(_STRIP) for c in captions]
    return " and ".join(p for p in parts if p)


def to_query(entry: Entry, split: str, category: str, row: int) -> Query:
    """The typed query; FashionIQ entries have no id, so the id is '<category>-<row in the file>'."""
    return Query(
        id=f"{category}-{row}",
        benchmark="fashioniq",
        split=split,
        reference=entry.candidate,
        modification=join_captions(entry.captions),
        target=entry.target,
        ground_truths=(entry.target,) if entry.target else (),
        category=category,
        captions=tuple(entry.captions),
    )


def image_candidates(name: str, images_dir: Path) -> list[Path]:
    """images/<asin>.png or .jpg, under the images folder or the folder itself."""
    return [folder / f"{name}{ext}" for folder in (images_dir, images_dir / "images") for ext in (".png", ".jpg")]


def _declaration() -> Benchmark:
    counts = {"dress": (2017, 3817), "shirt": (2038, 6346), "toptee": (1961, 5373)}
    parts = tuple(
        SplitPart(
            category=category,
            queries=AnnotationFile(name=f"cap.{category}.val.json", folders=("", "captions")),
            gallery=AnnotationFile(name=f"split.{category}.val.json", folders=("", "image_splits")),
            n_queries=counts[category][0],
            n_gallery=counts[category][1],
        )
        for category in CATEGORIES
    )
    per_category = tuple(f"{c}/R@{k}" for c in CATEGORIES for k in (10, 50))
    return Benchmark(
        name="fashioniq",
        description="Fashion IQ: product photos of dresses, shirts and tops/tees, two crowd-written relative "
        "captions per query, one target; recall per category.",
        reference="https://github.com/XiaoxiaoGuo/fashion-iq",
        revision="captions/ and image_splits/ of the Fashion IQ repository",
        file_sha256={
            "cap.dress.val.json": "5e5117d45695df9c3ca91fac3e0bc49e6422ae9c8b3793f0ac9b3ab83adb7de9",
            "cap.shirt.val.json": "7b7ca3797b85dddfd83e74cdb4454cb63e3e7c09acef2590155efbacea6d7feb",
            "cap.toptee.val.json": "b4e09f428e6c255cc4b4ec46e77908305ab83075d82840c960be81af15cdc5eb",
            "split.dress.val.json": "21ff91d53c23859da91bfd49f3acc139b7f3a3dc944fc4e4a80194468cf14bab",
            "split.shirt.val.json": "b82effbf7352a6f828b38c45eb32e53d726bd4d6fd81d6290c81eeb2c68e3234",
            "split.toptee.val.json": "ee42b2505275dd7a19b11ddb88c9264aab2d77f4e59b075fb1c7c3095d02f412",
        },
        folder_aliases=("fashioniq", "fashionIQ", "FashionIQ", "fashionIQ_dataset", "fashion-iq"),
        splits={"val": SplitSpec(name="val", parts=parts, has_ground_truth=True)},
        main_score="avg/(R@10+R@50)/2",
        metrics=(*per_category, "avg/R@10", "avg/R@50", "avg/(R@10+R@50)/2"),
        license="CDLA (Community Data License Agreement)",
        images="Amazon product images by ASIN (images/<asin>.png or .jpg), from the Fashion IQ image links.",
        citation="""@InProceedings{Wu_2021_CVPR,
  author    = {Wu, Hui and Gao, Yupeng and Guo, Xiaoxiao and Al-Halah, Ziad and Rennie, Steven and Grauman, Kristen
               and Feris, Rogerio},
  title     = {Fashion IQ: A New Dataset Towards Retrieving Images by Natural Language Feedback},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2021},
  pages     = {11307-11317}
}""",
    )


class FashionIQ:
    """FashionIQ behind the benchmark protocol: one gallery per category, no test-server format."""

    declaration = _declaration()
    default_depth = 50
    has_server_format = False

    def read_queries(self, records: Any, source: Path, split: str, category: str | None) -> list[Query]:
        entries = parse_entries(Entry, records, source, entry_label)
        return [to_query(e, split, str(category), row) for row, e in enumerate(entries)]

    def read_gallery(self, data: Any) -> tuple[list[str], dict[str, str]]:
        return TypeAdapter(list[str]).validate_python(data), {}

    def gallery_from_images(self, images_dir: Path) -> list[str] | None:
        return None

    def image_candidates(self, name: str, images_dir: Path, image_files: Mapping[str, str]) -> list[Path]:
        return image_candidates(name, images_dir)

    def score(self, queries: Sequence[Query], rankings: Rankings, *,
              subset_rankings: Rankings | None = None) -> dict[str, float]:
        return fashioniq_metrics(queries, rankings)

    def run_notes(self, queries: Sequence[Query], results: Sequence[Any], depth: int) -> list[str]:
        return []

    def write_submission(self, queries: Sequence[Query], rankings: Rankings, folder: Path, *, split: str,
                         gallery: Sequence[str] | None) -> list[Path]:
        raise InputError("fashioniq", "has no test-server format")

    def score_submissions(self, payloads: Iterable[tuple[str, Mapping[str, Any]]], queries: Sequence[Query],
                          gallery: Sequence[str] | None) -> dict[str, float]:
        raise InputError("fashioniq", "has no test-server format")


TASK = FashionIQ()
