"""The Chroma gallery behind the GalleryReader protocol, on an embedded store and on a real Chroma server."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cirgraph.errors import ConfigError, GalleryError, InputError
from cirgraph.tools.embedders import load_image_text_embedder, load_text_embedder
from cirgraph.stores.base import GalleryReader, Hit
from cirgraph.stores.chroma import GALLERY_HNSW, clear_client_cache, embedded_client, server_client
from cirgraph.stores.gallery import Gallery, NewItem


def _fresh_client(client):
    """A new client on the same store, as another process would open it."""
    settings = client.get_settings()
    clear_client_cache()
    if settings.is_persistent:
        return embedded_client(settings.persist_directory)
    return server_client(settings.chroma_server_host, int(settings.chroma_server_http_port))


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture
def filled(client, gallery_name: str):
    """A gallery of 30 items with random 32-d image embeddings, 2-3 captions each, and a `group` metadata key."""
    rng = np.random.default_rng(7)
    text = load_text_embedder("hash:16")
    g = Gallery(client, gallery_name, embedder="hash:32", text_embedder=text, create=True)
    vectors = _unit(rng.standard_normal((30, 32)))
    items = []
    for i in range(30):
        captions = [f"item {i} word{i}", f"shared caption group{i % 3} tag{i}"]
        captions += [f"a third one x{i}"] if i % 2 else []
        items.append(NewItem(id=f"id{i:02d}", uri=f"/photos/{i}.jpg", embedding=vectors[i],
                             metadata={"item_id": f"id{i:02d}", "group": i % 3, "file_name": f"{i}.jpg"},
                             captions=captions, caption_embeddings=text.embed_texts(captions)))
    g.add(items)
    return g, vectors, items, text


def test_gallery_implements_the_reader_protocol_and_reports_contents(filled) -> None:
    g, _, _, _ = filled
    assert isinstance(g, GalleryReader)
    assert (g.kind, g.count(), g.has_images, g.has_captions) == ("images", 30, True, True)
    assert g.captions_collection.count() == 30 * 2 + 15
    assert g.images_collection.configuration_json["hnsw"]["space"] == "cosine"
    for key in ("max_neighbors", "ef_construction", "ef_search"):
        assert g.images_collection.configuration_json["hnsw"][key] == GALLERY_HNSW[key]


def test_query_images_scores_are_cosine_similarities_in_order(filled) -> None:
    g, vectors, _, _ = filled
    query = _unit(vectors[3] + 0.3 * vectors[5])
    hits = g.query_images(query, 5)
    exact = vectors @ query
    assert [h.id for h in hits] == [f"id{i:02d}" for i in np.argsort(-exact)[:5]]
    for hit in hits:
        assert hit.score == pytest.approx(float(exact[int(hit.id[2:])]), abs=1e-5)
        assert hit.uri == f"/photos/{int(hit.id[2:])}.jpg"
        assert hit.captions[0] == f"item {int(hit.id[2:])} word{int(hit.id[2:])}"
        assert hit.metadata["group"] == int(hit.id[2:]) % 3


def test_excluded_ids_still_return_exactly_k(filled) -> None:
    g, vectors, _, _ = filled
    exclude = [f"id{i:02d}" for i in np.argsort(-(vectors @ vectors[0]))[:4]]
    hits = g.query_images(vectors[0], 6, exclude_ids=exclude)
    assert len(hits) == 6 and not set(exclude) & {h.id for h in hits}
    cap_hits = g.query_captions(g.text_embedder.embed_texts(["item 4 word4"])[0], 6, exclude_ids=["id04"])
    assert len(cap_hits) == 6 and "id04" not in {h.id for h in cap_hits}
    assert len({h.id for h in cap_hits}) == 6  # distinct items, not captions


def test_where_filter_applies_to_images_and_captions(filled) -> None:
    g, vectors, _, text = filled
    hits = g.query_images(vectors[1], 50, where={"group": 1})
    assert {int(h.id[2:]) % 3 for h in hits} == {1} and len(hits) == 10
    cap_hits = g.query_captions(text.embed_texts(["shared caption"])[0], 50, where={"group": 2}, exclude_ids=["id02"])
    assert {h.metadata["group"] for h in cap_hits} == {2} and len(cap_hits) == 9


def test_query_captions_scores_an_item_by_its_best_caption(filled) -> None:
    g, _, items, text = filled
    query = text.embed_texts(["word7 group1 third x9"])[0]  # every caption differs: no ties
    hits = g.query_captions(query, 4)
    best = {it.id: float(np.max(it.caption_embeddings @ query)) for it in items}
    expected = sorted(best, key=lambda i: -best[i])[:4]
    assert [h.id for h in hits] == expected
    for hit in hits:
        assert hit.score == pytest.approx(best[hit.id], abs=1e-5)
        assert hit.metadata["matched_caption"] in hit.captions
        assert hit.uri == f"/photos/{int(hit.id[2:])}.jpg"


def test_stored_embeddings_and_items_come_back_by_id(filled) -> None:
    g, vectors, items, _ = filled
    got = g.image_embeddings(["id02", "missing", "id09"])
    assert set(got) == {"id02", "id09"}
    np.testing.assert_allclose(got["id09"], vectors[9], atol=1e-6)
    caps = g.caption_embeddings(["id03", "nope"])
    assert set(caps) == {"id03"} and caps["id03"].shape == (3, 16)
    np.testing.assert_allclose(caps["id03"], items[3].caption_embeddings, atol=1e-6)
    item = g.get(["id03", "x"])["id03"]
    assert item.captions == items[3].captions and item.uri == "/photos/3.jpg" and item.metadata["group"] == 0
    assert g.get([]) == {} and g.image_embeddings([]) == {}


def test_bad_queries_are_input_errors_naming_the_argument(filled) -> None:
    g, vectors, _, _ = filled
    with pytest.raises(InputError, match="^k: "):
        g.query_images(vectors[0], 0)
    with pytest.raises(InputError, match="query embedding"):
        g.query_images(np.stack([vectors[0], vectors[1]]), 3)
    with pytest.raises(InputError, match="NaN"):
        g.query_captions(np.full(16, np.nan), 3)
    with pytest.raises(GalleryError, match="dimension"):
        g.query_images(np.ones(5, dtype=np.float32), 3)


def test_reopened_gallery_uses_its_stored_models_and_refuses_others(filled, client, gallery_name) -> None:
    g, vectors, _, _ = filled
    again = Gallery(client, gallery_name)
    assert (again.image_model, again.text_model, again.count()) == ("hash:32", "hash:16", 30)
    assert [h.id for h in again.query_images(vectors[4], 3)] == [h.id for h in g.query_images(vectors[4], 3)]
    with pytest.raises(GalleryError, match="indexed with model 'hash:32'"):
        Gallery(client, gallery_name, embedder="hash:48")
    with pytest.raises(GalleryError, match="does not exist"):
        Gallery(client, gallery_name + "x")
    with pytest.raises(InputError, match="gallery name"):
        Gallery(client, "bad name!")


def test_chroma_answers_query_texts_images_and_uris_with_our_embedding_function(client, gallery_name, tmp_path):
    """The image collection is multimodal: Chroma's own API embeds queries with the gallery's model."""
    embedder = load_image_text_embedder("hash:32")
    paths, images = [], []
    for i, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200), (90, 90, 90)]):
        img = Image.new("RGB", (40, 30), colour)
        img.putpixel((i, i), (255, 255, 255))
        paths.append(tmp_path / f"c{i}.png")
        img.save(paths[-1])
        images.append(img)
    g = Gallery(client, gallery_name, embedder=embedder, text_embedder="hash:16", create=True)
    vectors = embedder.embed_images(images)
    g.add([NewItem(id=f"c{i}", uri=str(p), embedding=vectors[i], metadata={"n": i}) for i, p in enumerate(paths)])
    col = Gallery(_fresh_client(client), gallery_name).images_collection  # its function rebuilt from the config
    by_uri = col.query(query_uris=[str(paths[2])], n_results=2, include=["distances"])
    assert by_uri["ids"][0][0] == "c2" and by_uri["distances"][0][0] == pytest.approx(0.0, abs=1e-5)
    by_image = col.query(query_images=[np.asarray(images[1])], n_results=1, include=["distances"])
    assert by_image["ids"][0] == ["c1"] and by_image["distances"][0][0] == pytest.approx(0.0, abs=1e-5)
    by_text = col.query(query_texts=["a green square"], n_results=4)
    ours = g.query_images(embedder.embed_texts(["a green square"])[0], 4)
    assert by_text["ids"][0] == [h.id for h in ours]


def test_caption_only_gallery_has_items_named_by_the_captions(client, gallery_name) -> None:
    text = load_text_embedder("hash:16")
    g = Gallery(client, gallery_name, text_embedder=text, create=True)
    names = {"dev-1-img0": ["a red dress", "a dress in red"], "dev-2-img1": ["two dogs on a beach"]}
    g.add([NewItem(id=n, uri=None, metadata={"item_id": n}, captions=c, caption_embeddings=text.embed_texts(c))
           for n, c in names.items()])
    assert (g.kind, g.count(), g.has_images, g.has_captions) == ("captions", 2, False, True)
    hits = g.query_captions(text.embed_texts(["dogs beach"])[0], 1)
    assert hits == [Hit(id="dev-2-img1", score=pytest.approx(hits[0].score), uri=None,
                        captions=["two dogs on a beach"],
                        metadata={"item_id": "dev-2-img1", "matched_caption": "two dogs on a beach"})]
    assert g.query_images(np.ones(16), 3) == [] and g.image_embeddings(["dev-1-img0"]) == {}
    assert g.get(["dev-1-img0"])["dev-1-img0"].captions == names["dev-1-img0"]
    with pytest.raises(ConfigError, match="caption-only"):
        g.image_embedder  # noqa: B018
    with pytest.raises(GalleryError, match="explicit embeddings only"):  # never Chroma's downloading default
        g.items_collection.query(query_texts=["dogs"], n_results=1)


def test_writes_go_in_batches_and_deletes_take_captions_along(client, gallery_name) -> None:
    text = load_text_embedder("hash:16")
    g = Gallery(client, gallery_name, embedder="hash:8", text_embedder=text, create=True)
    g._batch = 3  # as if the server allowed 3 records per call
    rng = np.random.default_rng(1)
    items = [NewItem(id=f"i{i}", uri=f"/x/{i}.png", embedding=_unit(rng.standard_normal(8)), metadata={"n": i},
                     captions=["a", "b"], caption_embeddings=text.embed_texts(["a", "b"])) for i in range(8)]
    g.add(items)
    assert (g.count(), g.captions_collection.count()) == (8, 16)
    g.update_uris({"i1": "/y/1.png"})
    assert g.existing(["i1", "i2", "zz"]) == {"i1": "/y/1.png", "i2": "/x/2.png"}
    g.delete(["i1", "i2"])
    assert (g.count(), g.captions_collection.count()) == (6, 12)


def test_orphan_captions_are_swept(client, gallery_name) -> None:
    text = load_text_embedder("hash:16")
    g = Gallery(client, gallery_name, embedder="hash:8", text_embedder=text, create=True)
    g.add([NewItem(id="kept", uri="/k.png", embedding=_unit(np.ones(8)), metadata={"n": 1}, captions=["k"],
                   caption_embeddings=text.embed_texts(["k"]))])
    # what a run killed between its caption and image writes leaves behind
    g.replace_captions([NewItem(id="lost", uri=None, metadata={}, captions=["x", "y"],
                                caption_embeddings=text.embed_texts(["x", "y"]))])
    assert g.captions_collection.count() == 3
    assert g.sweep_orphans() == 2
    assert g.captions_collection.count() == 1 and g.captions_of(["kept"]) == {"kept": ["k"]}
