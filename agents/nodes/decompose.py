"""decompose (NDCR): the LLM splits the target into atomic propositions, each with a polarity (must show / must
not show) and a yes/no question that rerank uses to verify candidates. On failure: no propositions (rerank then
checks the whole description as one proposition).

A proposition lifted from the prompt's own examples ("Is the dress red?" for a query about paper towels, as
Qwen2.5-0.5B does) is dropped: its text or question appears in the template and names things the query never
mentions. Dropped propositions are listed in `degraded`."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from cirgraph.agents.context import PipelineConfig
from cirgraph.agents.nodes._trace import degraded, traced
from cirgraph.agents.schemas import Checks, Proposition, Propositions
from cirgraph.agents.services import Services
from cirgraph.agents.state import PipelineState
from cirgraph.agents.texts import copied_example, target_text
from cirgraph.errors import ModelError
from cirgraph.prompts.loader import render


@traced("decompose")
async def decompose(state: PipelineState, runtime: Runtime[PipelineConfig], *, services: Services) -> dict[str, Any]:
    """Propositions about the target image, most important first, de-duplicated by question."""
    ctx = runtime.context
    prompt = render("decompose", ctx.decompose_prompt, target=target_text(state), caption=state.get("caption"),
                    modification=state["modification"], max_propositions=ctx.max_propositions)
    update: dict[str, Any] = {"prompts": {"decompose": prompt.ref()}}
    try:
        if prompt.output == "checks":  # a small model: two lists of phrases; the questions are written here
            checks = await services.llm.complete(prompt.messages(), schema=Checks, max_tokens=prompt.max_tokens)
            found = [Proposition(text=t, polarity=pol, question=f"Does the photo show {t}?")
                     for pol, texts in (("must_show", checks.show), ("must_not_show", checks.avoid))
                     for t in texts if t.strip()]
        else:
            found = (await services.llm.complete(prompt.messages(), schema=Propositions,
                                                 max_tokens=prompt.max_tokens)).propositions
    except ModelError as exc:
        return {**update, "propositions": [], "degraded": [degraded("decompose", exc, "no propositions")]}
    inputs = [x for x in (target_text(state), state.get("caption"), state["modification"]) if x]
    seen: set[str] = set()
    props, copied = [], []
    for p in found:
        key = " ".join(p.question.lower().split())
        if ctx.check_outputs and any(copied_example(t, prompt=prompt.text, inputs=inputs)
                                     for t in (p.text, p.question)):
            copied.append(p.question)
        elif key not in seen:
            seen.add(key)
            props.append({"text": p.text, "polarity": p.polarity, "question": p.question})
    if copied:
        update["degraded"] = [degraded("decompose", "propositions copied from the prompt's examples: "
                                       + "; ".join(repr(q) for q in copied), "the other propositions")]
    return {**update, "propositions": props[: ctx.max_propositions]}
