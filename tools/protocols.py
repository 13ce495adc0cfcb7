"""The interfaces every model client implements, and Models, the one container of a pipeline's four clients.
Pipeline code depends on these, never on a concrete client."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar, overload, runtime_checkable

from pydantic import BaseModel

from cirgraph.tools.messages import Message

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

T = TypeVar("T", bound=BaseModel)


@runtime_checkable
class ChatModel(Protocol):
    """A chat model (text LLM or vision LLM). `name` identifies it in cache keys and records."""

    name: str

    @overload
    async def complete(
        self, messages: Sequence[Message], *, schema: None = None, temperature: float = 0.0,
        max_tokens: int | None = None,
    ) -> str: ...

    @overload
    async def complete(
        self, messages: Sequence[Message], *, schema: type[T], temperature: float = 0.0,
        max_tokens: int | None = None,
    ) -> T: ...

    async def complete(
        self, messages: Sequence[Message], *, schema: type[T] | None = None, temperature: float = 0.0,
        max_tokens: int | None = None,
    ) -> str | T:
        """Answer the conversation: plain text, or an instance of `schema` validated by pydantic.

        Raises ModelError when the endpoint fails after retries, ModelOutputError when no valid structured
        output could be had.
        """
        ...


@runtime_checkable
class ImageTextEmbedder(Protocol):
    """A joint image-text space (CLIP, SigLIP). Outputs are L2-normalised float32 arrays of shape (n, dim)."""

    name: str
    dim: int

    def embed_images(self, images: Sequence[Image]) -> np.ndarray: ...

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class TextEmbedder(Protocol):
    """A text space for captions. Outputs are L2-normalised float32 arrays of shape (n, dim)."""

    name: str
    dim: int

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class Models:
    """The live model clients of a pipeline; None where a configuration needs none. Built from Settings by
    cirgraph.clients, or injected by a caller; the graph's Services and an evaluation run hold them as this."""

    llm: ChatModel | None = None
    vlm: ChatModel | None = None
    embedder: ImageTextEmbedder | None = None
    text_embedder: TextEmbedder | None = None

    def as_kwargs(self) -> dict[str, object]:
        """The four clients as keyword arguments (for Retriever(...))."""
        return {"llm": self.llm, "vlm": self.vlm, "embedder": self.embedder, "text_embedder": self.text_embedder}
