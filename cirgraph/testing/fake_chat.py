"""A scripted ChatModel: answers from rules keyed by request content, so tests never call a model.

    model = ScriptedChatModel({"Describe the image": "a red dress", "target": {"descriptions": ["..."]}})

A rule matches when its key occurs in the request's text (all messages joined); the first match wins. A value may
be a string, a dict (returned as JSON, validated against the schema when one is asked for), an Exception instance
(raised), or a callable taking (messages, schema) and returning one of those.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from cirgraph.errors import ModelError, ModelOutputError
from cirgraph.tools.messages import Message
from cirgraph.tools.usage import CallRecord, record

Reply = str | dict | list | Exception | Callable[[Sequence[Message], type[BaseModel] | None], Any]


class ScriptedChatModel:
    """Implements cirgraph.tools.protocols.ChatModel with scripted replies and a log of every request."""

    def __init__(
        self, rules: Mapping[str, Reply] | Sequence[tuple[str, Reply]] = (), *, default: Reply | None = None,
        name: str = "scripted", delay_s: float = 0.0, tokens_per_call: tuple[int, int] = (10, 5),
    ) -> None:
        self.rules: list[tuple[str, Reply]] = list(rules.items() if isinstance(rules, Mapping) else rules)
        self.default = default
        self.name = name
        self.delay_s = delay_s
        self.tokens_per_call = tokens_per_call
        self.requests: list[tuple[list[Message], type[BaseModel] | None]] = []

    def _match(self, text: str) -> Reply:
        for key, reply in self.rules:
            if key in text:
                return reply
        if self.default is not None:
            return self.default
        raise ModelError(self.name, f"no scripted reply matches the request (first 200 chars: {text[:200]!r})")

    async def complete(
        self, messages: Sequence[Message], *, schema: type[BaseModel] | None = None, temperature: float = 0.0,
        max_tokens: int | None = None,
    ) -> Any:
        started = time.perf_counter()
        self.requests.append((list(messages), schema))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        text = "\n\n".join(m.text for m in messages)
        reply = self._match(text)
        if callable(reply) and not isinstance(reply, Exception):
            reply = reply(messages, schema)
        ok = not isinstance(reply, Exception)
        record(CallRecord(
            model=self.name, kind="chat", latency_s=time.perf_counter() - started,
            prompt_tokens=self.tokens_per_call[0], completion_tokens=self.tokens_per_call[1],
            mode="scripted", ok=ok, error=None if ok else str(reply),
        ))
        if isinstance(reply, Exception):
            raise reply
        if schema is None:
            return reply if isinstance(reply, str) else json.dumps(reply)
        raw = reply if isinstance(reply, str) else json.dumps(reply)
        try:
            return schema.model_validate_json(raw)
        except ValidationError as exc:
            raise ModelOutputError(self.name, f"reply does not match {schema.__name__}: {exc}", raw=raw) from None

    @property
    def calls(self) -> int:
        return len(self.requests)
