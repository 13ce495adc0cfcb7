"""The API routes that show gallery items: the galleries, items found by id or caption, random samples, and
thumbnails of gallery items and uploads. An image is found only through the gallery (see thumbnails.py); an item
without an image file here (a caption-only gallery) has no thumbnail URL, so a client shows its captions.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse, Response

from cirgraph.chat.browse import ItemFinder, has_image_file
from cirgraph.chat.redact import public
from cirgraph.chat.schemas import ErrorOut, GalleryOut, ItemOut
from cirgraph.chat.thumbnails import Thumbnails, gallery_file

if TYPE_CHECKING:
    from cirgraph.chat.threads import Conversations

ERRORS = {code: {"model": ErrorOut} for code in (401, 404, 422, 503)}


def image_url(gallery: str, item_id: str) -> str:
    return f"/api/images/{quote(gallery, safe='')}/{quote(item_id, safe='')}"


def thumbnail_url(gallery: str, item_id: str, uri: str | None) -> str | None:
    """The thumbnail URL of an item, None when it has no image file here (a caption-only gallery's items)."""
    return image_url(gallery, item_id) if has_image_file(uri) else None


def item_out(gallery: str, item: Any) -> dict[str, Any]:
    return public({"id": item.id, "uri": item.uri, "captions": item.captions[:3]}) | \
        {"thumbnail": thumbnail_url(gallery, item.id, item.uri)}


def gallery_routes(app: FastAPI, conversations: Conversations) -> None:
    finders = {name: ItemFinder(r.gallery) for name, r in conversations.retrievers.items()}

    def finder(gallery: str) -> ItemFinder:
        if gallery not in finders:
            raise HTTPException(404, f"gallery {gallery[:80]!r}: not served here; "
                                     f"choose one of: {', '.join(conversations.galleries)}")
        return finders[gallery]

    @app.get("/api/galleries", response_model=list[GalleryOut], tags=["search"])
    async def galleries() -> list[dict[str, Any]]:
        """The galleries this server searches; the first is the default."""
        counts = await asyncio.gather(*(asyncio.to_thread(r.gallery.count) for r in conversations.retrievers.values()))
        names = conversations.galleries
        return [{"name": n, "count": c, "default": n == names[0]} for n, c in zip(names, counts)]

    @app.get("/api/galleries/{gallery}/items", response_model=list[ItemOut], responses=ERRORS, tags=["search"])
    async def find_items(gallery: str, q: str = Query(..., min_length=1, max_length=200,
                                                      description="Text to find in item ids and captions."),
                         limit: int = Query(24, ge=1, le=100)) -> list[dict[str, Any]]:
        """Gallery items to start a conversation from: id equal to q, then ids containing it, then captions."""
        found = await asyncio.to_thread(finder(gallery).find, q, limit)
        return [item_out(gallery, item) for item in found]

    @app.get("/api/galleries/{gallery}/sample", response_model=list[ItemOut], responses=ERRORS, tags=["search"])
    async def sample_items(gallery: str, n: int = Query(12, ge=1, le=100),
                           seed: int | None = Query(None, description="Same seed, same sample.")) -> list[Any]:
        """A random sample of gallery items."""
        found = await asyncio.to_thread(finder(gallery).sample, n, random.Random(seed))
        return [item_out(gallery, item) for item in found]


def image_routes(app: FastAPI, conversations: Conversations) -> None:
    thumbs = Thumbnails(max_pixels=min(r.max_image_pixels for r in conversations.retrievers.values()))

    def thumbnail(path: Path | None, size: int, missing: str, max_age: int) -> Response:
        try:
            if path is not None:
                return Response(thumbs.of(path, size), media_type="image/jpeg",
                                headers={"Cache-Control": f"max-age={max_age}", "X-Content-Type-Options": "nosniff"})
        except OSError:  # removed since it was looked up
            pass
        return JSONResponse({"detail": missing}, status_code=404)

    @app.get("/api/images/{gallery}/{item_id:path}", response_class=Response, responses=ERRORS, tags=["images"])
    def gallery_image(gallery: str, item_id: str, size: int = Query(256, ge=32, le=1024)) -> Response:
        """A JPEG thumbnail of an indexed gallery item: the item is looked up by id and its stored file is read."""
        if gallery not in conversations.retrievers:
            return JSONResponse({"detail": f"gallery {gallery[:80]!r}: not served here"}, status_code=404)
        path = gallery_file(conversations.retrievers[gallery].gallery, item_id)
        return thumbnail(path, size, f"item {item_id[:80]!r}: no image in gallery {gallery!r}", 3600)

    @app.get("/api/uploads/{digest}", response_class=Response, responses=ERRORS, tags=["images"])
    def uploaded_image(digest: str, size: int = Query(256, ge=32, le=1024)) -> Response:
        """A JPEG thumbnail of an uploaded reference image, by content hash."""
        path = conversations.store.upload_path(digest)
        return thumbnail(path, size, f"upload {digest[:40]!r}: not found", 86400)
