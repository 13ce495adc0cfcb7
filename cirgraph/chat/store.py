"""Where conversations live: a LangGraph checkpointer over one SQLite file, and the images users uploaded.

Thread state is checkpointed by LangGraph's SqliteSaver, so a conversation survives a restart and another process
can continue it. AsyncSqliteSaver is not used: it binds to the event loop that opened it (and its worker thread
keeps a process alive until closed), while a store here serves the SDK's sync calls (a private loop), async callers
(their loop) and the web server (uvicorn's loop). One sqlite3 connection, guarded by SqliteSaver's lock, serves them
all; the async methods run the sync ones in a worker thread.

Uploaded reference images are kept by content hash beside the checkpoints (the state holds only the hash), so a
resumed thread still has its reference and checkpoints stay small.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langgraph.checkpoint.sqlite import SqliteSaver

from cirgraph.errors import ImageError, InputError
from cirgraph.tools.images import content_hash

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata, CheckpointTuple

    from cirgraph.settings import Settings

_HASH = re.compile(r"[0-9a-f]{32}")
_THREAD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


class ThreadNotFound(InputError):
    """No conversation is stored under this thread id."""

    def __init__(self, thread_id: str) -> None:
        super().__init__(f"thread {thread_id!r}", "no such conversation")


def check_thread_id(thread_id: str) -> str:
    """The id, or InputError: 1-128 characters of letters, digits and _ . : - (it ends up in URLs and SQL keys)."""
    if not isinstance(thread_id, str) or not _THREAD_ID.fullmatch(thread_id):
        raise InputError(f"thread id {str(thread_id)[:40]!r}",
                         "expected 1-128 letters, digits or _ . : - (starting with a letter or digit)")
    return thread_id


class ThreadedSqliteSaver(SqliteSaver):
    """SqliteSaver whose async methods run the sync ones in a worker thread: usable from any event loop."""

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
                    before: RunnableConfig | None = None, limit: int | None = None) -> AsyncIterator[CheckpointTuple]:
        items = await asyncio.to_thread(lambda: list(self.list(config, filter=filter, before=before, limit=limit)))
        for item in items:
            yield item

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
                   new_versions: ChannelVersions) -> RunnableConfig:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                          task_path: str = "") -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)


class ChatStore:
    """Checkpoints (SQLite at `path`) and uploaded images (files under `uploads_dir`, named by content hash)."""

    def __init__(self, path: str | os.PathLike, *, uploads_dir: str | os.PathLike | None = None) -> None:
        self.path = Path(path).expanduser()
        self.uploads_dir = Path(uploads_dir) if uploads_dir is not None else self.path.parent / "uploads"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # check_same_thread=False is safe: SqliteSaver serialises every use of the connection with its lock.
            conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        except sqlite3.Error as exc:
            raise InputError(f"checkpoint file {str(self.path)!r}", f"cannot be opened ({exc})") from None
        self.saver = ThreadedSqliteSaver(conn)
        self.saver.setup()  # tables and WAL mode, once, before any event loop needs them

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatStore:
        """The store under CIRGRAPH_HOME: checkpoints.sqlite and uploads/."""
        return cls(settings.checkpoints_path, uploads_dir=settings.home / "uploads")

    # -- uploads ---------------------------------------------------------------------------------------------------

    def put_upload(self, data: bytes) -> str:
        """Keep image bytes (already validated by the caller) and return their content hash."""
        digest = content_hash(data)
        target = self.uploads_dir / digest
        if not target.exists():
            self.uploads_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.uploads_dir, prefix=".upload-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)  # atomic: a concurrent reader never sees half a file
        return digest

    def upload_path(self, digest: str) -> Path | None:
        """The stored file of an upload, or None for an unknown or malformed hash (never a path outside uploads)."""
        if not isinstance(digest, str) or not _HASH.fullmatch(digest):
            return None
        path = self.uploads_dir / digest
        return path if path.is_file() else None

    def get_upload(self, digest: str) -> bytes:
        """The bytes of an upload; ImageError when it is no longer stored."""
        path = self.upload_path(digest)
        if path is None:
            raise ImageError(f"uploaded image {digest!r}", f"not stored under {self.uploads_dir}")
        return path.read_bytes()

    def close(self) -> None:
        """Close the SQLite connection (the store cannot be used afterwards)."""
        with self.saver.lock:
            self.saver.conn.close()

    def __enter__(self) -> ChatStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
