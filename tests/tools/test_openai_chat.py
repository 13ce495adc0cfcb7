"""OpenAIChatModel against the fake OpenAI-compatible server, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
from openai import AsyncOpenAI
from PIL import Image
from pydantic import BaseModel, Field

from cirgraph.errors import ConfigError, InputError, ModelError, ModelOutputError
from cirgraph.testing.fake_openai import Fault, FakeOpenAIServer
from cirgraph.tools import image_urls
from cirgraph.tools.images import to_data_url
from cirgraph.tools.messages import Message
from cirgraph.tools.openai_chat import OpenAIChatModel, parse_json_reply
from cirgraph.tools.protocols import ChatModel
from cirgraph.tools.usage import collect_calls


class Recomposed(BaseModel):
    descriptions: list[str] = Field(description="Target image descriptions.")


GOOD = {"descriptions": ["a red sleeveless dress"]}
RULES = {"capital of France": "Paris", "Recompose": GOOD}


@pytest.fixture
def server():
    with FakeOpenAIServer(RULES) as fake:
        yield fake


_made: list[OpenAIChatModel] = []


@pytest.fixture(autouse=True)
async def _close_clients():
    """Close the HTTP clients the test opened, on the test's event loop."""
    yield
    while _made:
        await _made.pop().aclose()


def make_model(server: FakeOpenAIServer | None, model: str = "fake-model", **overrides) -> OpenAIChatModel:
    options = dict(api_key="sk-test", timeout=2.0, max_retries=3, retry_wait=(0.01, 0.05))
    if server is not None:
        options["base_url"] = server.base_url
    _made.append(OpenAIChatModel(model, **{**options, **overrides}))
    return _made[-1]


def ask(text: str = "What is the capital of France?") -> list[Message]:
    return [Message.system("You are terse."), Message.user(text)]


async def test_plain_text_round_trip(server):
    model = make_model(server, extra_body={"top_k": 5})
    assert isinstance(model, ChatModel)
    assert await model.complete(ask(), max_tokens=20) == "Paris"
    (req,) = server.chat_requests
    assert req.headers["authorization"] == "Bearer sk-test"
    assert req.body["model"] == "fake-model"
    assert req.body["messages"] == [{"role": "system", "content": "You are terse."},
                                    {"role": "user", "content": "What is the capital of France?"}]
    assert req.body["temperature"] == 0.0 and req.body["max_tokens"] == 20 and req.body["top_k"] == 5
    assert "response_format" not in req.body


async def test_structured_output_uses_json_schema_first(server):
    with collect_calls() as log:
        result = await make_model(server).complete(ask("Recompose it"), schema=Recomposed)
    assert result == Recomposed(**GOOD)
    (req,) = server.chat_requests
    fmt = req.body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"] == {"name": "Recomposed", "schema": Recomposed.model_json_schema(), "strict": False}
    assert req.body["messages"][0] == {"role": "system", "content": "You are terse."}  # no instructions needed
    assert log.records[0].mode == "json_schema"


async def test_falls_back_to_json_object_and_remembers(server):
    server.reject_json_schema = True  # as llama.cpp's server does
    model = make_model(server)
    with collect_calls() as log:
        assert await model.complete(ask("Recompose it"), schema=Recomposed) == Recomposed(**GOOD)
        assert await model.complete(ask("Recompose this too"), schema=Recomposed) == Recomposed(**GOOD)
    assert [r.response_format for r in server.chat_requests] == ["json_schema", "json_object", "json_object"]
    second = server.chat_requests[1].body
    assert second["response_format"] == {"type": "json_object", "schema": Recomposed.model_json_schema()}
    system = second["messages"][0]
    assert system["role"] == "system" and system["content"].startswith("You are terse.")
    assert '"descriptions"' in system["content"] and [m["role"] for m in second["messages"]] == ["system", "user"]
    assert [(r.mode, r.attempts) for r in log.records] == [("json_object", 2), ("json_object", 1)]


async def test_llama_cpp_500_for_json_schema_falls_back_without_retrying(server):
    """llama-cpp-python's server answers json_schema with a 500 wrapping a validation error: a format refusal."""
    server.reject_json_schema, server.reject_status = True, 500
    model = make_model(server)
    with collect_calls() as log:
        assert await model.complete(ask("Recompose it"), schema=Recomposed) == Recomposed(**GOOD)
    assert [r.response_format for r in server.chat_requests] == ["json_schema", "json_object"]
    assert [(r.mode, r.attempts) for r in log.records] == [("json_object", 2)]


async def test_a_plain_500_is_still_retried_as_a_server_error(server):
    server.inject(Fault(status=500), times=1)
    model = make_model(server)
    assert await model.complete(ask("Recompose it"), schema=Recomposed) == Recomposed(**GOOD)
    assert [r.response_format for r in server.chat_requests] == ["json_schema", "json_schema"]


async def test_falls_back_to_instructions_and_parses_fenced_json(server):
    server.reject_json_schema = server.reject_json_object = True
    server.rules = [("Recompose", "Sure! Here it is:\n```json\n" + json.dumps(GOOD) + "\n```\nAnything else?")]
    model = make_model(server)
    assert await model.complete(ask("Recompose it"), schema=Recomposed) == Recomposed(**GOOD)
    assert await model.complete(ask("Recompose again"), schema=Recomposed) == Recomposed(**GOOD)
    assert [r.response_format for r in server.chat_requests] == ["json_schema", "json_object", None, None]
    assert "JSON schema" in server.chat_requests[-1].body["messages"][0]["content"]


async def test_explicit_mode_does_not_fall_back(server):
    server.reject_json_schema = True
    with pytest.raises(ModelError, match="rejected structured output.*json_schema"):
        await make_model(server, structured_mode="json_schema").complete(ask("Recompose"), schema=Recomposed)
    assert len(server.chat_requests) == 1


async def test_unrelated_400_neither_falls_back_nor_retries(server):
    server.rules = [("Recompose", Fault(status=400, body="This model's maximum context length is 4096 tokens"))]
    model = make_model(server)
    with pytest.raises(ModelError, match="HTTP 400.*maximum context length") as info:
        await model.complete(ask("Recompose"), schema=Recomposed)
    assert "after 1 attempt)" in str(info.value)
    assert len(server.chat_requests) == 1
    server.rules = list(RULES.items())
    await model.complete(ask("Recompose"), schema=Recomposed)
    assert server.chat_requests[-1].response_format == "json_schema"  # the mode was not dropped


@pytest.mark.parametrize("fault", [
    Fault(status=500), Fault(status=503), Fault.rate_limited(0), Fault("invalid_json"), Fault("empty_choices"),
    Fault("null_content"), Fault("delay", delay_s=1.5),
], ids=lambda f: f"{f.kind}-{f.status}")
async def test_recovers_from_transient_failures(server, fault):
    server.inject(fault, times=2)
    with collect_calls() as log:
        assert await make_model(server, timeout=0.3).complete(ask()) == "Paris"
    assert len(server.chat_requests) == 3
    assert log.records[0].attempts == 3 and log.records[0].ok


@pytest.mark.parametrize("fault", [Fault("content", content="I think it is a red dress."), Fault("truncated")],
                         ids=["prose", "truncated"])
async def test_invalid_structured_output_is_retried_with_feedback(server, fault):
    server.inject(fault)
    with collect_calls() as log:
        assert await make_model(server).complete(ask("Recompose"), schema=Recomposed) == Recomposed(**GOOD)
    first, second = server.chat_requests
    assert [m["role"] for m in second.body["messages"]] == ["system", "user", "assistant", "user"]
    assert "That reply was invalid" in second.body["messages"][-1]["content"]
    assert first.body["messages"] == second.body["messages"][:2]
    rec = log.records[0]
    assert rec.attempts == 2 and rec.completion_tokens > 0


async def test_retry_after_is_honoured_and_capped(server):
    server.inject(Fault.rate_limited(0.4))
    started = time.perf_counter()
    await make_model(server).complete(ask())
    assert time.perf_counter() - started >= 0.4
    server.inject(Fault.rate_limited(30))
    started = time.perf_counter()
    await make_model(server, max_retry_after=0.1).complete(ask())
    assert time.perf_counter() - started < 2


async def test_final_error_names_model_status_body_and_attempts(server):
    server.inject(Fault(status=503, body="upstream overloaded"), times=10)
    with collect_calls() as log, pytest.raises(ModelError) as info:
        await make_model(server).complete(ask())
    message = str(info.value)
    assert "'fake-model'" in message and "HTTP 503" in message and "upstream overloaded" in message
    assert "after 3 attempts" in message and server.base_url in message
    assert len(server.chat_requests) == 3
    rec = log.records[0]
    assert (rec.ok, rec.attempts, rec.error) == (False, 3, message)


async def test_final_invalid_output_keeps_the_raw_reply(server):
    server.rules = [("Recompose", "no JSON here, sorry")]
    with pytest.raises(ModelOutputError, match="invalid output after 3 attempts.*not a valid Recomposed") as info:
        await make_model(server).complete(ask("Recompose"), schema=Recomposed)
    assert info.value.raw == "no JSON here, sorry"


async def test_timeout_error_says_so(server):
    server.inject(Fault("delay", delay_s=2), times=2)
    with pytest.raises(ModelError, match=r"no answer from .* within 0.2 s \(after 2 attempts\)"):
        await make_model(server, timeout=0.2, max_retries=2).complete(ask())


async def test_unreachable_server():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again at once: nothing listens there
    model = make_model(None, base_url=f"http://127.0.0.1:{port}/v1", max_retries=2)
    with pytest.raises(ModelError, match=r"cannot reach http://127.0.0.1:\d+/v1.*after 2 attempts"):
        await model.complete(ask())


async def test_no_retry_on_401_or_404():
    with FakeOpenAIServer(RULES, api_key="the-right-key", models=["fake-model"]) as fake:
        with pytest.raises(ModelError, match="HTTP 401.*Incorrect API key.*after 1 attempt"):
            await make_model(fake, api_key="wrong").complete(ask())
        assert len(fake.chat_requests) == 1
        with pytest.raises(ModelError, match="HTTP 404.*does not exist"):
            await make_model(fake, "no-such-model", api_key="the-right-key").complete(ask())
        assert len(fake.chat_requests) == 2


async def test_local_server_never_gets_the_environment_key(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-secret")
    await make_model(server, api_key=None).complete(ask())
    assert server.chat_requests[0].headers["authorization"] == "Bearer EMPTY"


async def test_images_are_sent_as_downscaled_data_urls(server):
    wide = Image.new("RGB", (2000, 1000), (200, 30, 30))
    await make_model(server, image_max_side=256).complete([Message.user("Describe the image", wide)])
    (req,) = server.chat_requests
    content = req.body["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "Describe the image"}
    assert req.image_urls[0].startswith("data:image/jpeg;base64,")
    (img,) = req.images()
    assert img.size == (256, 128)
    assert img.convert("RGB").getpixel((128, 64))[0] > 150


async def test_an_image_in_concurrent_requests_is_encoded_once(server, monkeypatch):
    """Rerank sends the reference beside every candidate, concurrently: it is downscaled and encoded once."""
    encoded = []

    def encode(img, **kwargs):
        encoded.append(img)
        return to_data_url(img, **kwargs)

    monkeypatch.setattr(image_urls, "to_data_url", encode)
    reference = Image.new("RGB", (640, 480), (200, 30, 30))
    candidates = [Image.new("RGB", (64, 48), (30, 30, 10 * i)) for i in range(4)]
    model = make_model(server)
    await asyncio.gather(*(model.complete([Message.user("Describe the image", reference, c)]) for c in candidates))
    assert sum(img is reference for img in encoded) == 1 and len(encoded) == 5
    assert len({r.image_urls[0] for r in server.chat_requests}) == 1  # the same reference URL in every request


async def test_concurrency_limit_is_honoured():
    with FakeOpenAIServer(RULES, delay_s=0.15) as fake:
        model = make_model(fake, max_concurrency=2)
        answers = await asyncio.gather(*(model.complete(ask()) for _ in range(6)))
        assert answers == ["Paris"] * 6 and fake.max_in_flight == 2
        fake.reset()
        model = make_model(fake, max_concurrency=6)
        await asyncio.gather(*(model.complete(ask()) for _ in range(6)))
        assert fake.max_in_flight > 2  # the cap above came from the client, not from the server


def test_one_instance_serves_several_event_loops(server):
    model = make_model(server, max_concurrency=1)

    async def ask_and_close() -> str:
        try:
            return await model.complete(ask())
        finally:
            await model.aclose()

    assert asyncio.run(ask_and_close()) == "Paris"
    assert asyncio.run(ask_and_close()) == "Paris"


async def test_usage_records(server):
    model = make_model(server, name="text-llm")
    with collect_calls() as log:
        await model.complete(ask())
    (rec,) = log.records
    expected_prompt = len("You are terse. What is the capital of France?".split())
    assert (rec.model, rec.kind, rec.mode, rec.cached, rec.ok) == ("text-llm", "chat", "text", False, True)
    assert (rec.prompt_tokens, rec.completion_tokens, rec.attempts) == (expected_prompt, 1, 1)
    assert 0 < rec.latency_s < 5


async def test_bad_arguments():
    with pytest.raises(ConfigError, match="structured_mode"):
        OpenAIChatModel("m", base_url=None, api_key="k", structured_mode="xml")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="messages"):
        await make_model(None, base_url="http://127.0.0.1:9/v1").complete([])


@pytest.mark.parametrize("reply", [
    json.dumps(GOOD), "```json\n" + json.dumps(GOOD) + "\n```", "Here: " + json.dumps(GOOD) + " -- done",
])
def test_parse_json_reply_tolerates_fences_and_prose(reply):
    assert parse_json_reply(reply, Recomposed) == Recomposed(**GOOD)


async def test_fake_server_scripting():
    rules = [("slow", Fault("delay", delay_s=0.05)), ("echo", lambda body: body["messages"][-1]["content"].upper())]
    with FakeOpenAIServer(rules, default="fallback", models=["fake-model"]) as fake:
        model = make_model(fake)
        assert await model.complete([Message.user("echo me")]) == "ECHO ME"
        assert await model.complete([Message.user("slow one")]) == "fallback"  # delayed, then the default
        async with AsyncOpenAI(base_url=fake.base_url, api_key="k") as client:
            assert [m.id async for m in client.models.list()] == ["fake-model"]
        assert [r.method for r in fake.requests] == ["POST", "POST", "GET"]


async def test_replies_are_capped_unless_the_caller_sets_a_cap(server):
    """A rambling small model must not hold a one-request-at-a-time server until its context limit."""
    await make_model(server).complete(ask("Say hi"))
    await make_model(server).complete(ask("Say hi"), max_tokens=50)
    await make_model(server, default_max_tokens=None).complete(ask("Say hi"))
    assert [r.body.get("max_tokens") for r in server.chat_requests] == [1024, 50, None]
