"""ChatStore and reference sources: uploads by content hash only, format and pixel checks, no remote fetching
unless enabled, one store usable from several event loops."""

from __future__ import annotations

import asyncio
import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from cirgraph.agents.query import GalleryRef
from cirgraph.chat.sources import UnsupportedImage, to_reference
from cirgraph.chat.store import ChatStore
from cirgraph.chat.threads import Conversations
from cirgraph.errors import ImageError, InputError


def png(size: tuple[int, int] = (8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def test_uploads_are_kept_by_content_hash(store: ChatStore) -> None:
    digest = store.put_upload(png())
    assert store.put_upload(png()) == digest and store.get_upload(digest) == png()
    assert store.upload_path(digest) == store.uploads_dir / digest
    for bad in ("../checkpoints.sqlite", "/etc/passwd", digest.upper(), digest + "/..", "", "a" * 31):
        assert store.upload_path(bad) is None
    with pytest.raises(ImageError, match="not stored"):
        store.get_upload("0" * 32)


def test_references_are_validated_before_they_are_kept(store: ChatStore, world) -> None:
    ref = to_reference(png(), store, world.gallery)
    assert ref["kind"] == "upload" and store.upload_path(ref["hash"]) is not None
    assert to_reference(GalleryRef("red-dress"), store, world.gallery) == {"kind": "gallery", "id": "red-dress"}
    assert to_reference("red-dress", store, world.gallery) == {"kind": "gallery", "id": "red-dress"}
    assert to_reference(Image.new("RGB", (4, 4)), store, world.gallery)["kind"] == "upload"
    with pytest.raises(UnsupportedImage, match="not an image in a supported format"):
        to_reference(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", store, world.gallery)
    with pytest.raises(UnsupportedImage):
        to_reference(b"<html>hello</html>", store, world.gallery)
    with pytest.raises(ImageError, match="pixel cap"):
        to_reference(png((100, 100)), store, world.gallery, max_pixels=1000)
    with pytest.raises(ImageError, match="upload limit"):
        to_reference(png(), store, world.gallery, max_bytes=10)
    with pytest.raises(InputError, match="no such item"):
        to_reference(GalleryRef("../../etc/passwd"), store, world.gallery)
    with pytest.raises(ImageError, match="no such file"):
        to_reference("/nonexistent/dir/image.png", store, world.gallery)
    assert sorted(p.name for p in store.uploads_dir.iterdir()) == sorted({ref["hash"], to_reference(
        Image.new("RGB", (4, 4)), store, world.gallery)["hash"]})


class _Images(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = png()
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_remote_images_are_fetched_only_when_enabled(store: ChatStore, world) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/dress.png"
    try:
        with pytest.raises(InputError, match="remote images are not fetched"):
            to_reference(url, store, world.gallery)
        ref = to_reference(url, store, world.gallery, allow_remote=True)
        assert ref["name"] == "dress.png" and store.get_upload(ref["hash"]) == png()
        with pytest.raises(ImageError, match="upload limit"):
            to_reference(url, store, world.gallery, allow_remote=True, max_bytes=20)
    finally:
        server.shutdown()
        server.server_close()


def test_one_store_serves_several_event_loops(store: ChatStore, world) -> None:
    """asyncio.run twice (two loops), plus a sync session's private loop, on the same store."""
    conv = Conversations(store, world.retriever)
    asyncio.run(conv.send("loops", "make it red", image=GalleryRef("blue-dress"), create=True))
    asyncio.run(conv.send("loops", "with long sleeves"))
    from cirgraph.chat.session import ChatSession

    with ChatSession("loops", conversations=conv) as chat:
        assert [t.n for t in chat.history()] == [1, 2]
        assert chat.send("as a shirt").n == 3


def test_an_unusable_checkpoint_path_is_named(tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite").mkdir()
    with pytest.raises(InputError, match="dir.sqlite"):
        ChatStore(tmp_path / "dir.sqlite")
