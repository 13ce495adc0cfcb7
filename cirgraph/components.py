"""Settings -> the live components of a Retriever: the named gallery with its own embedders, and the chat models
its configuration uses (nothing else is loaded: "modification-only" needs no chat model at all).

The text LLM and the vision model are the same client when the settings point both at one endpoint and model.
Reference captions are cached persistently under the settings' cache folder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:
    from cirgraph.agents.context import PipelineConfig
    from cirgraph.settings import Settings
    from cirgraph.tools.protocols import ChatModel


def build_llm(settings: Settings) -> ChatModel:
    """The text LLM: the configured OpenAI-compatible endpoint, else an in-process transformers model."""
    from cirgraph.factory import build_chat_model

    return build_chat_model(settings, "llm")


def needed_models(config: PipelineConfig, *, has_images: bool) -> tuple[bool, bool]:
    """(needs a text LLM, needs a vision model) for `config` on a gallery with or without images."""
    llm = config.recompose or config.decompose or config.reflect or (config.rerank and not has_images)
    vlm = config.caption or (config.rerank and has_images)
    return llm, vlm


def build_components(settings: Settings, *, gallery: str, config: PipelineConfig) -> dict[str, Any]:
    """Keyword arguments for Retriever(...): gallery, embedders, llm, vlm and a persistent caption cache."""
    from cirgraph import factory
    from cirgraph.tools.cache import CallCache

    store = factory.open_gallery(settings, gallery)
    has_images, has_captions = store.has_images, store.has_captions
    wants_llm, wants_vlm = needed_models(config, has_images=has_images)
    llm = build_llm(settings) if wants_llm else None
    same_endpoint = (settings.vlm_base_url, settings.vlm_model) == (settings.llm_base_url, settings.llm_model)
    vlm = None
    if wants_vlm:
        vlm = llm if llm is not None and same_endpoint and settings.llm_base_url else factory.build_captioner(settings)
    return {
        "gallery": store,
        "embedder": store.image_embedder if has_images else None,
        "text_embedder": store.text_embedder if has_captions else None,
        "llm": llm, "vlm": vlm,
        "caption_cache": CallCache(settings.cache_dir / "captions.sqlite"),
        "max_image_pixels": settings.max_image_pixels,
    }
