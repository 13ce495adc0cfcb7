"""What the pipeline needs from a gallery, as a protocol, and the hit record it returns.

`cirgraph.stores.gallery.Gallery` (Chroma) implements it; the pipeline depends only on this.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np


@dataclass(slots=True)
class Hit:
    """One gallery item returned by a query. `score` is cosine similarity (higher is better)."""

    id: str
    score: float
    uri: str | None = None
    captions: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Item:
    """A stored gallery item (no score)."""

    id: str
    uri: str | None = None
    captions: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class GalleryReader(Protocol):
    """Read side of a gallery. Embedding inputs are L2-normalised float32 arrays (n, d) or (d,)."""

    name: str

    @property
    def has_images(self) -> bool:
        """True when the gallery holds image embeddings (an image-text embedder was used)."""
        ...

    @property
    def has_captions(self) -> bool:
        """True when the gallery holds caption embeddings."""
        ...

    def count(self) -> int:
        """Number of items (images, or captioned names in a caption-only gallery)."""
        ...

    def query_images(
        self, embedding: np.ndarray, k: int, *, where: Mapping[str, Any] | None = None,
        exclude_ids: Sequence[str] = (),
    ) -> list[Hit]:
        """Top-k items by image-embedding similarity to `embedding` (a text or image embedding in the same space)."""
        ...

    def query_captions(
        self, embedding: np.ndarray, k: int, *, where: Mapping[str, Any] | None = None,
        exclude_ids: Sequence[str] = (),
    ) -> list[Hit]:
        """Top-k items by caption similarity (an item's score is its best caption's)."""
        ...

    def image_embeddings(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored image embeddings of the given items (missing ids are left out)."""
        ...

    def caption_embeddings(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored caption embeddings per item, shape (n_captions, d) (missing ids are left out)."""
        ...

    def get(self, ids: Sequence[str]) -> dict[str, Item]:
        """Stored items (uri, captions, metadata) by id (missing ids are left out)."""
        ...
