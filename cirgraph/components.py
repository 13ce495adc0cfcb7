"""Settings -> the live components of a Retriever: the named gallery with its own embedders, and the chat models
its configuration uses (nothing else is loaded: "modification-only" needs no chat model at all).

The text LLM and the vision model are the same client when the settings point both at one endpoint and model.
Reference captions are cached persistently under the settings' cache folder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cirgraph.errors import ConfigError

if TYPE_CHECKING:
    from cirgraph.agents.context import PipelineConfig
    from cirgraph.settings import Settings
    from cirgraph.tools.protocols import ChatModel


def build_llm(settings: Settings) -> ChatModel:
    """The text LLM: the configured OpenAI-compatible endpoint, else an in-process transformers model."""
    from cirgraph.settings import DEFAULT_LOCAL_LLM

    if settings.llm_base_url is not None:
        from cirgraph.tools.openai_chat import OpenAIChatModel

        if not settings.llm_model:
            raise ConfigError("CIRGRAPH_LLM_BASE_URL is set but no model name is (CIRGRAPH_LLM_MODEL)")
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        return OpenAIChatModel(settings.llm_model, base_url=settings.llm_base_url, api_key=key,
                               timeout=settings.request_timeout, max_retries=settings.max_retries,
                               max_concurrency=settings.max_concurrency, image_max_side=settings.image_max_side)
    from cirgraph.tools.hf_chat import TransformersChatModel

    return TransformersChatModel(settings.llm_model or DEFAULT_LOCAL_LLM, device=settings.device,
                                 offline=settings.offline, image_max_side=settings.image_max_side)


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
