"""Building embedders, the captioner and galleries from Settings."""

from __future__ import annotations

import pytest

from cirgraph.errors import ConfigError, GalleryError, InputError, ModelNotFoundError
from cirgraph.factory import (build_captioner, build_image_text_embedder, load_image_text_embedder,
                              load_text_embedder, open_gallery)
from cirgraph.settings import Settings
from cirgraph.stores.chroma import clear_client_cache, gallery_names, make_client


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    monkeypatch.setenv("CIRGRAPH_HOME", str(tmp_path / "home"))
    yield Settings(embedder="hash:32", text_embedder="hash:16")
    clear_client_cache()


def test_hash_references_build_the_test_embedders() -> None:
    image = load_image_text_embedder("hash:12")
    assert (image.name, image.dim, image.embed_images([]).shape) == ("hash:12", 12, (0, 12))
    slow = load_text_embedder("hash:8?delay=0.01")
    assert (slow.name, slow.dim, slow.delay_s) == ("hash:8?delay=0.01", 8, 0.01)
    with pytest.raises(InputError, match=r"model reference 'hash:x'"):
        load_text_embedder("hash:x")


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
