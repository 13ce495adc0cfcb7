"""CallCache (SQLite) and CachedChatModel: hits skip the model, survive reopening, and failures are never stored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from PIL import Image
from pydantic import BaseModel

from cirgraph.errors import InputError, ModelError
from cirgraph.testing.fake_chat import ScriptedChatModel
from cirgraph.testing.fake_openai import Fault, FakeOpenAIServer
from cirgraph.tools.cache import CachedChatModel, CallCache, chat_key
from cirgraph.tools.messages import Message
from cirgraph.tools.openai_chat import OpenAIChatModel
from cirgraph.tools.protocols import ChatModel
from cirgraph.tools.usage import collect_calls


class Caption(BaseModel):
    caption: str


def ask(text: str = "Describe the dress") -> list[Message]:
    return [Message.user(text)]


@pytest.fixture
def cache(tmp_path):
    with CallCache(tmp_path / "calls.sqlite") as opened:
        yield opened


def test_call_cache_basics(tmp_path):
    path = tmp_path / "sub" / "calls.sqlite"
    with CallCache(path) as cache:
        assert cache.get("k") is None and len(cache) == 0
        cache.put("k", "v1")
        cache.put("k", "v2")  # replaces
        cache.put_json("captions", "img-1", {"text": "a dress", "n": 1})
        assert cache.get("k") == "v2"
        assert cache.get_json("captions", "img-1") == {"text": "a dress", "n": 1}
        assert cache.get("img-1") is None  # namespaces are separate
        assert len(cache) == 2 and cache.count("captions") == 1
    with CallCache(path) as reopened:
        assert reopened.get("k") == "v2"
        reopened.clear("captions")
        assert len(reopened) == 1
        reopened.clear()
        assert len(reopened) == 0
        assert reopened._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_call_cache_is_safe_across_threads(cache):
    def writer(n: int) -> None:
        for i in range(50):
            cache.put(f"{n}-{i}", str(i))
            assert cache.get(f"{n}-{i}") == str(i)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 400


_WRITER = """
import json, sys
from cirgraph.tools.cache import CallCache
cache = CallCache(sys.argv[1])
print("ready", flush=True)
i = 0
while True:
    cache.put_json("bulk", str(i), {"i": i, "pad": "x" * 200_000})
    i += 1
"""


def test_a_killed_writer_leaves_only_whole_entries(tmp_path):
    path = tmp_path / "calls.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.3)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    with CallCache(path) as cache:
        assert cache._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        entries = cache._db.execute("SELECT key, value FROM entries").fetchall()
    assert entries, "the writer wrote nothing before it was killed"
    for key, value in entries:
        assert json.loads(value) == {"i": int(key), "pad": "x" * 200_000}


async def test_hit_skips_the_server_and_survives_reopening(tmp_path):
    path = tmp_path / "calls.sqlite"
    with FakeOpenAIServer({"Describe": {"caption": "a red dress"}}) as server:
        inner = OpenAIChatModel("fake-model", base_url=server.base_url, api_key="k", retry_wait=(0.01, 0.02))
        model = CachedChatModel(inner, CallCache(path))
        assert isinstance(model, ChatModel) and model.name == "fake-model"
        with collect_calls() as log:
            first = await model.complete(ask(), schema=Caption)
            second = await model.complete(ask(), schema=Caption)
        assert first == second == Caption(caption="a red dress") and isinstance(second, Caption)
        assert len(server.chat_requests) == 1
        miss, hit = log.records
        # the hit carries what the original call cost; only the miss counts as spent now
        assert (miss.cached, hit.cached) == (False, True)
        assert (hit.prompt_tokens, hit.completion_tokens) == (miss.prompt_tokens, miss.completion_tokens) != (0, 0)
        assert hit.cost_s == round(miss.latency_s, 4) and hit.latency_s < miss.latency_s
        summary = log.summary()
        assert summary["calls"] == 1 and summary["cached_calls"] == 1 and summary["cost_calls"] == 2
        assert summary["prompt_tokens"] == miss.prompt_tokens
        assert summary["cost_tokens"] == 2 * (miss.prompt_tokens + miss.completion_tokens)
        assert summary["cost_seconds"] == round(miss.latency_s + hit.cost_s, 4)
        model.cache.close()

        with CallCache(path) as again:
            reopened = CachedChatModel(inner, again)
            assert await reopened.complete(ask(), schema=Caption) == Caption(caption="a red dress")
            assert await reopened.complete(ask("Describe the dress, briefly")) == '{"caption": "a red dress"}'
        assert len(server.chat_requests) == 2  # only the new (text) request reached the server
        await inner.aclose()


async def test_failures_are_not_cached(cache):
    with FakeOpenAIServer({"Describe": "a red dress"}) as server:
        inner = OpenAIChatModel("fake-model", base_url=server.base_url, api_key="k", max_retries=1)
        model = CachedChatModel(inner, cache)
        server.inject(Fault(status=500))
        with pytest.raises(ModelError, match="HTTP 500"):
            await model.complete(ask())
        assert len(model.cache) == 0
        assert await model.complete(ask()) == "a red dress"
        assert await model.complete(ask()) == "a red dress"
        assert len(server.chat_requests) == 2 and len(model.cache) == 1
        await inner.aclose()


async def test_invalid_output_at_temperature_0_is_remembered_and_not_asked_again(cache):
    from cirgraph.errors import ModelOutputError

    with FakeOpenAIServer({"Describe": {"caption": "a red dress"}}) as server:
        inner = OpenAIChatModel("fake-model", base_url=server.base_url, api_key="k", max_retries=1)
        model = CachedChatModel(inner, cache)
        server.inject(Fault(kind="truncated"))  # a reply cut off at the token cap
        with pytest.raises(ModelOutputError):
            await model.complete(ask(), schema=Caption)
        asked = len(server.chat_requests)
        with collect_calls() as log, pytest.raises(ModelOutputError, match="remembered"):
            await model.complete(ask(), schema=Caption)
        assert len(server.chat_requests) == asked  # not asked again
        assert log.summary()["cached_calls"] == 1 and log.summary()["failed_calls"] == 1
        # sampling at a temperature could answer differently: that request is asked
        assert await model.complete(ask(), schema=Caption, temperature=0.7) == Caption(caption="a red dress")
        assert len(server.chat_requests) == asked + 1
        await inner.aclose()


async def test_key_covers_text_images_schema_and_sampling(cache):
    inner = ScriptedChatModel(default={"caption": "x"}, name="scripted")
    model = CachedChatModel(inner, cache)
    red, blue = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")
    requests = [
        dict(messages=ask()), dict(messages=ask("Describe the shoe")),
        dict(messages=[Message.user("Describe the dress", red)]),
        dict(messages=[Message.user("Describe the dress", blue)]),
        dict(messages=[Message.system("Describe the dress")]), dict(messages=ask(), schema=Caption),
        dict(messages=ask(), temperature=0.7), dict(messages=ask(), max_tokens=10),
    ]
    for request in requests:
        await model.complete(**request)
    assert inner.calls == len(requests) == len(model.cache)
    for request in requests:  # all hits now
        await model.complete(**request)
    await model.complete([Message.user("Describe the dress", Image.new("RGB", (8, 8), "red"))])  # same pixels
    assert inner.calls == len(requests)


def test_key_depends_on_the_model_name():
    assert chat_key("a", ask(), None, 0.0, None) != chat_key("b", ask(), None, 0.0, None)
    assert chat_key("a", ask(), None, 0.0, None) == chat_key("a", ask(), None, 0, None)


async def test_an_entry_that_no_longer_validates_is_a_miss(cache):
    inner = ScriptedChatModel(default={"caption": "fresh"})
    model = CachedChatModel(inner, cache)
    model.cache.put(chat_key(inner.name, ask(), Caption, 0.0, None), '{"wrong": 1}')
    assert await model.complete(ask(), schema=Caption) == Caption(caption="fresh")
    assert inner.calls == 1
    assert await model.complete(ask(), schema=Caption) == Caption(caption="fresh")
    assert inner.calls == 1  # the stale entry was replaced


def test_a_broken_file_is_reported(tmp_path):
    path = tmp_path / "calls.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(InputError, match=r"calls.sqlite: cannot be used as a call cache \(file is not a database"):
        CallCache(path)
