"""Chroma embedding functions over our embedders, registered so a reopened collection rebuilds them from its config.

Chroma persists an embedding function as (name, config) and rebuilds it with `build_from_config` whenever it reads
the collection's configuration, so building must be cheap: these functions hold a model reference (a Hugging Face
id, a local folder, or `hash:DIM` for the weightless hash embedders) and load the model only on first use, through
cirgraph.tools.embedders. They also keep Chroma's own default function (which downloads a model the moment it embeds
text) from ever being used.

Images arrive from Chroma's `ImageLoader` as numpy arrays in the file's own mode (16-bit, alpha, grey), so they
are normalised to 8-bit RGB the same way indexing does before they are embedded.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np
from chromadb.api.types import EmbeddingFunction, Embeddings
from chromadb.utils.data_loaders import ImageLoader
from chromadb.utils.embedding_functions import register_embedding_function

from cirgraph.errors import GalleryError, InputError

if TYPE_CHECKING:
    from PIL.Image import Image

    from cirgraph.tools.protocols import ImageTextEmbedder, TextEmbedder


def array_to_image(array: np.ndarray) -> Image:
    """A numpy image as Chroma's ImageLoader gives it (any bit depth, grey/RGB/RGBA) -> normalised RGB PIL image."""
    from PIL import Image as PILImage

    from cirgraph.tools.images import normalise

    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InputError("image array", f"shape {arr.shape} is not (h, w), (h, w, 3) or (h, w, 4)")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        top = 1.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else 255.0
        arr = np.clip(np.nan_to_num(arr) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        top = 65535.0 if int(arr.max(initial=0)) > 255 else 255.0
        arr = np.clip(arr.astype(np.float64) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return normalise(PILImage.fromarray(np.ascontiguousarray(arr)))


class _LazyModel:
    """Loads an embedder from its reference once, on first use, thread-safely."""

    def __init__(self, model: str, device: str, embedder: Any | None) -> None:
        if not isinstance(model, str) or not model.strip():
            raise InputError("model reference", f"expected a non-empty string, got {model!r}")
        self.model = model
        self.device = device
        self._embedder = embedder
        self._lock = threading.Lock()

    def get(self, loader_name: str) -> Any:
        if self._embedder is None:
            with self._lock:
                if self._embedder is None:
                    from cirgraph.tools import embedders  # looked up at each load, so a test can trace it

                    self._embedder = getattr(embedders, loader_name)(self.model, device=self.device)
        return self._embedder

    @property
    def loaded(self) -> bool:
        return self._embedder is not None


class _ModelBacked:
    """What the model-backed embedding functions share: a lazily loaded model reference, cosine space only, and a
    config that records the reference (which may never change for a collection)."""

    _lazy: _LazyModel

    @property
    def model(self) -> str:
        return self._lazy.model

    def default_space(self) -> str:
        return "cosine"

    def supported_spaces(self) -> list[str]:
        return ["cosine"]

    def get_config(self) -> dict[str, Any]:
        return {"model": self._lazy.model, "device": self._lazy.device}

    def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
        if new_config.get("model", old_config.get("model")) != old_config.get("model"):
            raise GalleryError("the embedding model of a gallery collection cannot change; index a new gallery")


@register_embedding_function
class ImageTextEmbeddingFunction(_ModelBacked, EmbeddingFunction):
    """Embeds texts and images (numpy arrays, as Chroma passes them) with an image-text embedder (CLIP, SigLIP)."""

    def __init__(self, model: str, *, device: str = "cpu", embedder: ImageTextEmbedder | None = None) -> None:
        self._lazy = _LazyModel(model, device, embedder)

    @property
    def embedder(self) -> ImageTextEmbedder:
        """The live embedder (loaded on first access; ModelNotFoundError when the reference cannot be loaded)."""
        return self._lazy.get("load_image_text_embedder")

    def __call__(self, input: Any) -> Embeddings:
        from chromadb.api.types import is_document, is_image

        items = list(input)
        texts = [i for i, x in enumerate(items) if is_document(x)]
        images = [i for i, x in enumerate(items) if is_image(x)]
        if len(texts) + len(images) != len(items):
            raise InputError("embedding input", "expected strings or numpy images")
        out = np.zeros((len(items), self.embedder.dim), dtype=np.float32)
        if texts:
            out[texts] = self.embedder.embed_texts([items[i] for i in texts])
        if images:
            out[images] = self.embedder.embed_images([array_to_image(items[i]) for i in images])
        return list(out)

    @staticmethod
    def name() -> str:
        return "cirgraph-image-text"

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> ImageTextEmbeddingFunction:
        return ImageTextEmbeddingFunction(config["model"], device=config.get("device", "cpu"))


@register_embedding_function
class TextEmbeddingFunction(_ModelBacked, EmbeddingFunction):
    """Embeds caption texts with a text embedder (sentence-transformers, or a CLIP text tower)."""

    def __init__(self, model: str, *, device: str = "cpu", embedder: TextEmbedder | None = None) -> None:
        self._lazy = _LazyModel(model, device, embedder)

    @property
    def embedder(self) -> TextEmbedder:
        return self._lazy.get("load_text_embedder")

    def __call__(self, input: Any) -> Embeddings:
        texts = list(input)
        if not all(isinstance(t, str) for t in texts):
            raise InputError("embedding input", "the caption collection embeds texts only")
        return list(self.embedder.embed_texts(texts))

    @staticmethod
    def name() -> str:
        return "cirgraph-text"

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> TextEmbeddingFunction:
        return TextEmbeddingFunction(config["model"], device=config.get("device", "cpu"))


@register_embedding_function
class NoEmbeddingFunction(EmbeddingFunction):
    """For collections that only ever receive explicit embeddings (item records): refuses to embed anything."""

    def __init__(self) -> None:
        pass

    def __call__(self, input: Any) -> Embeddings:
        raise GalleryError("this collection holds records with explicit embeddings only; it cannot embed inputs")

    @staticmethod
    def name() -> str:
        return "cirgraph-none"

    def get_config(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> NoEmbeddingFunction:
        return NoEmbeddingFunction()


class SafeImageLoader(ImageLoader):
    """Chroma's ImageLoader, reading through cirgraph's loader: decompression-bomb cap, EXIF rotation, 8-bit RGB."""

    def __init__(self, max_pixels: int | None = None, max_workers: int = 4) -> None:
        super().__init__(max_workers=max_workers)
        from cirgraph.tools.images import DEFAULT_MAX_PIXELS

        self.max_pixels = max_pixels or DEFAULT_MAX_PIXELS

    def _load_image(self, uri: str | None) -> np.ndarray | None:
        from cirgraph.tools.images import load_image

        return None if uri is None else np.asarray(load_image(uri, max_pixels=self.max_pixels))
