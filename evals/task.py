"""What a benchmark is: its declaration (data), the query record every benchmark loads into, and the protocol
its module implements (behaviour).

A declaration says which splits a benchmark has, which annotation files each split reads, the published counts,
the metric names and the main score, license and citation (in the spirit of mteb's TaskMetadata). The sha256 values
are those of the annotation files this project was checked against; a different hash is reported in the run record,
not refused. Everything a benchmark does differently (parsing its files, where its images lie, its official metrics,
its test-server format) sits behind `BenchmarkTask`, one module per benchmark; the shared loaders, runner and
reports only call it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cirgraph.errors import InputError

Rankings = Mapping[str, Sequence[str]]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AnnotationFile(_Frozen):
    """One annotation file a split reads, and where the known layouts keep it."""

    name: str = Field(description="File name as the dataset ships it, e.g. 'cap.rc2.val.json'.")
    alternatives: tuple[str, ...] = Field((), description="Names accepted in its place, tried in order after it.")
    folders: tuple[str, ...] = Field(
        ("",), description="Sub-folders of the benchmark folder to search: '' (flat) first, then the shipped layout."
    )
    optional: bool = Field(False, description="The split loads without it (e.g. CIRCO's 123k-image gallery list).")


class SplitPart(_Frozen):
    """A query file and its gallery: the whole split, or one FashionIQ category."""

    category: str | None = Field(None, description="FashionIQ category; None for single-gallery benchmarks.")
    queries: AnnotationFile
    gallery: AnnotationFile
    n_queries: int = Field(description="Published number of queries.")
    n_gallery: int = Field(description="Published number of gallery images.")


class SplitSpec(_Frozen):
    """A split of a benchmark: its parts and whether ground truth ships with it."""

    name: str
    parts: tuple[SplitPart, ...]
    has_ground_truth: bool = Field(description="False: scored only by the benchmark's evaluation server.")

    def part(self, category: str | None) -> SplitPart:
        """The part for `category` (None for single-gallery benchmarks)."""
        for part in self.parts:
            if part.category == category:
                return part
        choices = ", ".join(str(p.category) for p in self.parts)
        raise InputError(f"split {self.name!r}", f"no category {category!r}; choose one of: {choices}")


class Benchmark(_Frozen):
    """Declaration of one benchmark, in the spirit of mteb's TaskMetadata."""

    name: str = Field(description="Lower-case name the registry and the CLI know it by, e.g. 'cirr'.")
    description: str
    reference: str = Field(description="Where the annotations are published.")
    revision: str = Field(description="The annotation release this declaration describes.")
    file_sha256: dict[str, str] = Field(description="sha256 of the known copies of the annotation files, by name.")
    folder_aliases: tuple[str, ...] = Field(description="Names the benchmark's folder goes by under a data folder.")
    splits: dict[str, SplitSpec]
    main_score: str
    metrics: tuple[str, ...]
    license: str = Field(description="License of the annotations (images have their own terms, see `images`).")
    images: str = Field(description="Where the images come from and what governs them.")
    citation: str

    @model_validator(mode="after")
    def _main_score_is_a_metric(self) -> Benchmark:
        if self.main_score not in self.metrics:
            raise ValueError(f"main score {self.main_score!r} is not among the metrics")
        return self

    def split(self, name: str) -> SplitSpec:
        """The declared split `name`, or an error naming the ones that exist."""
        if name not in self.splits:
            raise InputError(f"{self.name} split {name!r}", f"unknown; choose one of: {', '.join(self.splits)}")
        return self.splits[name]


class Query(_Frozen):
    """One composed-retrieval query, the same shape for every benchmark.

    FashionIQ's two relative captions are kept in `captions` and joined into `modification` the way the
    zero-shot literature does (SEARLE, CIReVL): each stripped of surrounding '.?, ' and joined with ' and '
    ("is red and has long sleeves"); an empty caption is dropped rather than leaving a dangling ' and '.
    """

    id: str = Field(description="CIRR pairid, CIRCO query id, or '<category>-<row>' for FashionIQ (row in its file).")
    benchmark: str
    split: str
    reference: str = Field(description="Gallery name of the reference image.")
    modification: str = Field(description="The modification text.")
    target: str | None = Field(None, description="The annotated target (CIRR target_hard, CIRCO target_img_id).")
    ground_truths: tuple[str, ...] = Field((), description="Every correct image: CIRCO gt_img_ids, else (target,).")
    image_set: tuple[str, ...] = Field((), description="CIRR img_set members (the reference among them).")
    soft_targets: dict[str, float] = Field({}, description="CIRR target_soft: name -> 1.0 / 0.5 / -1.0 judgement.")
    category: str | None = Field(None, description="FashionIQ category.")
    captions: tuple[str, ...] = Field((), description="FashionIQ's two relative captions, as annotated.")
    shared_concept: str | None = Field(None, description="CIRCO: what reference and targets have in common.")
    semantic_aspects: tuple[str, ...] = Field((), description="CIRCO val: the aspects the caption exercises.")

    @property
    def has_ground_truth(self) -> bool:
        return bool(self.ground_truths)

    @property
    def subset_candidates(self) -> tuple[str, ...]:
        """CIRR Recall_subset candidates: the image set without the reference."""
        return tuple(m for m in self.image_set if m != self.reference)


class BenchmarkTask(Protocol):
    """The behaviour of one benchmark, as the shared evaluation code calls it. `declaration` is its data;
    `default_depth` how many ranked names a run keeps per query; `has_server_format` whether its evaluation server
    takes submission files (then `write_submission` and `score_submissions` work)."""

    declaration: Benchmark
    default_depth: int
    has_server_format: bool

    def read_queries(self, records: Any, source: Path, split: str, category: str | None) -> list[Query]:
        """The queries of a parsed query file (`records`, as read from `source`), in file order."""
        ...

    def read_gallery(self, data: Any) -> tuple[list[str], dict[str, str]]:
        """Gallery names of a parsed gallery file, and name -> path relative to the images folder where the file
        gives one; raises pydantic's ValidationError for a file of the wrong shape."""
        ...

    def gallery_from_images(self, images_dir: Path) -> list[str] | None:
        """Gallery names listed from an images folder when the (optional) gallery file is absent; None if unknown."""
        ...

    def image_candidates(self, name: str, images_dir: Path, image_files: Mapping[str, str]) -> list[Path]:
        """Every path the benchmark's layouts may keep image `name` at, in the order they are tried."""
        ...

    def score(self, queries: Sequence[Query], rankings: Rankings, *,
              subset_rankings: Rankings | None = None) -> dict[str, float]:
        """Every official metric, in percent (`subset_rankings`: rankings with a longer tail, where a metric
        orders a subset of the gallery, as CIRR's Recall_subset)."""
        ...

    def run_notes(self, queries: Sequence[Query], results: Sequence[Any], depth: int) -> list[str]:
        """Notes for a scored run's record about how far its metrics can be trusted (`results`: the run's query
        results, with `status`, `ranking` and `subset_tail`)."""
        ...

    def write_submission(self, queries: Sequence[Query], rankings: Rankings, folder: Path, *, split: str,
                         gallery: Sequence[str] | None) -> list[Path]:
        """Validate and write the test-server files of a run into `folder`; returns their paths."""
        ...

    def score_submissions(self, payloads: Iterable[tuple[str, Mapping[str, Any]]], queries: Sequence[Query],
                          gallery: Sequence[str] | None) -> dict[str, float]:
        """Validate and score test-server files (source, parsed payload) against queries with ground truth."""
        ...
