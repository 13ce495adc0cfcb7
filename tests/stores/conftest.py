"""Fixtures of the store tests: real photos, Chroma clients (embedded, and a real `chroma run` server), galleries.

Every gallery test runs against both an embedded store and a Chroma server process started once per session on
127.0.0.1. Chroma caches clients per path in a process, so the cache is cleared after each test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry", "colorwheel", "coins")


def write_photos(folder: Path, names: tuple[str, ...] = PHOTOS, suffix: str = ".jpg") -> list[Path]:
    """Save scikit-image's bundled photos (no download) as image files; returns their paths."""
    import skimage.data
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = folder / f"{name}{suffix}"
        Image.fromarray(getattr(skimage.data, name)()).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def make_photos():
    """`write_photos(folder, names=PHOTOS, suffix=".jpg")`, for tests that need photos in several places."""
    return write_photos


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder of 8 distinct real photos (JPEG)."""
    folder = tmp_path / "photos"
    write_photos(folder)
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chroma_executable() -> str | None:
    local = Path(sys.executable).parent / "chroma"
    return str(local) if local.exists() else shutil.which("chroma")


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory):
    """(host, port) of a `chroma run` server on a free port, waited for by heartbeat, always torn down."""
    exe = _chroma_executable()
    if exe is None:
        pytest.skip("the chroma CLI is not installed")
    data = tmp_path_factory.mktemp("chroma-server")
    port = _free_port()
    log = open(data.parent / f"chroma-server-{port}.log", "w+b")  # closed at teardown
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    proc = subprocess.Popen([exe, "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"chroma server did not start (exit {proc.poll()}): {log.read()[-2000:]!r}")
            time.sleep(0.2)
        yield "127.0.0.1", port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(params=["embedded", pytest.param("server", marks=pytest.mark.server)])
def client(request: pytest.FixtureRequest, tmp_path: Path):
    """A Chroma client: an embedded store in a temp folder, or the session's server."""
    from cirgraph.stores.chroma import clear_client_cache, embedded_client, server_client

    if request.param == "embedded":
        c = embedded_client(tmp_path / "store")
    else:
        c = server_client(*request.getfixturevalue("chroma_server"))
    yield c
    clear_client_cache()


@pytest.fixture
def embedded(tmp_path: Path):
    """An embedded client only (tests whose subject is not the transport)."""
    from cirgraph.stores.chroma import clear_client_cache, embedded_client

    yield embedded_client(tmp_path / "store")
    clear_client_cache()


@pytest.fixture
def gallery_name() -> str:
    """A fresh gallery name (the server is shared by the whole session)."""
    return f"g{uuid.uuid4().hex[:10]}"


@pytest.fixture(autouse=True)
def _no_default_embedding_function(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chroma's default embedding function downloads a model when it embeds: any use of it fails the test."""
    from chromadb.api.types import DefaultEmbeddingFunction

    def refuse(self, input):  # chromadb's signature
        raise AssertionError("Chroma's default embedding function was used")

    monkeypatch.setattr(DefaultEmbeddingFunction, "__call__", refuse)
