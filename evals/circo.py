"""CIRCO annotation entries (annotations/{val,test}.json), the COCO unlabeled gallery and image locations."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from cirgraph.evals.benchmarks import Query


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
