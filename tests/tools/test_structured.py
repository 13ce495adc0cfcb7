"""Structured-output helpers: the schema a model is asked to follow is built once per class."""

from __future__ import annotations

import json

from pydantic import BaseModel, Field

from cirgraph.tools.structured import json_schema, schema_instructions


class Recomposed(BaseModel):
    descriptions: list[str] = Field(description="Target image descriptions.")


def test_the_schema_is_built_once_per_class() -> None:
    assert json_schema(Recomposed) is json_schema(Recomposed)
    assert json_schema(Recomposed) == Recomposed.model_json_schema()


def test_instructions_carry_the_schema() -> None:
    text = schema_instructions(Recomposed)
    assert text.startswith("Reply with a single JSON object") and json.dumps(json_schema(Recomposed)) in text
