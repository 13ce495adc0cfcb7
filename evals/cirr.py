"""CIRR annotation entries (captions/cap.rc2.*.json, image_splits/split.rc2.*.json) and image locations."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from cirgraph.evals.benchmarks import Query


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
