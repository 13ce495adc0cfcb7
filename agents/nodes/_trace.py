"""What every node shares: timing and call accounting per stage, and the shape of a degradation record."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cirgraph.tools.usage import collect_calls, stage

Node = Callable[..., Awaitable[dict[str, Any]]]


def traced(name: str) -> Callable[[Node], Node]:
    """Label the node's model calls with stage `name` and add one `trace` entry (seconds, calls, tokens) to its
    update. The entry lives in state, so a run paused and resumed elsewhere still reports every stage."""

    def decorate(fn: Node) -> Node:
        @functools.wraps(fn)
        async def node(state: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
            started = time.perf_counter()
            with stage(name), collect_calls() as log:
                update = await fn(state, *args, **kwargs)
            entry = {"stage": name, "round": state.get("round", 0),
                     "seconds": round(time.perf_counter() - started, 6), **log.summary()}
            return {**update, "trace": [entry]}

        return node

    return decorate


def degraded(stage_name: str, reason: BaseException | str, fallback: str) -> dict[str, Any]:
    """A `degraded` list entry: which stage gave up, why (the error's message), and what was used instead."""
    text = reason if isinstance(reason, str) else (str(reason) or type(reason).__name__)
    return {"stage": stage_name, "reason": text[:500], "fallback": fallback}
