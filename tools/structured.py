"""Structured output over a chat endpoint: the JSON schema a model is asked to follow, and its reply validated."""

from __future__ import annotations

import functools
import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


@functools.cache
def json_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """`schema`'s JSON schema, built once per class: pydantic regenerates it on every call (about 1 ms each), and
    every structured request sends it. Callers must not mutate the shared result."""
    return schema.model_json_schema()


@functools.cache
def schema_instructions(schema: type[BaseModel]) -> str:
    """The system-prompt text asking for a JSON object that fits `schema`: the one wording, for every chat client."""
    return ("Reply with a single JSON object, and nothing else, that conforms to this JSON schema:\n"
            + json.dumps(json_schema(schema), ensure_ascii=False))


def extract_json_object(text: str) -> dict[str, Any]:
    """The first JSON object in `text`, looking inside ```json fences first; ValueError when there is none."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        for match in re.finditer(r"\{", candidate):
            try:
                value, _ = decoder.raw_decode(candidate, match.start())
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    raise ValueError("the reply holds no JSON object")


def parse_json_reply(text: str, schema: type[T]) -> T:
    """Validate a model's reply as `schema`: the whole reply, else its first JSON object (```json fences and prose
    around it tolerated). The one parser of JSON replies, for every chat client. pydantic's ValidationError when
    nothing fits: the reply's own JSON error when it holds no object, else the object's mismatches."""
    try:
        return schema.model_validate_json(text)
    except ValidationError as not_json:
        try:
            found = extract_json_object(text)
        except ValueError:
            raise not_json from None
        return schema.model_validate(found)


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
