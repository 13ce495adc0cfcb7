"""Turning a caller's query into validated graph input, before any model is called.

A reference may be a file path, image bytes, a PIL image, or a gallery id (`GalleryRef`, or a string that is not
an existing file but is a gallery id); `local_source` tells which, for the SDK and the terminal chat alike. Bad
images and empty or oversized modification texts raise InputError naming the input; nothing reaches a model until
the query is known to be usable.
"""

from __future__ import annotations

import io
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from cirgraph.errors import InputError
from cirgraph.tools.images import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    content_hash,
    decode_image,
    read_image_bytes,
)

if TYPE_CHECKING:
    from PIL.Image import Image

    from cirgraph.agents.state import QueryInput, Reference
    from cirgraph.stores.base import GalleryReader

MAX_TEXT_CHARS = 2000


@dataclass(frozen=True, slots=True)
class GalleryRef:
    """A reference given as the id of a gallery item."""

    id: str


ReferenceSource = Union[str, os.PathLike, bytes, "Image", GalleryRef]


def check_text(text: Any, *, subject: str = "modification text", limit: int = MAX_TEXT_CHARS) -> str:
    """The stripped text, or InputError when it is not a string, empty, or longer than `limit` characters."""
    if not isinstance(text, str):
        raise InputError(subject, f"expected a string, got {type(text).__name__}")
    stripped = " ".join(text.split())
    if not stripped:
        raise InputError(subject, "is empty")
    if len(stripped) > limit:
        raise InputError(subject, f"is {len(stripped)} characters long, over the {limit}-character limit")
    return stripped


@dataclass(frozen=True, slots=True)
class ImageBytes:
    """A reference's encoded image: the bytes a caller gave, or a file's bytes, not decoded yet."""

    data: bytes
    name: str  # what an error calls it: the path, or "<subject> bytes"
    file_name: str | None = None  # the file's own name when it was read from a path


def local_source(source: ReferenceSource, gallery: GalleryReader, *, subject: str = "reference",
                 max_bytes: int = DEFAULT_MAX_BYTES) -> GalleryRef | Image | ImageBytes:
    """What a local caller's (SDK, terminal) reference is: a gallery item (a GalleryRef, or a string that names an
    item and is not an existing file), a PIL image, or image bytes (given, or read from a file path). Callers on
    the other side of a network never come here: paths on this machine are theirs to name only locally.
    InputError or ImageError naming the input when it is none of these."""
    from PIL import Image as PILImage

    if isinstance(source, (GalleryRef, PILImage.Image)):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        return ImageBytes(bytes(source), f"{subject} bytes")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            exists = path.exists()
        except (OSError, ValueError):  # a NUL byte or an over-long name
            raise InputError(f"{subject} {str(source)[:80]!r}", "not a usable file name") from None
        if isinstance(source, str) and not exists and source and source in gallery.get([source]):
            return GalleryRef(source)
        if isinstance(source, str) and not exists and path.suffix.lower() not in IMAGE_SUFFIXES:
            raise InputError(f"{subject} {source!r}", f"no such file, and no item with this id in gallery "
                                                      f"{gallery.name!r}")
        return ImageBytes(read_image_bytes(path, max_bytes=max_bytes), str(path), path.name)
    raise InputError(subject, f"unsupported type {type(source).__name__} (expected a path, bytes, a PIL image "
                              "or a gallery id)")


def resolve_reference(source: ReferenceSource, gallery: GalleryReader, *,
                      max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Reference, list[str]]:
    """Validate the reference and return it with its gallery captions: those of the item it names, or of the item
    stored under its content hash (an image that is also in the gallery); empty otherwise."""
    found = local_source(source, gallery)
    if isinstance(found, GalleryRef):
        return _gallery_reference(found.id, gallery, max_pixels)
    if isinstance(found, ImageBytes):
        _decode_once(found.data, found.name, max_pixels)
        digest = content_hash(found.data)
        return {"id": None, "hash": digest, "data": found.data}, _stored_captions(digest, gallery)
    ref = _image_reference(found, max_pixels)
    return ref, _stored_captions(ref["hash"], gallery)


def _stored_captions(digest: str, gallery: GalleryReader) -> list[str]:
    """Captions of the gallery item stored under this content hash (galleries keyed by content), if any."""
    item = gallery.get([digest]).get(digest)
    return list(item.captions) if item is not None else []


def _image_reference(img: Image, max_pixels: int) -> Reference:
    from cirgraph.tools.images import load_image

    rgb = load_image(img, max_pixels=max_pixels)
    buf = io.BytesIO()
    rgb.save(buf, format="PPM")  # lossless and ~30x faster to write than PNG; the bytes only travel in state
    data = buf.getvalue()
    _remember(rgb, content_hash(data))
    return {"id": None, "hash": content_hash(data), "data": data}


def _gallery_reference(item_id: str, gallery: GalleryReader, max_pixels: int) -> tuple[Reference, list[str]]:
    items = gallery.get([item_id])
    if item_id not in items:
        raise InputError(f"reference id {item_id!r}", f"no such item in gallery {gallery.name!r}")
    item = items[item_id]
    from cirgraph.agents.services import local_path

    data, path = None, local_path(item.uri)
    if path is not None and path.is_file():
        data = read_image_bytes(path)
        _remember(decode_image(data, name=str(path), max_pixels=max_pixels), content_hash(data))
    return {"id": item_id, "hash": content_hash(data) if data else item_id, "data": data}, list(item.captions)


def build_input(reference: ReferenceSource, text: str, gallery: GalleryReader, *, caption: str | None = None,
                max_rounds: int = 1, max_pixels: int = DEFAULT_MAX_PIXELS,
                score_ids: Sequence[str] = ()) -> QueryInput:
    """Validated graph input. A caller's caption wins over gallery captions; either one skips captioning."""
    modification = check_text(text)
    ref, gallery_captions = resolve_reference(reference, gallery, max_pixels=max_pixels)
    state: QueryInput = {"modification": modification, "reference": ref, "max_rounds": max_rounds}
    if score_ids:
        if isinstance(score_ids, str) or not all(isinstance(x, str) and x for x in score_ids):
            raise InputError("score_ids", "must be a list of gallery ids (non-empty strings)")
        state["score_ids"] = list(dict.fromkeys(score_ids))
    if caption is not None:
        state["caption"], state["caption_source"] = check_text(caption, subject="caption"), "given"
    elif gallery_captions:
        state["caption"], state["caption_source"] = gallery_captions[0], "gallery"
    return state


# Decoded reference images by content hash: the input check decodes once; caption, retrieve and rerank reuse it.
_decoded: OrderedDict[str, Image] = OrderedDict()
_decoded_lock = threading.Lock()
_KEEP = 32


def _remember(img: Image, key: str) -> None:
    with _decoded_lock:
        _decoded[key] = img
        _decoded.move_to_end(key)
        while len(_decoded) > _KEEP:
            _decoded.popitem(last=False)


def _decode_once(data: bytes, name: str, max_pixels: int) -> None:
    """Decode (and so validate) reference bytes unless an image with their content hash was decoded already, e.g.
    by the CLI's input check."""
    key = content_hash(data)
    with _decoded_lock:
        img = _decoded.get(key)
    if img is None or img.width * img.height > max_pixels:
        _remember(decode_image(data, name=name, max_pixels=max_pixels), key)


def check_reference_bytes(data: bytes, *, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Validate reference bytes before any model is loaded; the search reuses the decoded image."""
    _decode_once(data, name, max_pixels)


def reference_image(ref: Reference) -> Image | None:
    """The decoded reference image, or None when only a gallery id without a readable image is known."""
    if not ref["data"]:
        return None
    with _decoded_lock:
        img = _decoded.get(ref["hash"])
    if img is None:
        img = decode_image(ref["data"], name="reference")
        _remember(img, ref["hash"])
    return img
