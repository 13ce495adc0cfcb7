"""A user's reference image -> the plain record a conversation keeps: a gallery item, or a validated upload.

Accepted from a local caller (SDK, terminal chat): a gallery id (`GalleryRef`, or a string naming an item), a file
path, image bytes, a PIL image, and an http(s) URL only when remote fetching is enabled. A remote caller (the HTTP
API) gets `upload_reference`, `gallery_reference` and `remote_reference` only: never a path on the server's disk.
Every image is decoded once here, under a byte and a pixel cap, before it is stored; a URL is never fetched unless
the caller opted in.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from cirgraph.agents.query import GalleryRef, ImageBytes, local_source
from cirgraph.errors import ImageError, InputError
from cirgraph.tools.images import ALLOWED_FORMATS, DEFAULT_MAX_PIXELS, decodable_formats, decode_image, load_image

if TYPE_CHECKING:
    from cirgraph.chat.store import ChatStore
    from cirgraph.stores.base import GalleryReader

DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
REMOTE_TIMEOUT_S = 15.0


class UnsupportedImage(ImageError):
    """Data that is not an image in one of the accepted formats."""


def check_format(data: bytes, name: str) -> str:
    """The image format of `data` (by content, never by name or declared type), one of tools.images.ALLOWED_FORMATS;
    UnsupportedImage otherwise."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with PILImage.open(io.BytesIO(data), formats=decodable_formats()) as img:
            return img.format
    except PILImage.DecompressionBombError as exc:
        raise ImageError(name, f"decompression bomb refused ({exc})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise UnsupportedImage(name, f"not an image in a supported format ({', '.join(sorted(ALLOWED_FORMATS))})") \
            from None


def display_name(name: str | None) -> str | None:
    """A client-supplied file name reduced to its last component (it is only ever shown, never opened)."""
    if not name:
        return None
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return base[:100] or None


def gallery_reference(item_id: str, gallery: GalleryReader) -> dict[str, Any]:
    """A reference to a gallery item; InputError when the gallery has no such item."""
    if not isinstance(item_id, str) or not item_id or item_id not in gallery.get([item_id]):
        raise InputError(f"reference id {str(item_id)[:80]!r}", f"no such item in gallery {gallery.name!r}")
    return {"kind": "gallery", "id": item_id}


def upload_reference(data: bytes, store: ChatStore, *, name: str | None = None,
                     max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES) -> dict[str, Any]:
    """Validate image bytes (size, pixel cap, decodable), keep them in the store, and reference them by hash."""
    label = display_name(name) or "uploaded image"
    if len(data) > max_bytes:
        raise ImageError(label, f"{len(data)} bytes, over the {max_bytes}-byte upload limit")
    check_format(data, label)
    decode_image(data, name=label, max_pixels=max_pixels)
    return {"kind": "upload", "hash": store.put_upload(data), "name": display_name(name)}


def fetch_remote(url: str, *, max_bytes: int, timeout: float = REMOTE_TIMEOUT_S) -> bytes:
    """GET an http(s) URL, at most `max_bytes`; ImageError naming the URL on any failure."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": "cirgraph"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # scheme checked by caller
            data = response.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        raise ImageError(url, f"the server answered {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ImageError(url, f"could not be fetched ({getattr(exc, 'reason', exc)})") from None
    if len(data) > max_bytes:
        raise ImageError(url, f"larger than the {max_bytes}-byte upload limit")
    return data


def _is_url(value: str) -> bool:
    return value.lower().startswith(("http://", "https://"))


def remote_reference(url: str, store: ChatStore, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                     max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, allow_remote: bool = False) -> dict[str, Any]:
    """The reference for an http(s) `url` given by a remote client: never a path on this machine.

    Anything but an http(s) URL is refused before any file system call, with one answer for every such value, so
    a client can neither read the server's files nor learn whether a path exists.
    """
    if not isinstance(url, str) or not _is_url(url.strip()):
        raise InputError("image_url", "only an http(s) URL is accepted here; send a local image as a file upload")
    url = url.strip()
    if not allow_remote:
        raise InputError("image_url", "remote images are not fetched unless enabled "
                                      "(`cirgraph ui --allow-remote-images`)")
    data = fetch_remote(url, max_bytes=max_bytes)
    return upload_reference(data, store, name=url.rsplit("/", 1)[-1], max_pixels=max_pixels, max_bytes=max_bytes)


def to_reference(image: Any, store: ChatStore, gallery: GalleryReader, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, allow_remote: bool = False) -> dict[str, Any]:
    """The reference record for `image` from a local caller (agents.query.local_source decides what it is; an
    http(s) URL is fetched only with `allow_remote`); InputError/ImageError naming the input when it cannot be
    used."""
    if isinstance(image, str) and _is_url(image):
        if not allow_remote:
            raise InputError(f"image {image[:80]!r}", "remote images are not fetched unless enabled "
                                                     "(allow_remote=True, or `cirgraph ui --allow-remote-images`)")
        return remote_reference(image, store, max_pixels=max_pixels, max_bytes=max_bytes, allow_remote=True)
    found = local_source(image, gallery, subject="image", max_bytes=max_bytes)
    if isinstance(found, GalleryRef):
        return gallery_reference(found.id, gallery)
    if isinstance(found, ImageBytes):
        return upload_reference(found.data, store, name=found.file_name, max_pixels=max_pixels, max_bytes=max_bytes)
    buf = io.BytesIO()
    load_image(found, max_pixels=max_pixels).save(buf, format="PNG")
    return upload_reference(buf.getvalue(), store, max_pixels=max_pixels, max_bytes=max_bytes)
