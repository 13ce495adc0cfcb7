"""Settings -> the live components of a Retriever: the named gallery with its own embedders, and the chat models
its configuration uses (nothing else is loaded: "modification-only" needs no chat model at all).

The text LLM and the vision model are the same client when the settings point both at one endpoint and model.
Reference captions are cached persistently under the settings' cache folder.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from cirgraph.settings import DEFAULT_LOCAL_VLM


if TYPE_CHECKING:
    from cirgraph.agents.context import PipelineConfig
    from cirgraph.settings import Settings
    from cirgraph.tools.messages import Message
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


class LazyChatModel:
    """A ChatModel loaded on its first call. The vision model of a search is often never called (a reference given as
    a gallery id brings its stored captions), and loading an in-process one costs seconds or, with no local copy,
    fails: a load failure then degrades the stage that needed it, as any model failure does."""

    def __init__(self, build: Callable[[], ChatModel], name: str | None) -> None:
        self._build, self._model = build, None
        self._lock = threading.Lock()
        self.name = name or "vision-model"

    def _get(self) -> ChatModel:
        with self._lock:
            if self._model is None:
                self._model = self._build()
                self.name = self._model.name
            return self._model

    async def complete(self, messages: Sequence[Message], **kwargs: Any) -> Any:
        model = self._model or await asyncio.to_thread(self._get)
        return await model.complete(messages, **kwargs)

    async def classify(self, messages: Sequence[Message], options: Sequence[str]) -> Any:
        from cirgraph.tools.choices import classify

        model = self._model or await asyncio.to_thread(self._get)
        return await classify(model, messages, options)


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
        vlm = (llm if llm is not None and same_endpoint and settings.llm_base_url
               else LazyChatModel(lambda: factory.build_captioner(settings),
                                  settings.vlm_model or (None if settings.vlm_base_url else DEFAULT_LOCAL_VLM)))
    return {
        "gallery": store,
        "embedder": store.image_embedder if has_images else None,
        "text_embedder": store.text_embedder if has_captions else None,
        "llm": llm, "vlm": vlm,
        "caption_cache": CallCache(settings.cache_dir / "captions.sqlite"),
        "max_image_pixels": settings.max_image_pixels,
    }
