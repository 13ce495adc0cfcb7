"""Load a benchmark split from the user's data folder: its queries, its gallery, and the files it came from.

The folder may be laid out flat (`DATA/cirr/cap.rc2.val.json`, or `DATA/cap.rc2.val.json`) or as the datasets
ship (`captions/`, `image_splits/`, `annotations/`); both are searched. Every file read is hashed and compared
with the declared known revision, and any difference from the published counts is noted, so a run record can say
exactly which data it measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cirgraph.errors import InputError
from cirgraph.evals.benchmarks import get_task
from cirgraph.evals.files import read_json, sha256_of
from cirgraph.evals.task import AnnotationFile, Benchmark, BenchmarkTask, Query, SplitPart


class DataFile(BaseModel):
    """An annotation file a split was read from, with its hash and whether it matches the known revision."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: str = Field(description="'queries' or 'gallery'.")
    path: Path
    sha256: str
    known_sha256: str | None = Field(description="sha256 of the known copy of this file name; None if unknown.")

    @property
    def matches_known(self) -> bool | None:
        return None if self.known_sha256 is None else self.sha256 == self.known_sha256


class SplitData(BaseModel):
    """The queries and gallery of one split (one category for FashionIQ), ready for retrieval and scoring."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    benchmark: str
    split: str
    category: str | None = None
    queries: tuple[Query, ...]
    gallery: tuple[str, ...] | None = Field(description="Gallery image names; None when unknown (CIRCO, no COCO list).")
    image_files: dict[str, str] = Field({}, description="Name -> path relative to the images folder (CIRR).")
    files: tuple[DataFile, ...]
    notes: tuple[str, ...] = Field((), description="Differences from the declaration: subset files, counts, hashes.")


def find_annotation(benchmark: Benchmark, spec: AnnotationFile, data_dir: Path) -> Path | None:
    """The first existing file for `spec`: names in declared order, then roots (the folder itself, then its
    benchmark-named sub-folders), then sub-folders (flat before the shipped layout)."""
    roots = [data_dir, *(data_dir / alias for alias in benchmark.folder_aliases)]
    for name in (spec.name, *spec.alternatives):
        for root in roots:
            for folder in spec.folders:
                candidate = root / folder / name
                if candidate.is_file():
                    return candidate
    return None


def _require(benchmark: Benchmark, split: str, spec: AnnotationFile, data_dir: Path) -> Path:
    found = find_annotation(benchmark, spec, data_dir)
    if found is None:
        names = " or ".join((spec.name, *spec.alternatives))
        folders = ", ".join(repr(f or ".") for f in spec.folders)
        raise InputError(
            str(data_dir),
            f"no {names} for {benchmark.name} {split}; looked in the folder, its {'/'.join(benchmark.folder_aliases)} "
            f"sub-folders, and their {folders} folders",
        )
    return found


def load_split(
    benchmark: str,
    split: str,
    data_dir: Path | str,
    *,
    category: str | None = None,
    query_file: Path | str | None = None,
    images_dir: Path | str | None = None,
) -> SplitData:
    """Load one split (one FashionIQ `category`) from `data_dir`.

    `query_file` overrides the query annotations (e.g. CIRR's cap.rc2.val.dev.json subset). `images_dir` lets
    CIRCO list its gallery from the COCO images when image_info_unlabeled2017.json is not in `data_dir`.
    """
    task = get_task(benchmark)
    bench = task.declaration
    spec = bench.split(split)
    if category is None and len(spec.parts) > 1:
        raise InputError(f"{bench.name} {split}", "give a category: " + ", ".join(str(p.category) for p in spec.parts))
    part = spec.part(category)
    data_dir = Path(data_dir)
    queries_path = Path(query_file) if query_file is not None else _require(bench, split, part.queries, data_dir)
    if not queries_path.is_file():
        raise InputError(str(queries_path), "query file not found")
    queries = _load_queries(task, split, part, queries_path)
    files = [_data_file(bench, "queries", queries_path)]
    gallery, image_files = None, {}
    gallery_path = find_annotation(bench, part.gallery, data_dir)
    if gallery_path is None and not part.gallery.optional:
        gallery_path = _require(bench, split, part.gallery, data_dir)
    if gallery_path is not None:
        gallery, image_files = _load_gallery(task, gallery_path)
        files.append(_data_file(bench, "gallery", gallery_path))
    elif images_dir is not None:  # the gallery file is optional where the images folder can list the gallery
        gallery = task.gallery_from_images(Path(images_dir))
    notes = _notes(
        f"{bench.name} {split}" + (f"/{part.category}" if part.category else ""), part, queries, gallery, files
    )
    return SplitData(
        benchmark=bench.name,
        split=split,
        category=part.category,
        queries=tuple(queries),
        gallery=tuple(gallery) if gallery is not None else None,
        image_files=image_files,
        files=tuple(files),
        notes=tuple(notes),
    )


def load_splits(benchmark: str, split: str, data_dir: Path | str, **kwargs: Any) -> list[SplitData]:
    """Every part of a split: the three FashionIQ categories, or the one CIRR / CIRCO split."""
    spec = get_task(benchmark).declaration.split(split)
    return [load_split(benchmark, split, data_dir, category=part.category, **kwargs) for part in spec.parts]


def _load_queries(task: BenchmarkTask, split: str, part: SplitPart, path: Path) -> list[Query]:
    queries = task.read_queries(read_json(path), path, split, part.category)
    seen: set[str] = set()
    for row, query in enumerate(queries):
        if query.id in seen:
            raise InputError(f"{path}, entry {row}", f"query id {query.id} appears twice")
        seen.add(query.id)
    return queries


def _load_gallery(task: BenchmarkTask, path: Path) -> tuple[list[str], dict[str, str]]:
    data = read_json(path)
    try:
        return task.read_gallery(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "top level"
        raise InputError(f"{path}, {where}", f"not a {task.declaration.name} gallery file: {error['msg']}") from exc


def _data_file(bench: Benchmark, role: str, path: Path) -> DataFile:
    return DataFile(role=role, path=path, sha256=sha256_of(path), known_sha256=bench.file_sha256.get(path.name))


def _notes(
    where: str, part: SplitPart, queries: list[Query], gallery: list[str] | None, files: list[DataFile]
) -> list[str]:
    """Say where the loaded data differs from the declaration, for the run record."""
    notes = [f"{where}: {len(queries)} queries; {part.n_queries} published"] if len(queries) != part.n_queries else []
    if files[0].path.name != part.queries.name:
        notes.append(f"{where}: queries read from {files[0].path.name} in place of {part.queries.name}")
    blank = [q.id for q in queries if not q.modification.strip()]
    if blank:  # kept: the evaluation server expects a ranking for every query (CIRR test1 has one)
        notes.append(f"{where}: empty modification text in queries {', '.join(blank[:10])}")
    if gallery is None:
        notes.append(f"{where}: gallery unknown (give {part.gallery.name} or the images folder)")
    elif len(gallery) != part.n_gallery:
        notes.append(f"{where}: {len(gallery)} gallery images; {part.n_gallery} published")
    for file in files:
        if file.matches_known is False:
            notes.append(f"{file.path}: sha256 {file.sha256} differs from the known {file.known_sha256}")
        elif file.known_sha256 is None:
            notes.append(f"{file.path}: no known sha256 for this file name (sha256 {file.sha256})")
    if gallery is not None:
        names = set(gallery)
        outside = sum(1 for q in queries if q.reference not in names or any(t not in names for t in q.ground_truths))
        if outside:
            notes.append(f"{where}: {outside} queries name a reference or target outside the gallery")
    return notes


def image_candidates(data: SplitData, name: str, images_dir: Path | str) -> list[Path]:
    """Every path the benchmark's layouts may keep image `name` at, in the order they are tried."""
    return get_task(data.benchmark).image_candidates(name, Path(images_dir), data.image_files)


def image_path(data: SplitData, name: str, images_dir: Path | str) -> Path:
    """The file of gallery image `name` under `images_dir`, or an error listing where it was looked for."""
    candidates = image_candidates(data, name, images_dir)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise InputError(f"image {name!r}", "not found; tried " + ", ".join(str(c) for c in candidates))
