"""Whether model endpoints are reachable, as the calls that share one health object found them.

A client (cirgraph.tools.openai_chat) is given one EndpointHealth, or makes its own; the clients of one retriever or
one eval run share it. When a call gives up on an endpoint because its attempts could not connect or got no answer
within the timeout, or as many attempts in a row as one call may make (the client's `max_retries`) failed so,
whichever calls made them, the endpoint is marked down for `hold_s` seconds: calls to it in that time, and the
retries of calls already in flight, fail at once with EndpointDown naming the failure, so the later stages of a
search degrade at once instead of each waiting out its own timeouts. The first call after the hold tries the endpoint
again (a half-open circuit breaker); any answer marks it up.

`wait_until_up` is what a long run does instead of failing query after query: it probes a down endpoint with a cheap
request at exponentially growing intervals (capped) until it answers, or gives up after `max_wait_s`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cirgraph.errors import ModelError


class EndpointDown(ModelError):
    """A call refused without a request: its endpoint was found unreachable moments before."""


@dataclass(slots=True)
class _Down:
    reason: str
    since: float
    until: float


class EndpointHealth:
    """Reachability per endpoint key (base URL + model). Thread-safe; no I/O of its own."""

    def __init__(self, hold_s: float = 30.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        if hold_s <= 0:
            raise ValueError(f"EndpointHealth: hold_s must be > 0, got {hold_s}")
        self.hold_s, self._clock = hold_s, clock
        self._down: dict[str, _Down] = {}
        self._outages: dict[str, int] = {}
        self._streak: dict[str, int] = {}  # unreachable attempts in a row
        self._lock = threading.Lock()

    def check(self, endpoint: str, model: str) -> None:
        """Raise EndpointDown (for `model`) while `endpoint` is held down; pass once the hold is over."""
        with self._lock:
            down = self._down.get(endpoint)
        if down is not None and self._clock() < down.until:
            ago = self._clock() - down.since
            raise EndpointDown(model, f"{down.reason} (found {ago:.1f} s ago; not asked again for "
                                      f"{down.until - self._clock():.0f} s)")

    def attempt_failed(self, endpoint: str, reason: str, *, limit: int) -> None:
        """One attempt could not reach `endpoint`; at `limit` such attempts in a row it is marked down."""
        with self._lock:
            self._streak[endpoint] = streak = self._streak.get(endpoint, 0) + 1
        if streak >= limit:
            self.failed(endpoint, reason)

    def failed(self, endpoint: str, reason: str) -> None:
        """Mark `endpoint` down for `hold_s` seconds because of `reason` (a refused connection, a timeout)."""
        now = self._clock()
        with self._lock:
            current = self._down.get(endpoint)
            if current is None or now >= current.until:
                self._outages[endpoint] = self._outages.get(endpoint, 0) + 1
            since = current.since if current is not None else now
            self._down[endpoint] = _Down(reason, since, now + self.hold_s)

    def succeeded(self, endpoint: str) -> None:
        """The endpoint answered: it is up."""
        with self._lock:
            self._down.pop(endpoint, None)
            self._streak.pop(endpoint, None)

    def reason(self, endpoint: str) -> str | None:
        """Why `endpoint` is marked down (even past its hold, until it answers), or None when it is up."""
        with self._lock:
            down = self._down.get(endpoint)
        return down.reason if down is not None else None

    def outages(self, endpoint: str) -> int:
        """How many times `endpoint` went down (a counter: compare before and after a piece of work)."""
        with self._lock:
            return self._outages.get(endpoint, 0)

    async def wait_until_up(self, endpoint: str, probe: Callable[[], Awaitable[object]], *, initial_s: float = 1.0,
                            cap_s: float = 30.0, max_wait_s: float = 600.0,
                            on_wait: Callable[[str, float], None] | None = None) -> float:
        """Return at once when `endpoint` is up; else probe it (`probe()` raises while it is unreachable) after
        `initial_s`, then at doubling intervals up to `cap_s`, until it answers. Returns the seconds waited;
        raises EndpointDown after `max_wait_s`. `on_wait(reason, seconds)` is told before each pause."""
        started, pause = self._clock(), initial_s
        while (reason := self.reason(endpoint)) is not None:
            waited = self._clock() - started
            if waited >= max_wait_s:
                raise EndpointDown(endpoint, f"still unreachable after waiting {waited:.0f} s: {reason}")
            pause = min(pause, max(0.0, max_wait_s - waited))
            if on_wait is not None:
                on_wait(reason, pause)
            await asyncio.sleep(pause)
            try:
                await probe()
            except ModelError as exc:
                self.failed(endpoint, exc.reason)
            else:
                self.succeeded(endpoint)
            pause = min(pause * 2, cap_s)
        return self._clock() - started
