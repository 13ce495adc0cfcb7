"""The HTTP API and the web chat (FastAPI): search, conversation threads and turns, thumbnails. OpenAPI at /docs.

    POST /api/search                        multipart: text + image file or ref_id [+ gallery, k]
    POST /api/threads                       {"gallery": NAME?} -> a new thread
    GET  /api/threads/{id}                  the thread and its turns
    POST /api/threads/{id}/turns            multipart: text [+ image | ref_id | pick, k]; ?stream=true -> NDJSON
    POST /api/threads/{id}/undo             remove the last turn
    POST /api/threads/{id}/reset            forget every turn
    GET  /api/images/{gallery}/{item_id}    thumbnail of an indexed gallery item (looked up by id, never by path)
    GET  /api/uploads/{hash}                thumbnail of an uploaded reference

Bad input answers 4xx with {"detail": "..."}: 400 for unusable input, 404 for an unknown thread, gallery, item or
upload, 413 for a body over the upload limit, 415 for data that is not a supported image, 422 for an image that
cannot be used (corrupt, too many pixels) or a malformed field.

FastAPI is imported here at module level (its signatures need the names); only `cirgraph ui` and callers of
`create_app` import this module.
"""

from __future__ import annotations

import asyncio
import json
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import FastAPI, File, Form, HTTPException, Query, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from cirgraph.agents.query import GalleryRef
from cirgraph.chat.limits import BodyLimit
from cirgraph.chat.redact import public, redact_text
from cirgraph.chat.schemas import ErrorOut, GalleryOut, NewThread, SearchOut, ThreadOut, TurnOut, UndoOut
from cirgraph.chat.sources import check_format, gallery_reference, upload_reference
from cirgraph.chat.store import ThreadNotFound
from cirgraph.chat.thumbnails import Thumbnails, gallery_file
from cirgraph.chat.turns import stage_summary
from cirgraph.errors import CirgraphError, ConfigError, GalleryError, ImageError, InputError, ModelError

if TYPE_CHECKING:
    from cirgraph.chat.threads import Conversations

FORM_OVERHEAD = 64 * 1024  # multipart boundaries and text fields, on top of the image itself
ERRORS = {code: {"model": ErrorOut} for code in (400, 404, 413, 415, 422)}
# The page loads only its own script, style and images, and cannot be framed.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def status_of(exc: CirgraphError) -> int:
    """The HTTP status of an SDK error."""
    from cirgraph.chat.sources import UnsupportedImage

    for kind, status in ((ThreadNotFound, 404), (UnsupportedImage, 415), (ImageError, 422), (InputError, 400),
                         (ConfigError, 400), (GalleryError, 503), (ModelError, 502)):
        if isinstance(exc, kind):
            return status
    return 500


def image_url(gallery: str, item_id: str) -> str:
    return f"/api/images/{quote(gallery, safe='')}/{quote(item_id, safe='')}"


def reference_url(gallery: str, reference: dict[str, Any]) -> str:
    if reference["kind"] == "gallery":
        return image_url(gallery, reference["id"])
    return f"/api/uploads/{reference['hash']}"


def turn_out(record: dict[str, Any], gallery: str) -> dict[str, Any]:
    """A turn record as a client sees it: no server paths, and the URLs the web chat shows."""
    record = public(record)
    hits = [h | {"thumbnail": image_url(gallery, h["id"])} for h in record["hits"]]
    reference = record["reference"] | {"url": reference_url(gallery, record["reference"])}
    return record | {"hits": hits, "reference": reference}


def thread_out(state: dict[str, Any]) -> dict[str, Any]:
    return {"thread_id": state["thread_id"], "gallery": state["gallery"], "resets": state.get("resets", 0),
            "turns": [turn_out(t, state["gallery"]) for t in state["turns"]]}


def create_app(conversations: Conversations, *, max_upload_bytes: int | None = None,
               allowed_hosts: list[str] | None = None, title: str = "cirgraph") -> FastAPI:
    """The FastAPI app over `conversations` (its galleries, store and limits), with the web chat at /.

    `allowed_hosts` limits the Host header a request may carry (None: any). A server on loopback should pass its
    loopback names: a web page cannot then reach the API through a DNS name rebound to 127.0.0.1.
    """
    limit = max_upload_bytes if max_upload_bytes is not None else conversations.max_upload_bytes
    web = files("cirgraph.chat") / "web"
    thumbs = Thumbnails(max_pixels=min(r.max_image_pixels for r in conversations.retrievers.values()))
    app = FastAPI(title=title, summary="Composed image retrieval: search and multi-turn chat over indexed galleries.",
                  version=_version())
    app.add_middleware(BodyLimit, max_bytes=limit + FORM_OVERHEAD)
    if allowed_hosts is not None:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    app.mount("/static", StaticFiles(directory=str(web)), name="static")
    app.state.conversations = conversations

    @app.exception_handler(CirgraphError)
    async def _sdk_error(request: Any, exc: CirgraphError) -> JSONResponse:
        return JSONResponse({"detail": redact_text(str(exc))}, status_code=status_of(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Any, exc: RequestValidationError) -> JSONResponse:
        errors = jsonable_encoder(exc.errors())
        text = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg')}"
                         for e in errors)
        return JSONResponse({"detail": text, "errors": errors}, status_code=422)

    async def read_image(upload: UploadFile) -> tuple[bytes, str]:
        data = await upload.read(limit + 1)
        name = upload.filename or "uploaded image"
        if len(data) > limit:
            raise HTTPException(413, f"{name}: over the {limit}-byte upload limit")
        return data, name

    def thumbnail(path: Path | None, size: int, missing: str, max_age: int) -> Response:
        try:
            if path is not None:
                return Response(thumbs.of(path, size), media_type="image/jpeg",
                                headers={"Cache-Control": f"max-age={max_age}", "X-Content-Type-Options": "nosniff"})
        except OSError:  # removed since it was looked up
            pass
        return JSONResponse({"detail": missing}, status_code=404)

    def present(upload: UploadFile | None) -> bool:  # a form's empty file field arrives as a nameless part
        return upload is not None and bool(upload.filename or upload.size)

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse((web / "index.html").read_text(encoding="utf-8"), headers=PAGE_HEADERS)

    @app.get("/api/galleries", response_model=list[GalleryOut], tags=["search"])
    async def galleries() -> list[dict[str, Any]]:
        """The galleries this server searches; the first is the default."""
        counts = await asyncio.gather(*(asyncio.to_thread(r.gallery.count) for r in conversations.retrievers.values()))
        names = conversations.galleries
        return [{"name": n, "count": c, "default": n == names[0]} for n, c in zip(names, counts)]

    @app.post("/api/search", response_model=SearchOut, responses=ERRORS, tags=["search"])
    async def search(text: str = Form(..., description="The modification."),
                     image: UploadFile | None = File(None, description="The reference image."),
                     ref_id: str | None = Form(None, description="The reference as a gallery item id."),
                     gallery: str | None = Form(None, description="Gallery to search."),
                     k: int | None = Form(None, ge=1, le=100, description="Results wanted.")) -> dict[str, Any]:
        """One composed query (no thread): a reference image or gallery item, changed as the text says."""
        name = gallery if gallery is not None else conversations.galleries[0]
        retriever = conversations.retriever(name)
        if present(image) == (ref_id is not None):
            raise InputError("reference", "give exactly one of an image file and ref_id")
        if ref_id is not None:
            await asyncio.to_thread(gallery_reference, ref_id, retriever.gallery)
            reference: Any = GalleryRef(ref_id)
        else:
            reference, label = await read_image(image)
            check_format(reference, label)
        result = await retriever.asearch(reference, text, k=k)
        out = public(result.to_dict())
        return {"gallery": name, "results": [h | {"thumbnail": image_url(name, h["id"])} for h in out["results"]],
                "explanation": out["explanation"]}

    @app.post("/api/threads", response_model=ThreadOut, status_code=201, responses=ERRORS, tags=["chat"])
    async def new_thread(body: NewThread | None = None) -> dict[str, Any]:
        """Open a conversation on a gallery."""
        return thread_out(await conversations.create(gallery=body.gallery if body else None))

    @app.get("/api/threads/{thread_id}", response_model=ThreadOut, responses=ERRORS, tags=["chat"])
    async def get_thread(thread_id: str) -> dict[str, Any]:
        """A conversation and its turns, oldest first."""
        return thread_out(await conversations.require(thread_id))

    @app.post("/api/threads/{thread_id}/turns", response_model=TurnOut, responses=ERRORS, tags=["chat"])
    async def add_turn(thread_id: str, text: str = Form("", description="The modification (may pick: '#2 in red')."),
                       image: UploadFile | None = File(None, description="A new reference image."),
                       ref_id: str | None = Form(None, description="A gallery item as the new reference."),
                       image_url: str | None = Form(None, description="An http(s) image URL as the new "
                                                       "reference (only when the server allows remote images)."),
                       pick: int | None = Form(None, ge=1, le=1000, description="Result of the last search to "
                                                  "start from."),
                       k: int | None = Form(None, ge=1, le=100, description="Results wanted."),
                       stream: bool = Query(False, description="Answer NDJSON: one line per pipeline stage, then "
                                                               "the turn.")) -> Any:
        """One turn of a conversation: refine the current target, pick a result, or start from a new image."""
        state = await conversations.require(thread_id)
        gallery = state["gallery"]
        if sum((present(image), ref_id is not None, image_url is not None)) > 1:
            raise InputError("reference", "give one of an image file, ref_id and image_url")
        reference = None
        if image_url is not None:
            reference = await asyncio.to_thread(conversations.remote_reference, image_url, gallery)
        elif present(image):
            data, label = await read_image(image)
            reference = await asyncio.to_thread(
                upload_reference, data, conversations.store, name=label,
                max_pixels=conversations.retriever(gallery).max_image_pixels, max_bytes=limit)
        elif ref_id is not None:
            reference = await asyncio.to_thread(gallery_reference, ref_id, conversations.retriever(gallery).gallery)
        if not stream:
            record = await conversations.send(thread_id, text, reference=reference, pick=pick, k=k)
            return turn_out(record, gallery)
        events = conversations.stream(thread_id, text, reference=reference, pick=pick, k=k)
        first = await anext(events)  # planning errors surface here, as a 4xx, before the stream starts
        return StreamingResponse(_ndjson(first, events, gallery), media_type="application/x-ndjson")

    @app.post("/api/threads/{thread_id}/undo", response_model=UndoOut, responses=ERRORS, tags=["chat"])
    async def undo(thread_id: str) -> dict[str, Any]:
        """Remove the last turn; the one before it is current again."""
        removed = await conversations.undo(thread_id)
        state = await conversations.require(thread_id)
        return {"removed": turn_out(removed, state["gallery"]), "thread": thread_out(state)}

    @app.post("/api/threads/{thread_id}/reset", response_model=ThreadOut, responses=ERRORS, tags=["chat"])
    async def reset(thread_id: str) -> dict[str, Any]:
        """Forget every turn; the thread keeps its id and gallery."""
        return thread_out(await conversations.reset(thread_id))

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

    return app


async def _ndjson(first: tuple[str, Any], events: Any, gallery: str) -> Any:
    """NDJSON lines: {"event": "stage", "stage", "summary"} per stage, then {"event": "turn", "turn"}; a failure
    after the stream started becomes {"event": "error", "detail"}."""
    def line(event: tuple[str, Any]) -> bytes:
        kind, payload = event
        if kind == "stage":
            body = {"event": "stage", "stage": payload[0], "summary": redact_text(stage_summary(*payload))}
        else:
            body = {"event": "turn", "turn": turn_out(payload, gallery)}
        return (json.dumps(body, ensure_ascii=False) + "\n").encode()

    yield line(first)
    try:
        async for event in events:
            yield line(event)
    except CirgraphError as exc:
        body = {"event": "error", "status": status_of(exc), "detail": redact_text(str(exc))}
        yield (json.dumps(body) + "\n").encode()


def _version() -> str:
    from cirgraph import __version__

    return __version__
