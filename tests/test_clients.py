"""Settings -> live clients: which models a configuration needs, embedders, the captioner, galleries; the vision
model of a search loads only when a stage calls it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cirgraph.agents.presets import PRESETS
from cirgraph.clients import (LazyChatModel, build_captioner, build_image_text_embedder, eval_models, needed_models,
                              open_gallery)
from cirgraph.errors import ConfigError, GalleryError, ModelNotFoundError
from cirgraph.evals.runner import EvalSpec, _models_from_settings
from cirgraph.settings import Settings
from cirgraph.stores.chroma import clear_client_cache, gallery_names, make_client
from cirgraph.testing.fake_chat import ScriptedChatModel
from cirgraph.tools.embedders import load_image_text_embedder
from cirgraph.tools.messages import Message


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    monkeypatch.setenv("CIRGRAPH_HOME", str(tmp_path / "home"))
    yield Settings(embedder="hash:32", text_embedder="hash:16")
    clear_client_cache()


def test_missing_models_and_empty_settings_are_named() -> None:
    with pytest.raises(ModelNotFoundError, match="'/no/such/clip'"):
        load_image_text_embedder("/no/such/clip")
    with pytest.raises(ConfigError, match="CIRGRAPH_EMBEDDER is empty"):
        build_image_text_embedder(Settings(embedder=""))


def test_new_galleries_take_the_configured_models_existing_ones_keep_theirs(settings, monkeypatch) -> None:
    g = open_gallery(settings, "pics", create=True, kind="images")
    assert (g.kind, g.image_model, g.text_model) == ("images", "hash:32", "hash:16")
    monkeypatch.delenv("CIRGRAPH_EMBEDDER", raising=False)
    assert open_gallery(Settings(), "pics").image_model == "hash:32"  # default setting: the stored model wins
    monkeypatch.setenv("CIRGRAPH_EMBEDDER", "hash:64")  # set explicitly: must match
    with pytest.raises(GalleryError, match="indexed with model 'hash:32', not 'hash:64'"):
        open_gallery(Settings(), "pics")
    caps = open_gallery(settings, "names", create=True, kind="captions")
    assert (caps.kind, caps.image_model, caps.text_model) == ("captions", None, "hash:16")
    with pytest.raises(GalleryError, match=r"gallery 'other' does not exist \(galleries in the store: names, pics\)"):
        open_gallery(settings, "other")


def test_a_bad_model_reference_creates_no_gallery(settings) -> None:
    with pytest.raises(ModelNotFoundError):
        open_gallery(settings.model_copy(update={"embedder": "/no/such/clip"}), "pics", create=True, kind="images")
    with pytest.raises(ConfigError, match="needs an image-text embedder"):
        open_gallery(settings.model_copy(update={"embedder": None}), "pics", create=True, kind="images")
    assert gallery_names(make_client(settings)) == []


def test_the_captioner_is_the_configured_endpoint_or_a_local_model() -> None:
    from cirgraph.tools.openai_chat import OpenAIChatModel

    remote = build_captioner(Settings(vlm_base_url="http://127.0.0.1:9/v1", vlm_model="v", vlm_api_key="k"))
    assert isinstance(remote, OpenAIChatModel)
    with pytest.raises(ConfigError, match="CIRGRAPH_VLM_MODEL"):
        build_captioner(Settings(vlm_base_url="http://127.0.0.1:9/v1"))
    with pytest.raises(ModelNotFoundError, match="'/no/such/vlm'"):
        build_captioner(Settings(vlm_model="/no/such/vlm"))


def test_rerank_needs_the_text_llm_only_on_a_gallery_without_images() -> None:
    rerank = PRESETS["modification-only"].with_(rerank=True)
    assert needed_models(rerank, has_images=True) == (False, True)  # the vision model judges images and captions
    assert needed_models(rerank, has_images=False) == (True, False)
    assert needed_models(PRESETS["modification-only"], has_images=True) == (False, False)


def test_captioning_needs_the_vision_model_unless_references_come_captioned() -> None:
    caption = PRESETS["caption-only"]
    assert needed_models(caption, has_images=False) == (False, True)  # an uploaded image on a caption gallery
    assert needed_models(caption, has_images=True, references_captioned=True) == (False, False)


@pytest.mark.parametrize("images", [True, False])
@pytest.mark.parametrize("captions", [True, False])
def test_the_eval_runner_builds_exactly_the_models_needed_models_names(monkeypatch, images, captions) -> None:
    from cirgraph import clients

    for name in ("build_llm", "build_captioner", "build_image_text_embedder", "build_text_embedder"):
        monkeypatch.setattr(clients, name, lambda settings, n=name: n)
    spec = EvalSpec("cirr", "val", Path("data"), images_dir=Path("images") if images else None,
                    captions_file=Path("captions.json") if captions else None)
    configs = [*PRESETS.values(), PRESETS["modification-only"].with_(rerank=True)]
    for config in configs:
        built = _models_from_settings(Settings(), spec, [config])
        needs = needed_models(config, has_images=images, references_captioned=captions or not images)
        assert (built.llm is not None, built.vlm is not None) == needs, config.preset
        assert (built.embedder is not None, built.text_embedder is not None) == (images, captions)
    rerank_on_images = eval_models(Settings(), [configs[-1]], images=True, captions=True)
    assert (rerank_on_images.llm, rerank_on_images.vlm) == (None, "build_captioner")


def test_lazy_model_builds_once_on_first_call() -> None:
    built: list[ScriptedChatModel] = []

    def build() -> ScriptedChatModel:
        built.append(ScriptedChatModel(default="a red dress", name="vlm-x"))
        return built[-1]

    model = LazyChatModel(build, "vlm-x")
    assert built == [] and model.name == "vlm-x"

    async def twice() -> list[str]:
        return list(await asyncio.gather(*(model.complete([Message.user("Describe")]) for _ in range(4))))

    assert asyncio.run(twice()) == ["a red dress"] * 4
    assert len(built) == 1 and built[0].calls == 4


def test_lazy_model_load_failure_surfaces_at_the_call() -> None:
    def build() -> ScriptedChatModel:
        raise ModelNotFoundError("HuggingFaceTB/SmolVLM-256M-Instruct", "offline and not in the local cache")

    model = LazyChatModel(build, None)
    assert model.name == "vision-model"
    with pytest.raises(ModelNotFoundError, match="SmolVLM"):
        asyncio.run(model.complete([Message.user("Describe")]))
