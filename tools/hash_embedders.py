"""Weightless embedders, named `hash[:DIM][?delay=SECONDS]`: deterministic, same shapes and contracts as the real ones.

A model kind of its own (galleries record them by name and rebuild them from it), used by tests, benchmarks and
demos where no weights exist. Texts embed as a normalised sum of hashed bag-of-words vectors, so texts sharing words
are similar; images embed from a hash of their pixels, so the same image always gets the same vector. `delay=S` makes
every call sleep first (a stand-in for a slow model, so tests can interrupt a slow run).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import numpy as np

from cirgraph.errors import InputError

if TYPE_CHECKING:
    from PIL.Image import Image

_WORD = re.compile(r"[a-z0-9]+")


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.where(n == 0, 1.0, n)).astype(np.float32)


def _seeded(key: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(dim)


class HashTextEmbedder:
    """TextEmbedder: hashed bag of words."""

    def __init__(self, dim: int = 64, name: str = "hash-text") -> None:
        self.dim = dim
        self.name = name
        self.calls = 0

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim))
        for i, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                out[i] += _seeded("w:" + word, self.dim)
        return _unit(out)


class HashImageTextEmbedder(HashTextEmbedder):
    """ImageTextEmbedder: texts as above; images by a hash of their pixels (plus the words of `image_words`).

    `image_words` maps an image fingerprint to words, so a test can place an image near a text on purpose.
    """

    def __init__(self, dim: int = 64, name: str = "hash-image-text", image_words: dict[str, str] | None = None) -> None:
        super().__init__(dim, name)
        self.image_words = image_words or {}

    def embed_images(self, images: Sequence[Image]) -> np.ndarray:
        from cirgraph.tools.images import image_fingerprint

        self.calls += 1
        out = np.zeros((len(images), self.dim))
        for i, img in enumerate(images):
            fp = image_fingerprint(img)
            out[i] = _seeded("img:" + fp, self.dim) * 0.5
            for word in _WORD.findall(self.image_words.get(fp, "").lower()):
                out[i] += _seeded("w:" + word, self.dim)
        return _unit(out)


class _Delayed:
    """Wraps an embedder so every call sleeps first (a stand-in for a slow model)."""

    def __init__(self, inner: HashTextEmbedder, delay_s: float) -> None:
        self._inner, self.delay_s = inner, delay_s
        self.name, self.dim = inner.name, inner.dim

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        time.sleep(self.delay_s)
        return self._inner.embed_texts(texts)

    def embed_images(self, images: Sequence) -> np.ndarray:
        time.sleep(self.delay_s)
        return self._inner.embed_images(images)


def hash_embedder(ref: str, *, images: bool) -> HashTextEmbedder | _Delayed:
    """`hash[:DIM][?delay=S]` -> a hash embedder whose name is `ref` (so it rebuilds from it)."""
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
