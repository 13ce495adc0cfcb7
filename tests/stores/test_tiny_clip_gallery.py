"""End to end with a real (tiny, random-weight) CLIP checkpoint folder: index photos, reopen, query through Chroma."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("cirgraph.testing.tiny_models") is None
    or importlib.util.find_spec("cirgraph.tools.hf_embedders") is None,
    reason="tiny model builders or HF embedders not available",
)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> str:
    from cirgraph.testing.tiny_models import build_tiny_clip

    return str(build_tiny_clip(tmp_path_factory.mktemp("tiny-clip")))


def test_index_with_tiny_clip_and_query_through_chroma_after_reopening(embedded, gallery_name, photos,
                                                                       tiny_clip, monkeypatch) -> None:
    from cirgraph.stores.chroma import clear_client_cache, embedded_client
    from cirgraph.stores.gallery import Gallery
    from cirgraph.stores.indexer import Indexer
    from cirgraph.tools.hf_embedders import HFImageTextEmbedder

    monkeypatch.chdir(Path(tiny_clip).parent)
    embedder = HFImageTextEmbedder(Path(tiny_clip).name)  # a relative folder: stored as an absolute path
    gallery = Gallery(embedded, gallery_name, embedder=embedder, text_embedder="hash:16", create=True)
    report = Indexer(gallery, batch_size=3).index(photos)
    assert (report.added, report.failed) == (8, [])
    path = embedded.get_settings().persist_directory
    clear_client_cache()
    monkeypatch.chdir(photos)
    reopened = Gallery(embedded_client(path), gallery_name)  # the model is rebuilt from the stored folder path
    assert reopened.image_model == str(Path(tiny_clip).resolve())
    col = reopened.images_collection
    rocket = str(photos / "rocket.jpg")
    by_uri = col.query(query_uris=[rocket], n_results=1, include=["uris", "distances"])
    assert by_uri["uris"][0] == [rocket] and by_uri["distances"][0][0] == pytest.approx(0.0, abs=1e-4)
    from cirgraph.tools.images import load_image

    pixels = np.asarray(load_image(photos / "coffee.jpg"))
    by_image = col.query(query_images=[pixels], n_results=1, include=["uris"])
    assert by_image["uris"][0] == [str(photos / "coffee.jpg")]
    by_text = col.query(query_texts=["a cup of coffee"], n_results=8)
    ours = reopened.query_images(embedder.embed_texts(["a cup of coffee"])[0], 8)
    assert by_text["ids"][0] == [h.id for h in ours]
    assert ours[0].score == pytest.approx(1.0 - col.query(query_texts=["a cup of coffee"], n_results=1,
                                                          include=["distances"])["distances"][0][0], abs=1e-5)
