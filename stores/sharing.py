"""One embedded store, several processes: readers follow writers, and writers take turns.

Chroma's embedded client keeps a gallery's vector index in process memory: a server or SDK process that opened the
store never sees items another process adds later (its searches miss them; asking for one by id fails). So every
write through a Gallery bumps a change marker file in the store folder, and every read first compares the marker
with the one it last saw (one `os.stat`, a few microseconds); when another process changed the store, the process
reopens its Chroma client once, and each gallery reopens its collections on its next read.

Writers: `write_lock` is an exclusive lock file per store, taken by `cirgraph index` for the whole run, so
concurrent index runs on one store take turns (the later ones skip what the earlier added) and creating a new
store never races. Many writers at once, or writers on other machines, belong on a Chroma server (`chroma run`,
CIRGRAPH_CHROMA_HOST), which serves every client from one index.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

MARKER = "cirgraph-changes"
LOCK = "cirgraph-write.lock"


def store_path(client: Any) -> Path | None:
    """The folder of an embedded (persistent) Chroma client; None for a server client."""
    try:
        settings = client.get_settings()
    except Exception:  # a client of another kind
        return None
    if not getattr(settings, "is_persistent", False) or not settings.persist_directory:
        return None
    return Path(settings.persist_directory)


class StoreWatch:
    """The change marker of one embedded store, shared by every Gallery of this process on that store."""

    _watches: dict[Path, StoreWatch] = {}
    _registry_lock = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path, self.marker = path, path / MARKER
        self.generation = 0  # how many times this process reopened the store
        self.writes = 0  # how many writes this process made to the store (readers' cached facts follow it)
        self.client: Any = None  # the client opened at the latest reopen
        self._seen = self._token()
        self._lock = threading.Lock()

    @classmethod
    def of(cls, client: Any) -> StoreWatch | None:
        path = store_path(client)
        if path is None:
            return None
        with cls._registry_lock:
            watch = cls._watches.get(path)
            if watch is None:
                watch = cls._watches[path] = cls(path)
            return watch

    def _token(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.marker)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def bump(self) -> None:
        """Say that this process changed the store (after a write). Its own client already sees the change."""
        tmp = self.marker.with_name(f".{MARKER}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(f"{time.time_ns()} {os.getpid()}\n")
        os.replace(tmp, self.marker)  # a new inode: readers see a new token even within one mtime tick
        with self._lock:
            self._seen = self._token()
            self.writes += 1

    def reopen(self, reopen: Callable[[Path], Any]) -> int:
        """Reopen the store in this process now (a changed index setting applies only to a freshly opened index);
        every Gallery of the process reopens its collections on its next read."""
        with self._lock:
            self.client = reopen(self.path)
            self._seen, self.generation = self._token(), self.generation + 1
        return self.generation

    def check(self, reopen: Callable[[Path], Any]) -> int:
        """The store's generation in this process, after reopening it (`reopen(path)` -> client) when another
        process changed it since it was last seen."""
        token = self._token()
        if token == self._seen:
            return self.generation
        with self._lock:
            if token != self._seen:
                self.client = reopen(self.path)
                self._seen, self.generation = token, self.generation + 1
        return self.generation


@contextlib.contextmanager
def write_lock(path: Path, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the store's writer lock for the block; `on_wait(holder)` is called once if another process holds it."""
    import fcntl

    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait(os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
