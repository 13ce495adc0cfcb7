"""Benchmark declarations (CIRR, CIRCO, FashionIQ) and the typed query record every loader returns.

A benchmark is data, not code: which splits it has, which annotation files each split reads, the published
counts, the metric names and the main score, license and citation. The sha256 values are those of the
annotation files this project was checked against; a different hash is reported in the run record, not refused.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cirgraph.errors import InputError

BenchmarkName = Literal["cirr", "circo", "fashioniq"]

# The aspects the CIRCO authors tagged val queries with; "mAP@10[aspect]" is reported for each.
CIRCO_SEMANTIC_ASPECTS: tuple[str, ...] = (
    "cardinality", "addition", "negation", "direct_addressing", "compare_change", "comparative_statement",
    "statement_with_conjunction", "spatial_relations_background", "viewpoint",
)  # fmt: skip
FASHIONIQ_CATEGORIES: tuple[str, ...] = ("dress", "shirt", "toptee")


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

    name: BenchmarkName
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
    benchmark: BenchmarkName
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


def _cirr() -> Benchmark:
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


def _circo() -> Benchmark:
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


def _fashioniq() -> Benchmark:
    counts = {"dress": (2017, 3817), "shirt": (2038, 6346), "toptee": (1961, 5373)}
    parts = tuple(
        SplitPart(
            category=category,
            queries=AnnotationFile(name=f"cap.{category}.val.json", folders=("", "captions")),
            gallery=AnnotationFile(name=f"split.{category}.val.json", folders=("", "image_splits")),
            n_queries=counts[category][0],
            n_gallery=counts[category][1],
        )
        for category in FASHIONIQ_CATEGORIES
    )
    per_category = tuple(f"{c}/R@{k}" for c in FASHIONIQ_CATEGORIES for k in (10, 50))
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


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (_cirr(), _circo(), _fashioniq())}


def get_benchmark(name: str) -> Benchmark:
    """The declaration of benchmark `name` (case-insensitive)."""
    key = name.strip().lower()
    if key not in BENCHMARKS:
        raise InputError(f"benchmark {name!r}", f"unknown; choose one of: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[key]
