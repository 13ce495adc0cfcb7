"""A disk cache for model calls: a SQLite file, and a ChatModel wrapper that answers repeated requests from it.

Evaluation runs and prompt iterations send the same requests again and again; caching them makes reruns free and
deterministic. Only successful answers are stored. Each write is one SQLite transaction, so a killed run leaves
either the whole entry or none; WAL mode lets readers run beside the writer.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from cirgraph.errors import InputError, ModelOutputError
from cirgraph.tools.images import image_fingerprint
from cirgraph.tools.messages import Message
from cirgraph.tools.protocols import ChatModel
from cirgraph.tools.structured import json_schema
from cirgraph.tools.usage import CallRecord, record

CHAT_NAMESPACE = "chat"
# Requests whose answer was invalid after every retry, at temperature 0: asking again gets the same answer (a small
# model that rambles to the token cap does so every time), so a rerun is told at once instead of re-asking.
FAILED_NAMESPACE = "chat-invalid"


class CallCache:
    """Key-value store in one SQLite file, in namespaces; safe to share between asyncio tasks and threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path) if str(path) != ":memory:" else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection behind a lock: sqlite3 connections are not safe for concurrent use by themselves.
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS entries (namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
                " created REAL NOT NULL, PRIMARY KEY (namespace, key))"
            )
        except sqlite3.Error as exc:
            raise InputError(str(path), f"cannot be used as a call cache ({exc})") from None

    def __repr__(self) -> str:
        return f"CallCache({str(self.path) if self.path else ':memory:'!r})"

    def get(self, key: str, namespace: str = CHAT_NAMESPACE) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM entries WHERE namespace = ? AND key = ?", (namespace, key)
            ).fetchone()
        return row[0] if row else None

    def put(self, key: str, value: str, namespace: str = CHAT_NAMESPACE) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO entries (namespace, key, value, created) VALUES (?, ?, ?, ?)",
                (namespace, key, value, time.time()),
            )

    def get_json(self, namespace: str, key: str) -> Any | None:
        """A JSON value stored with put_json, or None when absent."""
        raw = self.get(key, namespace)
        return None if raw is None else json.loads(raw)

    def put_json(self, namespace: str, key: str, value: Any) -> None:
        self.put(key, json.dumps(value, ensure_ascii=False, sort_keys=True), namespace)

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]

    def count(self, namespace: str) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM entries WHERE namespace = ?", (namespace,)).fetchone()[0]

    def clear(self, namespace: str | None = None) -> None:
        """Delete every entry, or only those of one namespace."""
        with self._lock:
            if namespace is None:
                self._db.execute("DELETE FROM entries")
            else:
                self._db.execute("DELETE FROM entries WHERE namespace = ?", (namespace,))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> CallCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def hash_key(payload: Any) -> str:
    """sha256 (hex) of a JSON-serialisable value in canonical form."""
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chat_key(
    model_name: str, messages: Sequence[Message], schema: type[BaseModel] | None, temperature: float,
    max_tokens: int | None,
) -> str:
    """The cache key of one chat request: model, every text part, image fingerprints, schema and sampling."""
    turns = [
        [m.role, [["text", p] if isinstance(p, str) else ["image", image_fingerprint(p)] for p in m.parts]]
        for m in messages
    ]
    schema_part = None if schema is None else [schema.__name__, json_schema(schema)]
    return hash_key({"model": model_name, "messages": turns, "schema": schema_part,
                     "temperature": float(temperature), "max_tokens": max_tokens})


class CachedChatModel:
    """Implements ChatModel: answers from `cache` when the same request was answered before, else asks `inner`."""

    def __init__(self, inner: ChatModel, cache: CallCache) -> None:
        self.inner = inner
        self.cache = cache
        self.name = inner.name

    def __repr__(self) -> str:
        return f"CachedChatModel({self.inner!r}, {self.cache!r})"

    async def complete(
        self, messages: Sequence[Message], *, schema: type[BaseModel] | None = None, temperature: float = 0.0,
        max_tokens: int | None = None,
    ) -> Any:
        started = time.perf_counter()
        key = chat_key(self.name, messages, schema, temperature, max_tokens)
        hit = self._lookup(key, schema)
        if hit is not None:
            record(CallRecord(model=self.name, kind="chat", latency_s=time.perf_counter() - started, attempts=0,
                              mode="cache", cached=True))
            return hit
        failed = self.cache.get_json(FAILED_NAMESPACE, key) if temperature == 0 else None
        if failed is not None:
            record(CallRecord(model=self.name, kind="chat", latency_s=time.perf_counter() - started, attempts=0,
                              mode="cache", cached=True, ok=False, error="ModelOutputError"))
            raise ModelOutputError(self.name, f"{failed['reason']} (remembered: this request failed the same way "
                                              "before; clear the cache's chat-invalid entries to ask again)")
        try:
            result = await self.inner.complete(messages, schema=schema, temperature=temperature,
                                               max_tokens=max_tokens)
        except ModelOutputError as exc:
            if temperature == 0:
                self.cache.put_json(FAILED_NAMESPACE, key, {"reason": exc.reason})
            raise
        value = result.model_dump_json() if isinstance(result, BaseModel) else str(result)
        self.cache.put(key, value)
        return result

    def _lookup(self, key: str, schema: type[BaseModel] | None) -> Any | None:
        raw = self.cache.get(key)
        if raw is None or schema is None:
            return raw
        try:
            return schema.model_validate_json(raw)
        except ValidationError:  # the schema's validators changed since the entry was written: a miss
            return None
