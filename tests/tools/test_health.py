"""EndpointHealth: an endpoint found unreachable fails later calls at once for a while, siblings in flight stop
retrying, an answer marks it up, and wait_until_up probes with capped exponential back-off."""

from __future__ import annotations

import asyncio
import time

import pytest

from cirgraph.errors import ModelError
from cirgraph.testing.fake_openai import Fault, FakeOpenAIServer
from cirgraph.tools.health import EndpointDown, EndpointHealth
from cirgraph.tools.messages import Message
from cirgraph.tools.openai_chat import OpenAIChatModel


def client(server: FakeOpenAIServer, health: EndpointHealth | None = None, **kwargs) -> OpenAIChatModel:
    kwargs = {"timeout": 0.5, "max_retries": 2, "retry_wait": (0.05, 0.1), **kwargs}
    return OpenAIChatModel("fake-model", base_url=server.base_url, api_key="k", health=health, **kwargs)


def ask(text: str = "hello") -> list[Message]:
    return [Message.user(text)]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_down_mark_holds_then_lets_one_call_try_again() -> None:
    clock = Clock()
    health = EndpointHealth(hold_s=30, clock=clock)
    health.check("e", "m")
    health.attempt_failed("e", "cannot reach http://x: refused", limit=2)
    health.check("e", "m")  # one attempt in a row is not enough for a client that makes two
    health.attempt_failed("e", "cannot reach http://x: refused", limit=2)
    with pytest.raises(EndpointDown, match=r"model 'm': cannot reach http://x: refused \(found 0.0 s ago"):
        health.check("e", "m")
    health.check("other", "m")  # endpoints are kept apart
    clock.now += 31
    health.check("e", "m")  # the hold is over: the next call tries
    assert health.reason("e") == "cannot reach http://x: refused" and health.outages("e") == 1
    health.failed("e", "again")
    assert health.outages("e") == 2
    health.succeeded("e")
    assert health.reason("e") is None
    health.check("e", "m")
    with pytest.raises(ValueError, match="hold_s"):
        EndpointHealth(hold_s=0)


async def test_a_refused_endpoint_is_tried_once_then_fails_at_once() -> None:
    with FakeOpenAIServer() as server:
        model = client(server)
        server.stop()  # nothing listens on its port now: connections are refused
        started = time.perf_counter()
        with pytest.raises(ModelError, match=r"cannot reach .* \(after 2 attempts\)"):
            await model.complete(ask())
        with pytest.raises(EndpointDown, match="cannot reach"):
            await model.complete(ask("another stage"))
        assert time.perf_counter() - started < 2
        server.start()  # back on the same port
        assert model.health.reason(model.endpoint) is not None
        await model.probe()
        model.health.succeeded(model.endpoint)
        assert await model.complete(ask()) == "ok"


async def test_calls_in_flight_stop_retrying_when_a_sibling_finds_the_endpoint_down() -> None:
    with FakeOpenAIServer(default=Fault.hanging()) as server:
        model = client(server, max_retries=3, max_concurrency=2, timeout=0.5)
        started = time.perf_counter()
        results = await asyncio.gather(*(model.complete(ask(f"q{i}")) for i in range(6)), return_exceptions=True)
        seconds = time.perf_counter() - started
        assert all(isinstance(r, ModelError) for r in results)
        assert sum(isinstance(r, EndpointDown) for r in results) >= 4
        # 6 calls, 2 at a time, 3 attempts of 0.5 s each: 4.5 s if every call waited out its own timeouts
        assert seconds < 2.5, seconds
        print(f"\n6 calls against a hanging endpoint: {seconds:.2f} s, {len(server.chat_requests)} requests")
        assert len(server.chat_requests) <= 5


async def test_answers_that_are_errors_do_not_mark_the_endpoint_down() -> None:
    with FakeOpenAIServer() as server:
        model = client(server)
        server.inject(Fault(status=500), times=2)
        with pytest.raises(ModelError, match="HTTP 500"):
            await model.complete(ask())
        assert model.health.reason(model.endpoint) is None
        assert await model.complete(ask()) == "ok"


async def test_one_health_object_is_shared_by_the_clients_given_it() -> None:
    with FakeOpenAIServer() as server:
        health = EndpointHealth()
        llm, vlm = client(server, health), client(server, health)
        server.stop()
        with pytest.raises(ModelError):
            await llm.complete(ask())
        with pytest.raises(EndpointDown):
            await vlm.complete(ask())


async def test_wait_until_up_probes_with_capped_back_off() -> None:
    health, pauses, probes = EndpointHealth(), [], []

    async def probe() -> None:
        probes.append(1)
        if len(probes) < 4:
            raise ModelError("m", "cannot reach it")

    health.failed("e", "cannot reach it")
    waited = await health.wait_until_up("e", probe, initial_s=0.01, cap_s=0.03, on_wait=lambda r, s: pauses.append(s))
    assert pauses == [0.01, 0.02, 0.03, 0.03] and len(probes) == 4 and health.reason("e") is None
    assert waited < 1
    assert await health.wait_until_up("e", probe) < 0.01 and len(probes) == 4  # up: no wait, no probe
    health.failed("e", "cannot reach it")
    probes.clear()
    with pytest.raises(EndpointDown, match="still unreachable after waiting"):
        await health.wait_until_up("e", probe, initial_s=0.01, cap_s=0.01, max_wait_s=0.025)
