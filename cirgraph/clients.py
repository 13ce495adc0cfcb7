"""Settings -> live clients: galleries, the chat models a configuration needs, embedders (through
cirgraph.tools.embedders). The one place that decides which models a configuration needs (`needed_models`), for the
SDK, the chat and the evaluation runner.

Called at the edges (CLI, SDK constructors, the eval runner); pipeline code receives what these return. The text LLM
and the vision model are the same client when the settings point both at one endpoint and model. Heavy packages
(torch, transformers, chromadb) load only when something is built.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from cirgraph.errors import ConfigError
from cirgraph.tools import embedders
from cirgraph.tools.model_hints import with_hint
from cirgraph.tools.protocols import Models

if TYPE_CHECKING:
    from cirgraph.agents.context import PipelineConfig
    from cirgraph.settings import Settings
    from cirgraph.stores.gallery import Gallery
    from cirgraph.tools.messages import Message
    from cirgraph.tools.protocols import ChatModel, ImageTextEmbedder, TextEmbedder


class Needs(NamedTuple):
    """Which chat models a configuration calls."""

    llm: bool
    vlm: bool


def needed_models(config: PipelineConfig, *, has_images: bool, references_captioned: bool = False) -> Needs:
    """The chat models `config` calls on a gallery with or without images.

    Rerank judges a candidate by its image with the vision model, which also judges by captions where an image
    cannot be read, so it needs the text LLM only on a gallery without images. Captioning needs the vision model
    unless every reference comes with its caption (`references_captioned`: an evaluation's references are gallery
    items whose captions are known; the SDK and the chat may get an uploaded image)."""
    llm = config.recompose or config.decompose or config.reflect or (config.rerank and not has_images)
    vlm = (config.caption and not references_captioned) or (config.rerank and has_images)
    return Needs(bool(llm), bool(vlm))


def build_image_text_embedder(settings: Settings) -> ImageTextEmbedder:
    """The image-text embedder `settings.embedder` names; ConfigError when it is empty (caption-only setup)."""
    if settings.embedder is None:
        raise ConfigError("CIRGRAPH_EMBEDDER is empty: an image-text embedder is needed for images")
    return embedders.load_image_text_embedder(settings.embedder, device=settings.device, offline=settings.offline)


def build_text_embedder(settings: Settings) -> TextEmbedder:
    """The caption text embedder `settings.text_embedder` names."""
    return embedders.load_text_embedder(settings.text_embedder, device=settings.device, offline=settings.offline)


def build_chat_model(settings: Settings, role: Literal["llm", "vlm"]) -> ChatModel:
    """The text LLM ("llm") or vision model ("vlm"): the configured OpenAI-compatible endpoint, else an in-process
    transformers model (the model setting, or the default local model of that role)."""
    from cirgraph.settings import DEFAULT_LOCAL_LLM, DEFAULT_LOCAL_VLM

    base_url, api_key, model = (getattr(settings, f"{role}_{f}") for f in ("base_url", "api_key", "model"))
    if base_url is not None:
        from cirgraph.tools.openai_chat import OpenAIChatModel

        if not model:
            raise ConfigError(f"CIRGRAPH_{role.upper()}_BASE_URL is set but no model name is "
                              f"(CIRGRAPH_{role.upper()}_MODEL)")
        return OpenAIChatModel(model, base_url=base_url, api_key=api_key.get_secret_value() if api_key else None,
                               timeout=settings.request_timeout, max_retries=settings.max_retries,
                               max_concurrency=settings.max_concurrency, image_max_side=settings.image_max_side)
    from cirgraph.tools.hf_chat import TransformersChatModel
    from cirgraph.tools.hf_loading import check_loadable

    default = DEFAULT_LOCAL_LLM if role == "llm" else DEFAULT_LOCAL_VLM
    with_hint(role, lambda: check_loadable(model or default, offline=settings.offline))  # before torch is imported
    return with_hint(role, lambda: TransformersChatModel(model or default, device=settings.device,
                                                          offline=settings.offline,
                                                          image_max_side=settings.image_max_side))


def build_llm(settings: Settings) -> ChatModel:
    """The text LLM: the configured OpenAI-compatible endpoint, else an in-process transformers model."""
    return build_chat_model(settings, "llm")


def build_captioner(settings: Settings) -> ChatModel:
    """The vision model that captions gallery images and references."""
    return build_chat_model(settings, "vlm")


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


def search_models(settings: Settings, store: Gallery, config: PipelineConfig) -> Models:
    """The models a search of `store` with `config` uses: the gallery's own embedders, and the chat models
    `needed_models` asks for (the vision model loaded on its first call, unless it is the LLM's endpoint)."""
    from cirgraph.settings import DEFAULT_LOCAL_VLM

    needs = needed_models(config, has_images=store.has_images)
    llm = build_llm(settings) if needs.llm else None
    same_endpoint = (settings.vlm_base_url, settings.vlm_model) == (settings.llm_base_url, settings.llm_model)
    vlm = None
    if needs.vlm:
        vlm = (llm if llm is not None and same_endpoint and settings.llm_base_url
               else LazyChatModel(lambda: build_captioner(settings),
                                  settings.vlm_model or (None if settings.vlm_base_url else DEFAULT_LOCAL_VLM)))
    return Models(llm=llm, vlm=vlm, embedder=store.image_embedder if store.has_images else None,
                  text_embedder=store.text_embedder if store.has_captions else None)


def eval_models(settings: Settings, configs: Sequence[PipelineConfig], *, images: bool, captions: bool) -> Models:
    """The models an evaluation of `configs` uses: embedders for the spaces it builds (image space with `images`,
    caption space with a captions file, `captions`), and the chat models some configuration needs. References are
    gallery items: with a captions file, or in caption space, each comes with its caption."""
    needs = [needed_models(c, has_images=images, references_captioned=captions or not images) for c in configs]
    return Models(llm=build_llm(settings) if any(n.llm for n in needs) else None,
                  vlm=build_captioner(settings) if any(n.vlm for n in needs) else None,
                  embedder=build_image_text_embedder(settings) if images else None,
                  text_embedder=build_text_embedder(settings) if captions else None)


def _explicit(settings: Settings, field: str) -> str | None:
    """A model setting only when it was set explicitly (environment, .env, argument), not its default."""
    return getattr(settings, field) if field in settings.model_fields_set else None


def open_gallery(settings: Settings, name: str, *, embedder: ImageTextEmbedder | str | None = None,
                 text_embedder: TextEmbedder | str | None = None, create: bool = False,
                 kind: Literal["images", "captions"] | None = None) -> Gallery:
    """The gallery `name` in the store `settings` point to (embedded under home, or the Chroma server).

    An existing gallery keeps the models it was built with; a model set explicitly in the settings must match them
    (else GalleryError). With `create=True` a missing gallery is created with the given or configured models;
    `kind` matters only then: "captions" makes it caption-only (no image embedder), "images" requires one.
    """
    from cirgraph.stores.chroma import Layout, collection_names, make_client
    from cirgraph.stores.gallery import Gallery

    client = make_client(settings)
    layout = Layout(name)
    if {layout.images, layout.items} & collection_names(client):  # existing: its own models unless set explicitly
        embedder = embedder if embedder is not None else _explicit(settings, "embedder")
        text_embedder = text_embedder if text_embedder is not None else _explicit(settings, "text_embedder")
    else:
        embedder = None if kind == "captions" else embedder if embedder is not None else settings.embedder
        text_embedder = text_embedder if text_embedder is not None else settings.text_embedder
        if kind == "images" and embedder is None:
            raise ConfigError(f"gallery {name!r}: indexing images needs an image-text embedder (CIRGRAPH_EMBEDDER)")
        if create:  # load the model the new collection will be tied to now: a bad reference creates nothing
            if isinstance(embedder, str):
                embedder = embedders.load_image_text_embedder(embedder, device=settings.device,
                                                               offline=settings.offline)
            elif embedder is None and isinstance(text_embedder, str):
                text_embedder = embedders.load_text_embedder(text_embedder, device=settings.device,
                                                             offline=settings.offline)
    return Gallery(client, name, embedder=embedder, text_embedder=text_embedder, device=settings.device,
                   create=create, max_pixels=settings.max_image_pixels)
