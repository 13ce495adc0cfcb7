"""FashionIQ annotation entries (captions/cap.<category>.val.json, image_splits/split.<category>.val.json)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from cirgraph.evals.benchmarks import Query

_STRIP = ".?, "


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
