"""decompose (NDCR): the LLM splits the target into atomic propositions, each with a polarity (must show / must
not show) and a yes/no question that rerank uses to verify candidates. On failure: no propositions (rerank then
checks the whole description as one proposition)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from cirgraph.agents.context import PipelineConfig
from cirgraph.agents.nodes._trace import degraded, traced
from cirgraph.agents.query import baseline_query
from cirgraph.agents.schemas import Propositions
from cirgraph.agents.services import Services
from cirgraph.agents.state import PipelineState
from cirgraph.errors import ModelError
from cirgraph.prompts.loader import render
from cirgraph.tools.messages import Message


def target_text(state: PipelineState) -> str:
    """The most detailed target description (the last one), or caption + modification without recompose."""
    descriptions = state.get("descriptions") or []
    return descriptions[-1] if descriptions else baseline_query(state, "caption+modification")


@traced("decompose")
async def decompose(state: PipelineState, runtime: Runtime[PipelineConfig], *, services: Services) -> dict[str, Any]:
    """Propositions about the target image, most important first, de-duplicated by question."""
    ctx = runtime.context
    prompt = render("decompose", ctx.decompose_prompt, target=target_text(state), caption=state.get("caption"),
                    modification=state["modification"], max_propositions=ctx.max_propositions)
    update: dict[str, Any] = {"prompts": {"decompose": prompt.ref()}}
    try:
        out = await services.llm.complete([Message.user(prompt.text)], schema=Propositions)
    except ModelError as exc:
        return {**update, "propositions": [], "degraded": [degraded("decompose", exc, "no propositions")]}
    seen: set[str] = set()
    props = []
    for p in out.propositions:
        key = " ".join(p.question.lower().split())
        if key not in seen:
            seen.add(key)
            props.append({"text": p.text, "polarity": p.polarity, "question": p.question})
    return {**update, "propositions": props[: ctx.max_propositions]}
