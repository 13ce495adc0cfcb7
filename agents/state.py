"""Graph state: the narrow input a caller gives, and the full state the nodes read and update.

State holds plain values only (str, float, bytes, lists and dicts of them): checkpoints serialise it without a
serializer allow-list, and a paused run can resume in another process. The reference image travels as its file
bytes; nodes decode it through a small cache (cirgraph.agents.query.reference_image).
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


def merge(left: dict | None, right: dict | None) -> dict:
    """Reducer: dict union, the right side winning (verdicts by candidate, prompts by stage)."""
    return {**(left or {}), **(right or {})}


class Reference(TypedDict):
    """The reference image: a gallery id and/or its bytes, and the hash that keys caches and excludes it."""

    id: str | None  # gallery id when the reference is a gallery item
    hash: str  # content hash of the file bytes (a gallery id when the gallery keys items by content)
    data: bytes | None  # encoded image bytes; None for a gallery item whose image is not readable here


class PropositionRecord(TypedDict):
    """A statement about the target image and the yes/no question that verifies it on a candidate."""

    text: str
    polarity: str  # "must_show" | "must_not_show"
    question: str  # "" for the whole target description checked as one proposition


class AnswerRecord(TypedDict):
    """A candidate's answer to one proposition's question (numbered from 1), and how likely it holds."""

    index: int
    text: str
    polarity: str
    answer: str
    confidence: float
    holds: float


class VerdictRecord(TypedDict, total=False):
    """One candidate checked against the propositions: `score` (None when the check failed, then `error`)."""

    score: float | None
    mode: str | None  # "image" (the vision model saw it) | "caption" (judged on its captions)
    model: str
    answers: list[AnswerRecord]
    source: str  # where a yes/no probability came from (log-probabilities or the answer text)
    error: str


class HitRecord(TypedDict):
    """A ranked gallery item with its fused component scores; `score` orders the list (the verified score once
    reranked)."""

    id: str
    uri: str | None
    captions: list[str]
    metadata: dict[str, Any]
    components: dict[str, float | None]  # fusion component -> similarity (None: the item lacks that embedding)
    retrieval_score: float
    score: float
    verdict: float | None


class QueryInput(TypedDict, total=False):
    """What a caller passes to the graph (see cirgraph.agents.query.build_input, which validates it)."""

    modification: str
    reference: Reference
    caption: str | None
    caption_source: str  # "given" | "gallery" when a caption came with the query
    max_rounds: int
    score_ids: list[str]  # gallery items to score exactly even outside the ranking (see agents.ranking.rank)


class PipelineState(QueryInput, total=False):
    """Everything a run produces. Lists with `operator.add` accumulate over rounds; dicts with `merge` update."""

    # recompose / review / reflect
    descriptions: list[str]
    description_source: str  # "recompose", "human", "reflect", "baseline", "fallback", "modification"
    edits: list[str]
    # decompose
    propositions: list[PropositionRecord]
    # retrieve
    queries: list[str]  # the texts actually searched for in the last round
    hits: list[HitRecord]  # ranked
    weights: dict[str, float]  # effective fusion weights of the last round
    excluded: list[str]  # gallery ids left out as the reference itself
    extra_scores: dict[str, float]  # score_ids outside the kept hits -> their fused retrieval score
    round: int  # retrieval rounds done
    # rerank
    verdicts: Annotated[dict[str, VerdictRecord], merge]  # cirgraph.agents.verdicts.verdict_key -> verdict
    # reflect
    reflections: Annotated[list[dict[str, Any]], operator.add]
    stop_reason: str | None
    # explanation
    trace: Annotated[list[dict[str, Any]], operator.add]  # one entry per node run: stage, round, seconds, calls
    prompts: Annotated[dict[str, dict[str, str]], merge]  # stage -> {"template", "sha"}
    degraded: Annotated[list[dict[str, Any]], operator.add]  # {"stage", "reason", "fallback"}
