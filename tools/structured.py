"""Structured output over a chat endpoint: the JSON schema a model is asked to follow, and its reply validated."""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from pydantic import BaseModel, ValidationError

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


@functools.cache
def json_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """`schema`'s JSON schema, built once per class: pydantic regenerates it on every call (about 1 ms each), and
    every structured request sends it. Callers must not mutate the shared result."""
    return schema.model_json_schema()


@functools.cache
def schema_instructions(schema: type[BaseModel]) -> str:
    """The system-prompt text asking for a JSON object that fits `schema`."""
    return ("Reply with a single JSON object, and nothing else, that conforms to this JSON schema:\n"
            + json.dumps(json_schema(schema), ensure_ascii=False))


def parse_json_reply(text: str, schema: type[BaseModel]) -> BaseModel:
    """Validate a reply as `schema`, tolerating ```json fences and prose around the outermost JSON object."""
    try:
        return schema.model_validate_json(text)
    except ValidationError:
        fenced = _FENCE.search(text)
        inner = fenced.group(1) if fenced else text
        start, end = inner.find("{"), inner.rfind("}")
        candidate = inner[start:end + 1] if 0 <= start < end else inner
        if candidate.strip() == text.strip():
            raise
        return schema.model_validate_json(candidate)


def validation_summary(exc: ValidationError, limit: int = 3) -> str:
    """The first `limit` errors of `exc` as 'field: message' pairs, for a retry prompt or an error message."""
    errors = exc.errors()
    shown = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in errors[:limit])
    return shown + (f" (+{len(errors) - limit} more)" if len(errors) > limit else "")


_LABEL = re.compile(r"^(?:image|description|new image|answer|caption|output)\s*:\s*", re.I)
_QUOTES = "\"'“”‘’`"


def parse_sentence_reply(text: str, *, max_words: int = 80) -> str | None:
    """The description in a plain-text reply that was asked for one sentence: its first non-empty line, without
    surrounding quotes or a leading label that echoes the prompt's format ("Image: ..."), whitespace normalised;
    None when nothing usable is left. Longer replies are cut at `max_words` words."""
    for line in str(text).splitlines():
        line = _LABEL.sub("", line.strip().strip(_QUOTES).strip()).strip().strip(_QUOTES).strip()
        if line:
            words = line.split()
            return " ".join(words[:max_words])
    return None
