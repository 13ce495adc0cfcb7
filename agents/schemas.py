"""Structured outputs the pipeline asks models for. Every field is described: the descriptions travel to the
model inside the JSON schema, and validation failures are retried by the client before a stage degrades.

Fields are all required (no defaults), which keeps the schemas valid for strict `json_schema` servers.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Polarity = Literal["must_show", "must_not_show"]


class _Schema(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class Recomposition(_Schema):
    """recompose: the target image described from the reference caption and the modification."""

    edits: list[str] = Field(
        description="The individual changes applied to the reference, one short phrase each; may be empty."
    )
    descriptions: list[str] = Field(
        min_length=1,
        description="Captions of the target image, each complete on its own; when several are asked for, ordered "
        "from the essential content to full detail.",
    )


class Proposition(_Schema):
    """One atomic, checkable fact about the target image."""

    text: str = Field(min_length=1, description="One visual fact, e.g. 'the dress is red'.")
    polarity: Polarity = Field(
        description="'must_show' when the target must show the fact, 'must_not_show' when it must not."
    )
    question: str = Field(
        min_length=1,
        description="A yes/no question answered 'yes' exactly when an image shows the fact, whatever the polarity.",
    )


class Propositions(_Schema):
    """decompose: the target split into propositions, most important first."""

    propositions: list[Proposition] = Field(description="Atomic propositions about the target image.")


class Answer(_Schema):
    """A verdict on one numbered question about one candidate."""

    index: int = Field(ge=1, description="The number of the question answered.")
    answer: Literal["yes", "no"] = Field(description="'yes' when the candidate shows what the question asks.")
    confidence: float = Field(ge=0.0, le=1.0, description="0 = a guess, 1 = certain.")


class Verdicts(_Schema):
    """rerank: one answer per question, for one candidate."""

    answers: list[Answer] = Field(description="One entry per numbered question.")


class Revision(_Schema):
    """reflect: revised target descriptions after a verification failure."""

    diagnosis: str = Field(description="Why the previous descriptions probably led to the failures (1-2 sentences).")
    descriptions: list[str] = Field(min_length=1, description="Revised captions of the target image.")


class Checks(_Schema):
    """decompose, small models: what the target must show and must not show, as short phrases."""

    show: list[str] = Field(description="Short phrases the wanted photo must show, most important first.")
    avoid: list[str] = Field(description="Short phrases the wanted photo must not show (may be empty).")
