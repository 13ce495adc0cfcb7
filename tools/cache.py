"""A disk cache for model calls: a SQLite file, and a ChatModel wrapper that answers repeated requests from it.

Evaluation runs and prompt iterations send the same requests again and again; caching them makes reruns free and
deterministic. Only successful answers are stored, each with what the original call cost (tokens, seconds), so a
rerun served from the cache still reports the model cost of its answers. Each write is one SQLite transaction, so
a killed run leaves either the whole entry or none; WAL mode lets readers run beside the writer. Keys carry
CACHE_VERSION: a change to what an entry means gets a new version, and old entries are never misread.
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
from cirgraph.tools.choices import Choice
from cirgraph.tools.usage import CallRecord, collect_calls, record

CHAT_NAMESPACE = "chat"
# 2: entries are {"reply", "cost"} envelopes; keys name the kind of call (complete / classify).
CACHE_VERSION = 2
# Requests whose answer was invalid after every retry, at temperature 0: asking again gets the same answer (a small
# model that rambles to the token cap does so every time), so a rerun is told at once instead of re-asking. Such a
# failure may also have been a passing fault of the server, so it is kept for FAILURE_TTL_S only, and an eval run
# with --fresh forgets them all.
FAILED_NAMESPACE = "chat-invalid"
FAILURE_TTL_S = 6 * 3600


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

    def get_json(self, namespace: str, key: str, *, max_age_s: float | None = None) -> Any | None:
        """A JSON value stored with put_json, or None when absent (or older than `max_age_s`)."""
        with self._lock:
            row = self._db.execute(
                "SELECT value, created FROM entries WHERE namespace = ? AND key = ?", (namespace, key)
            ).fetchone()
        if row is None or (max_age_s is not None and time.time() - row[1] > max_age_s):
            return None
        return json.loads(row[0])

    def put_json(self, namespace: str, key: str, value: Any) -> None:
        self.put(key, json.dumps(value, ensure_ascii=False, sort_keys=True), namespace)

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]

    def count(self, namespace: str) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM entries WHERE namespace = ?", (namespace,)).fetchone()[0]

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per namespace: entries, bytes of stored values, and the oldest and newest write (Unix seconds)."""
        with self._lock:
            rows = self._db.execute("SELECT namespace, COUNT(*), SUM(LENGTH(value)), MIN(created), MAX(created) "
                                    "FROM entries GROUP BY namespace ORDER BY namespace").fetchall()
        return {ns: {"entries": n, "bytes": size or 0, "oldest": oldest, "newest": newest}
                for ns, n, size, oldest, newest in rows}

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
    max_tokens: int | None, *, options: Sequence[str] = (),
) -> str:
    """The cache key of one chat request: model, every text part, image fingerprints, schema, sampling, and for a
    closed question (classify) its options."""
    turns = [
        [m.role, [["text", p] if isinstance(p, str) else ["image", image_fingerprint(p)] for p in m.parts]]
        for m in messages
    ]
    schema_part = None if schema is None else [schema.__name__, json_schema(schema)]
    return hash_key({"v": CACHE_VERSION, "model": model_name, "messages": turns, "schema": schema_part,
                     "temperature": float(temperature), "max_tokens": max_tokens,
                     **({"classify": list(options)} if options else {})})


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
        key = chat_key(self.name, messages, schema, temperature, max_tokens)

        async def ask() -> str:
            result = await self.inner.complete(messages, schema=schema, temperature=temperature,
                                               max_tokens=max_tokens)
            return result.model_dump_json() if isinstance(result, BaseModel) else str(result)

        def read(raw: str) -> Any:
            return raw if schema is None else schema.model_validate_json(raw)

        return await self._cached(key, ask, read, remember_failure=temperature == 0)

    async def classify(self, messages: Sequence[Message], options: Sequence[str]) -> Choice:
        """A closed question (cirgraph.tools.choices), answered from the cache when it was asked before."""
        from cirgraph.tools.choices import classify

        key = chat_key(self.name, messages, None, 0.0, 1, options=options)

        async def ask() -> str:
            return json.dumps((await classify(self.inner, messages, options)).to_dict())

        return await self._cached(key, ask, lambda raw: Choice.from_dict(json.loads(raw)), remember_failure=True)

    async def _cached(self, key: str, ask: Any, read: Any, *, remember_failure: bool) -> Any:
        """The answer stored under `key` (its original cost recorded as a cached call), else `ask()`'s, stored
        with what it cost. A deterministic request whose output was invalid is remembered and not asked again."""
        started = time.perf_counter()
        entry = self.cache.get_json(CHAT_NAMESPACE, key)
        if entry is not None:
            try:
                value = read(entry["reply"])
            except (ValidationError, KeyError, TypeError, ValueError):  # validators changed since: a miss
                value = None
            if value is not None:
                cost = entry.get("cost") or {}
                record(CallRecord(model=self.name, kind="chat", latency_s=time.perf_counter() - started, attempts=0,
                                  mode="cache", cached=True, prompt_tokens=cost.get("prompt_tokens", 0),
                                  completion_tokens=cost.get("completion_tokens", 0),
                                  cost_s=cost.get("seconds", 0.0)))
                return value
        failed = self.cache.get_json(FAILED_NAMESPACE, key, max_age_s=FAILURE_TTL_S) if remember_failure else None
        if failed is not None:
            record(CallRecord(model=self.name, kind="chat", latency_s=time.perf_counter() - started, attempts=0,
                              mode="cache", cached=True, ok=False, error="ModelOutputError"))
            raise ModelOutputError(self.name, f"{failed['reason']} (remembered: this request failed the same way "
                                              "within the last hours; `cirgraph cache clear --namespace "
                                              "chat-invalid`, or an eval run with --fresh, asks again)")
        with collect_calls() as calls:
            try:
                raw = await ask()
            except ModelOutputError as exc:
                if remember_failure:
                    self.cache.put_json(FAILED_NAMESPACE, key, {"reason": exc.reason})
                raise
        cost = {"prompt_tokens": calls.prompt_tokens, "completion_tokens": calls.completion_tokens,
                "seconds": round(sum(r.latency_s for r in calls.records if not r.cached), 4)}
        self.cache.put_json(CHAT_NAMESPACE, key, {"reply": raw, "cost": cost})
        return read(raw)
