"""The HTTP API and the web chat (FastAPI): search, conversation threads and turns, thumbnails. OpenAPI at /docs.

    GET  /api/galleries                     the galleries served, with their item counts
    GET  /api/galleries/{name}/items?q=     gallery items whose id or caption contains q (to start from one)
    GET  /api/galleries/{name}/sample?n=    a random sample of gallery items
    POST /api/search                        multipart: text + image file or ref_id [+ gallery, k]
    POST /api/threads                       {"gallery": NAME?} -> a new thread
    GET  /api/threads/{id}                  the thread and its turns
    POST /api/threads/{id}/turns            multipart: text [+ image | ref_id | pick, k]; ?stream=true -> NDJSON
    POST /api/threads/{id}/undo             remove the last turn
    POST /api/threads/{id}/reset            forget every turn
    GET  /api/images/{gallery}/{item_id}    thumbnail of an indexed gallery item (looked up by id, never by path)
    GET  /api/uploads/{hash}                thumbnail of an uploaded reference
    GET  /login, POST /login, POST /logout  the access token's login page (only when the server has a token)

Bad input answers 4xx with {"detail": "..."}: 400 for unusable input, 401 without the access token (when one is
set), 403 for a write from another origin, 404 for an unknown thread, gallery, item or upload, 413 for a body over
the upload limit or a text over its limit, 415 for data that is not a supported image, 422 for an image that cannot
be used (corrupt, too many pixels) or a malformed field, 429 (with Retry-After) for a client over its rate. A model
that fails or cannot be loaded is 502, an unreachable gallery 503, anything unforeseen 500; always JSON.

FastAPI is imported here at module level (its signatures need the names); only `cirgraph ui` and callers of
`create_app` import this module.
"""

from __future__ import annotations

import asyncio
import json
import logging
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from cirgraph.agents.query import MAX_TEXT_CHARS, GalleryRef
from cirgraph.chat.gallery_routes import gallery_routes, image_routes, thumbnail_url
from cirgraph.chat.guard import AccessGuard, check_origins
from cirgraph.chat.limits import BodyLimit, RateLimited, RateLimiter
from cirgraph.chat.pages import add_docs, add_login
from cirgraph.chat.redact import public, redact_text
from cirgraph.chat.schemas import ErrorOut, NewThread, SearchOut, ThreadOut, TurnOut, UndoOut
from cirgraph.chat.sources import check_format, gallery_reference, upload_reference
from cirgraph.chat.store import ThreadNotFound
from cirgraph.chat.turns import stage_summary
from cirgraph.errors import (CirgraphError, ConfigError, GalleryError, ImageError, InputError, ModelError,
                             ModelNotFoundError)

if TYPE_CHECKING:
    from cirgraph.chat.threads import Conversations
    from cirgraph.stores.base import GalleryReader

log = logging.getLogger(__name__)
FORM_OVERHEAD = 64 * 1024  # multipart boundaries and text fields, on top of the image itself
ERRORS = {code: {"model": ErrorOut} for code in (400, 401, 403, 404, 413, 415, 422, 429, 502, 503)}
# The page loads only its own script, style and images, and cannot be framed.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def status_of(exc: CirgraphError) -> int:
    """The HTTP status of an SDK error."""
    from cirgraph.chat.sources import UnsupportedImage

    for kind, status in ((ThreadNotFound, 404), (UnsupportedImage, 415), (ImageError, 422), (InputError, 400),
                         (ConfigError, 400), (GalleryError, 503), (ModelError, 502), (ModelNotFoundError, 502)):
        if isinstance(exc, kind):
            return status
    return 500


def unforeseen(exc: Exception) -> str:
    """What a client is told of an error nobody foresaw: its kind and first line, without server paths."""
    reason = redact_text(str(exc).splitlines()[0][:300]) if str(exc).strip() else ""
    return f"internal error: {type(exc).__name__}" + (f": {reason}" if reason else "")


def reference_out(gallery: str, reference: dict[str, Any], items: dict[str, Any]) -> dict[str, Any]:
    """A reference with the URL of its thumbnail; a gallery item also with its captions (None URL: none)."""
    if reference["kind"] != "gallery":
        return public(reference) | {"url": f"/api/uploads/{reference['hash']}"}
    item = items.get(reference["id"])
    uri = item.uri if item is not None else None
    return public(reference) | {"url": thumbnail_url(gallery, reference["id"], uri),
                                "captions": public(item.captions[:3]) if item is not None else []}


def gallery_items(reader: GalleryReader | None, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The gallery items that `records` (turns) start from, read in one call."""
    ids = [r["reference"]["id"] for r in records if r["reference"]["kind"] == "gallery"]
    return reader.get(list(dict.fromkeys(ids))) if reader is not None and ids else {}


def turn_out(record: dict[str, Any], gallery: str, items: dict[str, Any] | None = None) -> dict[str, Any]:
    """A turn record as a client sees it: no server paths, and the URLs the web chat shows."""
    hits = [public(h) | {"thumbnail": thumbnail_url(gallery, h["id"], h.get("uri"))} for h in record["hits"]]
    reference = reference_out(gallery, record["reference"], items or {})
    return public({k: v for k, v in record.items() if k not in ("hits", "reference")}) | \
        {"hits": hits, "reference": reference}


def thread_out(state: dict[str, Any], reader: GalleryReader | None = None) -> dict[str, Any]:
    items = gallery_items(reader, state["turns"])
    return {"thread_id": state["thread_id"], "gallery": state["gallery"], "resets": state.get("resets", 0),
            "turns": [turn_out(t, state["gallery"], items) for t in state["turns"]]}


def create_app(conversations: Conversations, *, max_upload_bytes: int | None = None,
               allowed_hosts: list[str] | None = None, token: str | None = None,
               allowed_origins: list[str] | None = None, rate_limits: RateLimiter | None = None,
               max_text_chars: int = MAX_TEXT_CHARS, title: str = "cirgraph") -> FastAPI:
    """The FastAPI app over `conversations` (its galleries, store and limits), with the web chat at /.

    `allowed_hosts` limits the Host header a request may carry (None: any). A server on loopback should pass its
    loopback names: a web page cannot then reach the API through a DNS name rebound to 127.0.0.1. Writes are
    accepted from the app's own origin and `allowed_origins`; with a `token`, the API needs it (see
    cirgraph.chat.guard). `rate_limits` (None: none) limits "turns" (turns and searches), "uploads" and "logins"
    per client address; a text field over `max_text_chars` is refused with 413.
    """
    limit = max_upload_bytes if max_upload_bytes is not None else conversations.max_upload_bytes
    web = files("cirgraph.chat") / "web"
    app = FastAPI(title=title, summary="Composed image retrieval: search and multi-turn chat over indexed galleries.",
                  version=_version(), docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit, max_bytes=limit + FORM_OVERHEAD)
    app.add_middleware(AccessGuard, token=token, allowed_origins=check_origins(allowed_origins or ()))
    if allowed_hosts is not None:  # outermost: a request for another Host is refused before anything else
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    app.mount("/static", StaticFiles(directory=str(web)), name="static")
    app.state.conversations = conversations
    add_docs(app)
    if token:
        add_login(app, token, rate_limits)
    _error_handlers(app)
    checks = _Checks(limit, max_text_chars, rate_limits)

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse((web / "index.html").read_text(encoding="utf-8"), headers=PAGE_HEADERS)

    gallery_routes(app, conversations)
    _search_route(app, conversations, checks)
    _thread_routes(app, conversations, checks)
    image_routes(app, conversations)
    return app


class _Checks:
    """What every write route checks first: the client's rate, the text's size, an upload's size."""

    def __init__(self, upload_limit: int, max_text_chars: int, rates: RateLimiter | None) -> None:
        self.upload_limit = upload_limit
        self.max_text_chars = max_text_chars
        self.rates = rates

    def admit(self, request: Request, text: str | None, *, upload: bool) -> None:
        """RateLimited for a client over its rate; 413 for a text over the limit."""
        if self.rates is not None:
            client = request.client.host if request.client else "unknown"
            self.rates.take(client, ("turns", "turns and searches"), *([("uploads", "image uploads")] * upload))
        if text is not None and len(text) > self.max_text_chars:
            raise HTTPException(413, f"text: {len(text)} characters, over the {self.max_text_chars}-character limit")

    async def read_image(self, upload: UploadFile) -> tuple[bytes, str]:
        data = await upload.read(self.upload_limit + 1)
        name = upload.filename or "uploaded image"
        if len(data) > self.upload_limit:
            raise HTTPException(413, f"{name}: over the {self.upload_limit}-byte upload limit")
        return data, name


def present(upload: UploadFile | None) -> bool:
    """A form's empty file field arrives as a nameless part: that is no file."""
    return upload is not None and bool(upload.filename or upload.size)


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CirgraphError)
    async def _sdk_error(request: Any, exc: CirgraphError) -> JSONResponse:
        return JSONResponse({"detail": redact_text(str(exc))}, status_code=status_of(exc))

    @app.exception_handler(RateLimited)
    async def _too_many(request: Any, exc: RateLimited) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=429, headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Any, exc: RequestValidationError) -> JSONResponse:
        errors = jsonable_encoder(exc.errors())
        text = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg')}"
                         for e in errors)
        return JSONResponse({"detail": text, "errors": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def _unforeseen(request: Any, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": unforeseen(exc)}, status_code=500)


def _search_route(app: FastAPI, conversations: Conversations, checks: _Checks) -> None:
    @app.post("/api/search", response_model=SearchOut, responses=ERRORS, tags=["search"])
    async def search(request: Request, text: str = Form(..., description="The modification."),
                     image: UploadFile | None = File(None, description="The reference image."),
                     ref_id: str | None = Form(None, description="The reference as a gallery item id."),
                     gallery: str | None = Form(None, description="Gallery to search."),
                     k: int | None = Form(None, ge=1, le=100, description="Results wanted.")) -> dict[str, Any]:
        """One composed query (no thread): a reference image or gallery item, changed as the text says."""
        checks.admit(request, text, upload=present(image))
        name = gallery if gallery is not None else conversations.galleries[0]
        retriever = conversations.retriever(name)
        if present(image) == (ref_id is not None):
            raise InputError("reference", "give exactly one of an image file and ref_id")
        if ref_id is not None:
            await asyncio.to_thread(gallery_reference, ref_id, retriever.gallery)
            reference: Any = GalleryRef(ref_id)
        else:
            reference, label = await checks.read_image(image)
            check_format(reference, label)
        result = await retriever.asearch(reference, text, k=k)
        hits = [public(h) | {"thumbnail": thumbnail_url(name, h["id"], h.get("uri"))}
                for h in result.to_dict()["results"]]
        return {"gallery": name, "results": hits, "explanation": public(result.to_dict()["explanation"])}


def _thread_routes(app: FastAPI, conversations: Conversations, checks: _Checks) -> None:
    def reader(gallery: str) -> GalleryReader | None:
        retriever = conversations.retrievers.get(gallery)
        return retriever.gallery if retriever is not None else None

    async def out(state: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(thread_out, state, reader(state["gallery"]))

    async def one_turn(record: dict[str, Any], gallery: str) -> dict[str, Any]:
        items = await asyncio.to_thread(gallery_items, reader(gallery), [record])
        return turn_out(record, gallery, items)

    @app.post("/api/threads", response_model=ThreadOut, status_code=201, responses=ERRORS, tags=["chat"])
    async def new_thread(body: NewThread | None = None) -> dict[str, Any]:
        """Open a conversation on a gallery."""
        return await out(await conversations.create(gallery=body.gallery if body else None))

    @app.get("/api/threads/{thread_id}", response_model=ThreadOut, responses=ERRORS, tags=["chat"])
    async def get_thread(thread_id: str) -> dict[str, Any]:
        """A conversation and its turns, oldest first."""
        return await out(await conversations.require(thread_id))

    @app.post("/api/threads/{thread_id}/turns", response_model=TurnOut, responses=ERRORS, tags=["chat"])
    async def add_turn(request: Request, thread_id: str,
                       text: str = Form("", description="The modification (may pick: '#2 in red')."),
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
        checks.admit(request, text, upload=present(image) or image_url is not None)
        state = await conversations.require(thread_id)
        gallery = state["gallery"]
        if sum((present(image), ref_id is not None, image_url is not None)) > 1:
            raise InputError("reference", "give one of an image file, ref_id and image_url")
        reference = None
        if image_url is not None:
            reference = await asyncio.to_thread(conversations.remote_reference, image_url, gallery)
        elif present(image):
            data, label = await checks.read_image(image)
            reference = await asyncio.to_thread(
                upload_reference, data, conversations.store, name=label,
                max_pixels=conversations.retriever(gallery).max_image_pixels, max_bytes=checks.upload_limit)
        elif ref_id is not None:
            reference = await asyncio.to_thread(gallery_reference, ref_id, conversations.retriever(gallery).gallery)
        if not stream:
            record = await conversations.send(thread_id, text, reference=reference, pick=pick, k=k)
            return await one_turn(record, gallery)
        events = conversations.stream(thread_id, text, reference=reference, pick=pick, k=k)
        first = await anext(events)  # planning errors surface here, as a 4xx, before the stream starts
        return StreamingResponse(_ndjson(first, events, one_turn, gallery), media_type="application/x-ndjson")

    @app.post("/api/threads/{thread_id}/undo", response_model=UndoOut, responses=ERRORS, tags=["chat"])
    async def undo(thread_id: str) -> dict[str, Any]:
        """Remove the last turn; the one before it is current again."""
        removed = await conversations.undo(thread_id)
        state = await conversations.require(thread_id)
        return {"removed": await one_turn(removed, state["gallery"]), "thread": await out(state)}

    @app.post("/api/threads/{thread_id}/reset", response_model=ThreadOut, responses=ERRORS, tags=["chat"])
    async def reset(thread_id: str) -> dict[str, Any]:
        """Forget every turn; the thread keeps its id and gallery."""
        return await out(await conversations.reset(thread_id))


async def _ndjson(first: tuple[str, Any], events: Any, turn: Any, gallery: str) -> Any:
    """NDJSON lines: {"event": "stage", "stage", "summary"} per stage, then {"event": "turn", "turn"}; a failure
    after the stream started becomes {"event": "error", "status", "detail"} with the status it would have had."""
    async def line(event: tuple[str, Any]) -> bytes:
        kind, payload = event
        if kind == "stage":
            body = {"event": "stage", "stage": payload[0], "summary": redact_text(stage_summary(*payload))}
        else:
            body = {"event": "turn", "turn": await turn(payload, gallery)}
        return (json.dumps(body, ensure_ascii=False) + "\n").encode()

    try:
        yield await line(first)
        async for event in events:
            yield await line(event)
    except CirgraphError as exc:
        body = {"event": "error", "status": status_of(exc), "detail": redact_text(str(exc))}
        yield (json.dumps(body) + "\n").encode()
    except Exception as exc:  # the answer has started: the failure can only be told in the stream
        log.error("a streamed turn failed", exc_info=exc)
        yield (json.dumps({"event": "error", "status": 500, "detail": unforeseen(exc)}) + "\n").encode()


def _version() -> str:
    from cirgraph import __version__

    return __version__
