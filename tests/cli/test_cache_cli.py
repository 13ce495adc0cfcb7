"""`cirgraph cache`: per-namespace sizes, clearing one namespace or all; remembered failures expire and --fresh
forgets them."""

from __future__ import annotations

import json
import time

from typer.testing import CliRunner

from cirgraph.cli import app
from cirgraph.settings import Settings
from cirgraph.tools.cache import FAILED_NAMESPACE, FAILURE_TTL_S, CachedChatModel, CallCache
from cirgraph.testing.fake_chat import ScriptedChatModel
from cirgraph.tools.messages import Message
from cirgraph.errors import ModelOutputError


def _run(*args: str):
    return CliRunner().invoke(app, ["cache", *args], catch_exceptions=False)


def test_show_and_clear_per_namespace() -> None:
    path = Settings().cache_dir / "calls.sqlite"
    with CallCache(path) as cache:
        cache.put_json("chat", "a", {"reply": "x" * 1000})
        cache.put_json("chat", "b", {"reply": "y"})
        cache.put_json(FAILED_NAMESPACE, "c", {"reason": "cut off"})
    shown = _run("--json")
    assert shown.exit_code == 0, shown.output
    stats = json.loads(shown.stdout)[str(path)]
    assert stats["chat"]["entries"] == 2 and stats["chat"]["bytes"] > 1000 and stats[FAILED_NAMESPACE]["entries"] == 1
    assert "chat-invalid" in _run().stdout
    cleared = _run("clear", "--namespace", FAILED_NAMESPACE).stdout.strip()
    assert cleared == "removed 1 entry of namespace 'chat-invalid'"
    with CallCache(path) as cache:
        assert cache.count("chat") == 2 and cache.count(FAILED_NAMESPACE) == 0
    assert _run("clear").stdout.strip() == "removed 2 entries"


async def test_remembered_failures_expire(tmp_path) -> None:
    inner = ScriptedChatModel({"q": ModelOutputError("m", "cut off")})
    model = CachedChatModel(inner, CallCache(tmp_path / "calls.sqlite"))
    for _ in range(2):
        try:
            await model.complete([Message.user("q")])
        except ModelOutputError:
            pass
    assert inner.calls == 1  # the second was told from the cache
    model.cache._db.execute("UPDATE entries SET created = ?", (time.time() - FAILURE_TTL_S - 1,))
    try:
        await model.complete([Message.user("q")])
    except ModelOutputError:
        pass
    assert inner.calls == 2  # an old failure is asked again
