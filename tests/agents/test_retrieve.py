"""retrieve on galleries with images, captions or both: candidates, exact component scores, exclusion, k."""

from __future__ import annotations

import numpy as np
import pytest

from cirgraph.agents.fusion import mean_direction
from cirgraph.agents.ranking import rank
from cirgraph.agents.presets import preset
from cirgraph.agents.query import build_input
from cirgraph.errors import ConfigError

PROPS = [{"text": "red", "polarity": "must_show", "question": "Is it red?"},
         {"text": "blue", "polarity": "must_not_show", "question": "Is it blue?"}]


def _rank(world, cfg, queries, props=(), ref="blue-dress", **kwargs):
    reference = build_input(ref, "x", world.gallery)["reference"]
    r = rank(world.services(), cfg, list(queries), list(props), reference, **kwargs)
    return r.hits, r.weights, r.excluded


def test_every_candidate_has_every_component_score_and_fusion_matches(world) -> None:
    cfg = preset("propositions", k=2, candidate_pool=2)
    hits, weights, excluded = _rank(world, cfg, ["a red dress"], PROPS)
    assert excluded == ["blue-dress"]
    assert weights == pytest.approx({"text_image": 1 / 1.8, "text_caption": 0.5 / 1.8, "reference": 0.1 / 1.8,
                                     "propositions": 0.2 / 1.8})
    assert len(hits) == 2 and world.gallery.queries == 3  # top-2 of image, caption and reference searches
    q_img = mean_direction(world.embedder.embed_texts(["a red dress"]))
    q_cap = mean_direction(world.text_embedder.embed_texts(["a red dress"]))
    ref = world.gallery.image_embeddings(["blue-dress"])["blue-dress"]
    props = world.embedder.embed_texts(["red", "blue"])
    for h in hits:
        img = world.gallery.image_embeddings([h["id"]])[h["id"]]
        cap = world.gallery.caption_embeddings([h["id"]])[h["id"]]
        expect = {"text_image": img @ q_img, "text_caption": float(np.max(cap @ q_cap)), "reference": img @ ref,
                  "propositions": (props[0] @ img - props[1] @ img) / 2}
        assert h["components"] == pytest.approx(expect, abs=1e-5)
        assert h["retrieval_score"] == pytest.approx(sum(weights[c] * expect[c] for c in expect), abs=1e-5)
    assert [h["retrieval_score"] for h in hits] == sorted((h["retrieval_score"] for h in hits), reverse=True)


def test_keeps_k_or_the_rerank_depth_whichever_is_larger(world) -> None:
    assert len(_rank(world, preset("cirevl", k=2), ["a red dress"])[0]) == 2
    assert len(_rank(world, preset("rerank", k=2, rerank_depth=5), ["a red dress"])[0]) == 5


def test_caption_only_gallery_searches_caption_space(caption_world) -> None:
    hits, weights, _ = _rank(caption_world, preset("reflect"), ["a red shirt"], PROPS)
    # without images the description keeps its whole weight (1.0 + 0.5) in caption space
    assert weights == pytest.approx({"text_caption": 1.5 / 1.7, "propositions": 0.2 / 1.7})
    assert hits[0]["id"] == "red-shirt"
    assert set(hits[0]["components"]) == {"text_caption", "propositions"}


def test_cirevl_weights_on_a_caption_only_gallery_fall_back_to_captions(caption_world) -> None:
    hits, weights, _ = _rank(caption_world, preset("cirevl"), ["a red shirt"])
    assert weights == {"text_caption": 1.0} and hits[0]["id"] == "red-shirt"


def test_image_only_gallery(image_world) -> None:
    ref = image_world.path("red-dress")
    hits, weights, _ = _rank(image_world, preset("multi-description"), ["a white cat"], ref=ref)
    assert set(weights) == {"text_image", "reference"} and hits[0]["id"] == "white-cat"
    assert "red-dress" not in [h["id"] for h in hits]  # the file is an exact duplicate of a gallery image


def test_an_item_missing_captions_is_scored_on_what_it_has(tmp_path) -> None:
    from cirgraph.agents.services import Services
    from cirgraph.testing.memory_gallery import TOY_ITEMS, MemoryGallery, build_toy_gallery

    full, emb, temb = build_toy_gallery(tmp_path)
    captions = {k: [v] for k, v in TOY_ITEMS.items() if k != "red-dress"}
    gallery = MemoryGallery.build(full.ids, image_embeddings=full._images, captions=captions, text_embedder=temb)

    services = Services(gallery=gallery, embedder=emb, text_embedder=temb)
    ref = build_input("blue-dress", "x", gallery)["reference"]
    ranked = rank(services, preset("multi-description", k=7), ["a red dress"], [], ref)
    hits, weights = ranked.hits, ranked.weights
    red = next(h for h in hits if h["id"] == "red-dress")
    assert red["components"]["text_caption"] is None
    w = {c: weights[c] for c in ("text_image", "reference")}
    expect = sum(w[c] * red["components"][c] for c in w) / sum(w.values())
    assert red["retrieval_score"] == pytest.approx(expect, abs=1e-5)


def test_nothing_to_search_is_a_config_error(world) -> None:
    from cirgraph.agents.services import Services

    services = Services(gallery=world.gallery)  # no embedders
    with pytest.raises(ConfigError, match="nothing to search"):
        services.check(preset("cirevl"))


def test_the_modification_component_is_the_modification_texts_own_similarity(world) -> None:
    cfg = preset("anchored", k=3)
    hits, weights, _ = _rank(world, cfg, ["a cat"], modification="make it red")
    share = 1.0  # anchored scores text in the image space only (CIReVL's weights)
    assert weights == pytest.approx({"text_image": 1 / (1 + cfg.w_modification),
                                     "modification": cfg.w_modification / (1 + cfg.w_modification)})
    q_mod = mean_direction(world.embedder.embed_texts(["make it red"]))
    for h in hits:
        img = world.gallery.image_embeddings([h["id"]])[h["id"]]
        assert h["components"]["modification"] == pytest.approx(share * float(img @ q_mod), abs=1e-5)
    # the anchor changes what ranks first: the description alone would find a cat
    assert _rank(world, preset("cirevl", k=3), ["a cat"])[0][0]["id"] != hits[0]["id"]


def test_caption_space_reference_component_is_its_caption_against_item_captions(caption_world) -> None:
    cfg = preset("multi-description", k=7)
    hits, weights, _ = _rank(caption_world, cfg, ["a red shirt"], caption="a blue dress")
    assert "reference" in weights
    q_ref = mean_direction(caption_world.text_embedder.embed_texts(["a blue dress"]))
    for h in hits:
        cap = caption_world.gallery.caption_embeddings([h["id"]])[h["id"]]
        assert h["components"]["reference"] == pytest.approx(float(np.max(cap @ q_ref)), abs=1e-5)
    # no caption given: nothing stands for the reference in caption space
    assert "reference" not in _rank(caption_world, cfg, ["a red shirt"])[1]


def test_score_ids_are_scored_exactly_but_never_enter_the_ranking(world) -> None:
    cfg = preset("cirevl", k=2, candidate_pool=2)
    every = [i for i in world.gallery.ids if i != "blue-dress"]
    reference = build_input("blue-dress", "x", world.gallery)["reference"]
    plain = rank(world.services(), cfg, ["a red dress"], [], reference)
    asked = rank(world.services(), cfg, ["a red dress"], [], reference, score_ids=every + ["blue-dress"])
    assert [h["id"] for h in asked.hits] == [h["id"] for h in plain.hits]
    kept = {h["id"] for h in asked.hits}
    assert set(asked.extra_scores) == set(every) - kept  # the reference is never scored
    q = mean_direction(world.embedder.embed_texts(["a red dress"]))
    for item, score in asked.extra_scores.items():
        img = world.gallery.image_embeddings([item])[item]
        assert score == pytest.approx(float(img @ q), abs=1e-5)
        assert score <= min(h["retrieval_score"] for h in asked.hits) + 1e-6  # exact search: nothing better missed
