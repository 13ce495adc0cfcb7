"""The pipeline on the real parts: the Chroma gallery, a tiny CLIP checkpoint, and OpenAIChatModel talking HTTP to
the fake OpenAI-compatible server. Skipped until every part is importable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("cirgraph.stores.gallery")
pytest.importorskip("cirgraph.stores.indexer")
pytest.importorskip("cirgraph.clients")
tiny_models = pytest.importorskip("cirgraph.testing.tiny_models")
fake_openai = pytest.importorskip("cirgraph.testing.fake_openai")
pytest.importorskip("cirgraph.tools.openai_chat")

from cirgraph.testing.memory_gallery import TOY_ITEMS, build_toy_gallery  # noqa: E402
from cirgraph.testing.toy_pipeline import (  # noqa: E402
    CAPTION_KEY,
    DECOMPOSE_KEY,
    RECOMPOSE_KEY,
    RERANK_KEY,
    propositions_reply,
    recompose_reply,
)

pytestmark = pytest.mark.slow

RULES = {
    CAPTION_KEY: "a blue dress on a hanger",
    RECOMPOSE_KEY: recompose_reply(["a red dress", "a red dress on a hanger"]),
    DECOMPOSE_KEY: propositions_reply(),
    RERANK_KEY: {"answers": [{"index": 1, "answer": "yes", "confidence": 0.9},
                             {"index": 2, "answer": "no", "confidence": 0.9}]},
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    """A Chroma image gallery of the toy pictures, with captions, embedded by a tiny CLIP."""
    from cirgraph import clients
    from cirgraph.settings import Settings
    from cirgraph.stores import chroma
    from cirgraph.stores.captions import load_captions
    from cirgraph.stores.indexer import Indexer

    root = tmp_path_factory.mktemp("integration")
    clip = tiny_models.build_tiny_clip(root / "clip")
    build_toy_gallery(root / "images")  # writes the PNGs
    captions = root / "captions.json"
    captions.write_text(json.dumps({f"{k}.png": v for k, v in TOY_ITEMS.items()}))
    settings = Settings(home=root / "home", embedder=str(clip), text_embedder="hash:32", offline=True)
    chroma.clear_client_cache()
    gallery = clients.open_gallery(settings, "toy", create=True, kind="images")
    report = Indexer(gallery).index(root / "images", captions=load_captions(captions))
    assert report.added == len(TOY_ITEMS)
    return root, settings


@pytest.fixture
def server():
    with fake_openai.FakeOpenAIServer(RULES) as srv:
        yield srv


def _new_reference(root: Path, variant: int = 0) -> Path:
    """A picture that is not in the gallery (so it has no stored captions and must be captioned)."""
    from PIL import Image

    img = Image.open(root / "images" / "blue-dress.png").convert("RGB")
    img.putpixel((5, 5), (1, 2, variant))
    path = root / f"new-reference-{variant}.png"
    img.save(path)
    return path


def _settings(store, server, **changes):
    _, base = store
    return base.model_copy(update={"llm_base_url": server.base_url, "llm_model": "fake-model",
                                   "vlm_base_url": server.base_url, "vlm_model": "fake-model",
                                   "max_retries": 1, **changes})


def test_full_pipeline_over_http_on_chroma_with_tiny_clip(store, server) -> None:
    from cirgraph.retriever import Retriever
    from cirgraph.tools.images import content_hash

    root, _ = store
    stored = root / "images" / "blue-dress.png"
    with Retriever.from_settings(_settings(store, server), gallery="toy", preset="rerank") as r:
        res = r.search(_new_reference(root), "make it red", k=5)
        again = r.search(stored, "make it red", k=7)
    assert content_hash(stored.read_bytes()) not in again.ids  # a stored image is excluded by its content hash
    assert again.caption_source == "gallery" and len(again.hits) == 7  # ... and its stored caption is used
    assert res.degraded == [] and len(res.hits) == 5
    assert res.stages_run == ["caption_reference", "recompose", "decompose", "retrieve", "rerank"]
    assert set(res.hits[0].components) == {"text_image", "text_caption", "modification", "reference", "propositions"}
    assert all(h.verdict is not None for h in res.hits)
    assert res.usage["calls"] == 3 + 7 and again.usage["calls"] == 2 + 7 and len(server.chat_requests) == 19
    caption_request = next(q for q in server.chat_requests if CAPTION_KEY in q.text)
    assert len(caption_request.image_urls) == 1
    assert next(q for q in server.chat_requests if RECOMPOSE_KEY in q.text).response_format is not None


def test_a_down_endpoint_degrades_every_model_stage(store, server) -> None:
    from cirgraph.retriever import Retriever

    root, _ = store
    server.inject(fake_openai.Fault(status=503), times=1000)
    with Retriever.from_settings(_settings(store, server), gallery="toy", preset="reflect") as r:
        res = r.search(_new_reference(root, 1), "a red dress", k=3)
    assert [d["stage"] for d in res.degraded] == ["caption_reference", "decompose", "rerank"]
    assert res.description_source == "modification" and res.stop_reason == "no verdicts"
    assert len(res.hits) == 3


def test_captions_persist_across_retrievers(store, server) -> None:
    from cirgraph.retriever import Retriever

    root, _ = store
    for expected in ("model", "cache"):
        with Retriever.from_settings(_settings(store, server), gallery="toy", preset="cirevl") as r:
            assert r.search(_new_reference(root, 2), "make it red").caption_source == expected


def test_caption_space_search_by_gallery_id_needs_no_vision_call(store, server) -> None:
    from cirgraph.retriever import Retriever

    with Retriever.from_settings(_settings(store, server), gallery="toy", preset="cirevl") as r:
        item = next(iter(r.gallery.iter_items()))[0]
        res = r.search(item, "make it red", k=3)
    assert res.caption_source == "gallery" and item not in res.ids
    assert not any(CAPTION_KEY in q.text for q in server.chat_requests)


def test_caption_only_gallery_end_to_end(store, server) -> None:
    from cirgraph import clients
    from cirgraph.retriever import Retriever
    from cirgraph.stores.captions import import_captions, load_captions

    root, settings = store
    names = clients.open_gallery(settings, "names", create=True, kind="captions")
    import_captions(names, load_captions(root / "captions.json"))
    with Retriever.from_settings(_settings(store, server), gallery="names", preset="rerank") as r:
        assert r.services.embedder is None and r.gallery.has_captions and not r.gallery.has_images
        res = r.search("blue-dress.png", "make it red", k=3)
    # no images: the description keeps its whole weight in caption space, the reference is its gallery caption
    c = r.config
    w = {"text_caption": c.w_text_image + c.w_text_caption, "modification": c.w_modification,
         "reference": c.w_reference, "propositions": c.w_propositions}
    assert res.weights == pytest.approx({k: v / sum(w.values()) for k, v in w.items()})
    assert res.ids[0] == "red-dress.png" and "blue-dress.png" not in res.ids
    assert res.verdicts["red-dress.png"]["mode"] == "caption" and res.degraded == []
