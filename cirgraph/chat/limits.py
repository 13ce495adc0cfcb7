"""Limits of the HTTP API: request bodies over a byte limit (413), and requests per client over a rate (429).

`BodyLimit` is an ASGI middleware: a declared Content-Length over the limit is refused before anything is read; a
body without one (chunked) is counted as it arrives and refused as soon as it passes the limit, whatever the
endpoint was doing with it. `RateLimiter` keeps one token bucket per client address and kind of request (turns,
uploads, logins): a client may spend a burst at once, then as many a minute as the rate allows.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _TooLarge(Exception):
    pass


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"request body is over the {limit}-byte limit"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Wraps an ASGI app: HTTP request bodies larger than `max_bytes` get 413."""

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _refuse(send, self.max_bytes)
            return
        seen, tripped, started = 0, False, False

        async def counted() -> Message:
            nonlocal seen, tripped
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    tripped = True
                    raise _TooLarge
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if tripped:  # the endpoint's own answer to the aborted read is replaced by the 413 below
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except _TooLarge:
            pass
        except Exception:
            if not tripped:
                raise
        if tripped and not started:
            await _refuse(send, self.max_bytes)


class RateLimited(Exception):
    """A client went over its rate; `retry_after` is the seconds until one more request is allowed."""

    def __init__(self, what: str, client: str, per_minute: float, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(f"{what} from {client}: over the limit of {per_minute:g} a minute; "
                         f"retry in {self.retry_after} s")


class RateLimiter:
    """Token buckets per (kind, client): `rates` maps a kind ("turns", "uploads", ...) to requests a minute.

    A kind missing from `rates`, or with a rate of 0, is not limited. Each bucket holds `burst` requests (default: a
    sixth of the minute's rate, at least 3) and refills continuously. At most `max_clients` buckets are kept; the
    least recently used go first (a client coming back starts with a full bucket).
    """

    def __init__(self, rates: dict[str, float], *, burst: dict[str, float] | None = None,
                 clock: Callable[[], float] = time.monotonic, max_clients: int = 10_000) -> None:
        self.rates = {kind: float(rate) for kind, rate in rates.items() if rate and rate > 0}
        self.burst = {kind: float((burst or {}).get(kind) or max(3.0, rate / 6)) for kind, rate in self.rates.items()}
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str, *asks: tuple[str, str]) -> None:
        """Spend one request of each (kind, what) for `client`, all or none: RateLimited naming `what` of the first
        empty bucket, and then nothing is spent."""
        now = self.clock()
        with self._lock:
            levels = {}
            for kind, what in asks:
                rate = self.rates.get(kind)
                if rate is None:
                    continue
                capacity = self.burst[kind]
                level, last = self._buckets.get((kind, client), (capacity, now))
                level = min(capacity, level + (now - last) * rate / 60.0)
                if level < 1.0:
                    raise RateLimited(what, client, rate, (1.0 - level) * 60.0 / rate)
                levels[kind] = level
            for kind, level in levels.items():
                self._buckets.pop((kind, client), None)
                self._buckets[(kind, client)] = (level - 1.0, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
