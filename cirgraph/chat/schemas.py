"""Request and response bodies of the HTTP API (they make its OpenAPI schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorOut(BaseModel):
    detail: str = Field(description="What was wrong with the request, naming the input.")


class GalleryOut(BaseModel):
    name: str
    count: int | None = Field(None, description="Items in the gallery.")
    default: bool = Field(False, description="Threads and searches use this gallery unless told otherwise.")


class HitOut(_Out):
    rank: int
    id: str = Field(description="The gallery item id.")
    score: float = Field(description="The score that orders the results.")
    name: str | None = Field(None, description="The image's file name (the server's paths are never shown).")
    verdict: float | None = Field(None, description="The verifier's score, for verified candidates.")
    components: dict[str, float | None] = Field(default_factory=dict, description="Fused similarity components.")
    captions: list[str] = Field(default_factory=list)
    thumbnail: str | None = Field(description="URL of the item's thumbnail (GET /api/images/{gallery}/{item_id}); "
                                              "null when the item has no image (a caption-only gallery).")


class ReferenceOut(_Out):
    kind: Literal["gallery", "upload"]
    id: str | None = Field(None, description="Gallery item id (kind 'gallery').")
    hash: str | None = Field(None, description="Content hash of the uploaded image (kind 'upload').")
    name: str | None = Field(None, description="The uploaded file's name, for display.")
    url: str | None = Field(description="URL of the reference's thumbnail; null for a gallery item without an "
                                        "image (show its captions).")
    captions: list[str] = Field(default_factory=list, description="A gallery item's captions (kind 'gallery').")


class TurnOut(_Out):
    n: int = Field(description="1-based position in the thread.")
    kind: Literal["search", "select"] = Field(description="'select' turns only changed the reference.")
    text: str
    modification: str | None
    pick: int | None = Field(None, description="The result of the previous search that became the reference.")
    context: str | None = Field(None, description="The caption the turn started from (the previous description).")
    description: str | None = Field(None, description="The target description this turn searched for.")
    reference: ReferenceOut
    hits: list[HitOut]
    explanation: dict[str, Any] = Field(description="Caption, descriptions, propositions, verdicts, rounds...")
    at: str = Field(description="When the turn ran (ISO 8601, UTC).")


class ItemOut(BaseModel):
    id: str = Field(description="The gallery item id: send it as ref_id to start from this item.")
    name: str | None = Field(None, description="The image's file name, if it has one.")
    captions: list[str] = Field(default_factory=list, description="The item's first captions.")
    thumbnail: str | None = Field(description="URL of the item's thumbnail; null when it has no image.")


class ThreadOut(BaseModel):
    thread_id: str
    gallery: str
    resets: int = 0
    turns: list[TurnOut]


class UndoOut(BaseModel):
    removed: TurnOut
    thread: ThreadOut


class NewThread(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gallery: str | None = Field(None, description="Gallery to search; the server's default when omitted.")


class SearchOut(BaseModel):
    gallery: str
    results: list[HitOut]
    explanation: dict[str, Any]
