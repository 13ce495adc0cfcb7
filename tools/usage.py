"""Per-call records of model usage (tokens, latency, attempts) and scoped collection.

Clients call `record(...)` after each call; callers that want the calls of one query or one run wrap the work in
`collect_calls()`. Scopes nest and follow asyncio tasks (a ContextVar), so concurrent queries never mix records.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field


@dataclass(slots=True)
class CallRecord:
    """One model call as the client saw it."""

    model: str
    kind: str  # "chat", "embed_images", "embed_texts"
    latency_s: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 1
    mode: str = ""  # how structured output was obtained: json_schema, json_object, instructions, text
    cached: bool = False
    cost_s: float = 0.0  # a cached answer: the seconds its original call took (its tokens are the original ones)
    ok: bool = True
    error: str | None = None
    stage: str | None = None
    started_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(slots=True)
class CallLog:
    """The records of one scope, with totals."""

    records: list[CallRecord] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return sum(1 for r in self.records if not r.cached)

    @property
    def prompt_tokens(self) -> int:
        return sum(r.prompt_tokens for r in self.records if not r.cached)

    @property
    def completion_tokens(self) -> int:
        return sum(r.completion_tokens for r in self.records if not r.cached)

    def summary(self) -> dict:
        """Calls, tokens and seconds spent now; `cost_*`: the same counting cached answers at their original cost
        (what the work costs without a cache)."""
        return {
            "calls": self.calls,
            "cached_calls": sum(1 for r in self.records if r.cached),
            "failed_calls": sum(1 for r in self.records if not r.ok),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "model_seconds": round(sum(r.latency_s for r in self.records if not r.cached), 4),
            "cost_calls": sum(1 for r in self.records if not r.cached or r.ok),
            "cost_tokens": sum(r.prompt_tokens + r.completion_tokens for r in self.records),
            "cost_seconds": round(sum(r.cost_s if r.cached else r.latency_s for r in self.records), 4),
        }


_scopes: ContextVar[tuple[CallLog, ...]] = ContextVar("cirgraph_call_scopes", default=())
_stage: ContextVar[str | None] = ContextVar("cirgraph_stage", default=None)


def record(rec: CallRecord) -> None:
    """Add a record to every open scope (innermost and enclosing ones)."""
    if rec.stage is None:
        rec.stage = _stage.get()
    for log in _scopes.get():
        log.records.append(rec)


@contextlib.contextmanager
def collect_calls() -> Iterator[CallLog]:
    """Collect the records of every model call made inside the block (including in tasks it spawns)."""
    log = CallLog()
    token = _scopes.set(_scopes.get() + (log,))
    try:
        yield log
    finally:
        _scopes.reset(token)


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Label the calls made inside the block with a pipeline stage name."""
    token = _stage.set(name)
    try:
        yield
    finally:
        _stage.reset(token)
