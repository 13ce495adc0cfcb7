"""Structured-output helpers: the schema a model is asked to follow is built once per class; the one parser of
JSON replies."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, Field

from cirgraph.tools.structured import extract_json_object, json_schema, parse_json_reply, schema_instructions


class Recomposed(BaseModel):
    descriptions: list[str] = Field(description="Target image descriptions.")


def test_the_schema_is_built_once_per_class() -> None:
    assert json_schema(Recomposed) is json_schema(Recomposed)
    assert json_schema(Recomposed) == Recomposed.model_json_schema()


def test_instructions_carry_the_schema() -> None:
    text = schema_instructions(Recomposed)
    assert text.startswith("Reply with a single JSON object") and json.dumps(json_schema(Recomposed)) in text


@pytest.mark.parametrize(("text", "expected"), [
    ('{"a": 1}', {"a": 1}),
    ('Here you go: {"a": {"b": [1, 2]}} and more {"c": 3}', {"a": {"b": [1, 2]}}),
    ('```json\n{"a": "}"}\n```', {"a": "}"}),
    ('{not json} then {"a": 2}', {"a": 2}),
])
def test_the_first_json_object_is_extracted(text: str, expected: dict) -> None:
    assert extract_json_object(text) == expected


def test_a_reply_without_an_object_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="no JSON object"):
        extract_json_object("[1, 2] and no object")


@pytest.mark.parametrize("reply", [
    '{"descriptions": ["a red dress"]}', '```json\n{"descriptions": ["a red dress"]}\n```',
    'Sure: {"descriptions": ["a red dress"]} and {"descriptions": ["other"]}',
])
def test_a_reply_is_the_whole_text_or_its_first_object(reply: str) -> None:
    assert parse_json_reply(reply, Recomposed) == Recomposed(descriptions=["a red dress"])
