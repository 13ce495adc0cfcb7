"""Chat messages that may hold images, independent of any provider's wire format."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Union

if TYPE_CHECKING:
    from PIL.Image import Image

Role = Literal["system", "user", "assistant"]
# A part is plain text or an already-decoded, normalised RGB PIL image (see cirgraph.tools.images.load_image).
Part = Union[str, "Image"]


@dataclass(frozen=True, slots=True)
class Message:
    """One chat turn: a role and an ordered tuple of text and image parts."""

    role: Role
    parts: tuple[Part, ...]

    @classmethod
    def system(cls, text: str) -> Message:
        return cls("system", (text,))

    @classmethod
    def user(cls, *parts: Part) -> Message:
        return cls("user", tuple(parts))

    @classmethod
    def assistant(cls, text: str) -> Message:
        return cls("assistant", (text,))

    @property
    def text(self) -> str:
        """The text parts joined by blank lines (images left out)."""
        return "\n\n".join(p for p in self.parts if isinstance(p, str))

    @property
    def images(self) -> list[Image]:
        return [p for p in self.parts if not isinstance(p, str)]
