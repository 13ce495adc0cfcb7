"""The in-memory GalleryReader used by the unit tests: same contract as the Chroma gallery."""

from __future__ import annotations

import numpy as np
import pytest

from cirgraph.errors import GalleryError
from cirgraph.stores.base import GalleryReader
from cirgraph.testing.memory_gallery import MemoryGallery, matches

E = np.eye(4, dtype=np.float32)


@pytest.fixture
def gallery() -> MemoryGallery:
    return MemoryGallery(
        "g", ids=["a", "b", "c"], image_embeddings=E[:3] * 3,  # not unit: the gallery normalises
        captions={"a": ["x", "y"], "c": ["z"]},
        caption_embeddings={"a": np.stack([E[0], E[1]]), "c": E[2:3]},
        uris={"a": "/a.png"}, metadata={"a": {"split": "val", "n": 1}, "b": {"split": "test", "n": 2}},
    )


def test_implements_the_protocol(gallery: MemoryGallery) -> None:
    assert isinstance(gallery, GalleryReader)
    assert gallery.has_images and gallery.has_captions and gallery.count() == 3


def test_image_search_is_exact_with_exclusion_and_filters(gallery: MemoryGallery) -> None:
    q = np.array([0.9, 0.1, 0.0, 0.0])
    hits = gallery.query_images(q, 2)
    assert [h.id for h in hits] == ["a", "b"] and hits[0].score == pytest.approx(0.9 / np.linalg.norm(q))
    assert hits[0].uri == "/a.png" and hits[0].captions == ["x", "y"] and hits[0].metadata == {"split": "val", "n": 1}
    assert [h.id for h in gallery.query_images(q, 2, exclude_ids=["a"])] == ["b", "c"]
    assert [h.id for h in gallery.query_images(q, 3, where={"split": "test"})] == ["b"]
    assert gallery.query_images(q, 5, where={"split": "none"}) == []


def test_caption_search_scores_an_item_by_its_best_caption(gallery: MemoryGallery) -> None:
    hits = gallery.query_captions(E[1], 3)
    assert [(h.id, round(h.score, 4)) for h in hits] == [("a", 1.0), ("c", 0.0)]  # b has no captions


def test_stored_embeddings_and_items(gallery: MemoryGallery) -> None:
    assert set(gallery.image_embeddings(["a", "zz"])) == {"a"}
    assert gallery.caption_embeddings(["a", "b"])["a"].shape == (2, 4)
    assert set(gallery.get(["c", "zz"])) == {"c"} and gallery.get(["c"])["c"].captions == ["z"]


def test_where_operators() -> None:
    meta = {"split": "val", "n": 2}
    assert matches(meta, {"n": {"$in": [1, 2]}}) and matches(meta, {"n": {"$ne": 3}})
    assert matches(meta, {"$and": [{"split": "val"}, {"n": {"$eq": 2}}]})
    assert matches(meta, {"$or": [{"split": "test"}, {"n": 2}]}) and not matches(meta, {"n": {"$nin": [2]}})


def test_bad_construction_and_missing_spaces() -> None:
    with pytest.raises(GalleryError, match="duplicate ids"):
        MemoryGallery(ids=["a", "a"])
    with pytest.raises(GalleryError, match="2 image embeddings for 1 ids"):
        MemoryGallery(ids=["a"], image_embeddings=E[:2])
    empty = MemoryGallery(ids=["a"])
    with pytest.raises(GalleryError, match="no image embeddings"):
        empty.query_images(E[0], 1)
    with pytest.raises(GalleryError, match="no caption embeddings"):
        empty.query_captions(E[0], 1)
    with pytest.raises(GalleryError, match="without a text embedder"):
        MemoryGallery.build(["a"], captions={"a": ["x"]})
