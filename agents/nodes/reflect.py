"""reflect: decide whether to stop, and if not, let the LLM revise the target description from the failures.

Stop rule, in order: no verdicts to judge by -> stop; the best verdict among the top `reflect_top` candidates
reaches `stop_threshold` -> stop (confident); the retrieval rounds in state reach `max_rounds` -> stop. Otherwise
the propositions the top candidates failed go to the LLM, whose revised descriptions send the graph back to
retrieve. An LLM failure stops the loop (and is reported as a degradation).
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from cirgraph.agents.context import PipelineConfig
from cirgraph.agents.fusion import NEUTRAL
from cirgraph.agents.nodes._trace import degraded, traced
from cirgraph.agents.schemas import Revision
from cirgraph.agents.services import Services
from cirgraph.agents.state import PipelineState
from cirgraph.agents.texts import clean
from cirgraph.agents.verdicts import checks, propositions_key, verdict_of
from cirgraph.errors import ModelError
from cirgraph.prompts.loader import render
from cirgraph.tools.structured import parse_sentence_reply


def failures(props: list[dict], verdicts: list[dict], threshold: float) -> list[dict[str, Any]]:
    """Propositions that fail (hold with probability < threshold) for at least one judged candidate."""
    out = []
    for i, p in enumerate(props, 1):
        held = [next((a["holds"] for a in v.get("answers", []) if a["index"] == i), NEUTRAL) for v in verdicts]
        failed = sum(1 for h in held if h < threshold)
        if failed:
            out.append({"text": p["text"], "polarity": p["polarity"], "question": p["question"], "failed": failed})
    return out


@traced("reflect")
async def reflect(state: PipelineState, runtime: Runtime[PipelineConfig], *, services: Services) -> dict[str, Any]:
    """Stop (setting `stop_reason`) or revise the descriptions for another round."""
    ctx = runtime.context
    props = checks(state)
    pkey, verdicts = propositions_key(props), state.get("verdicts") or {}
    top = [verdict_of(verdicts, h["id"], pkey) for h in (state.get("hits") or [])[: ctx.reflect_top]]
    judged = [v for v in top if v and v.get("score") is not None]
    rounds, bound = state.get("round", 1), state.get("max_rounds", ctx.max_rounds)
    confidence = max((v["score"] for v in judged), default=None)
    note = {"round": rounds, "confidence": confidence}
    if confidence is None:
        return {"stop_reason": "no verdicts", "reflections": [{**note, "decision": "stop: no verdicts"}]}
    if confidence >= ctx.stop_threshold:
        return {"stop_reason": "confident", "reflections": [{**note, "decision": "stop: confident"}]}
    if rounds >= bound:
        return {"stop_reason": "max_rounds", "reflections": [{**note, "decision": "stop: max_rounds"}]}
    failed = failures(props, judged, ctx.stop_threshold)
    current = list(state.get("descriptions") or state.get("queries") or [])
    n = max(1, len(current))
    prompt = render("reflect", ctx.reflect_prompt, caption=state.get("caption"), modification=state["modification"],
                    descriptions=current, failures=failed, checked=len(judged), n=n)
    update: dict[str, Any] = {"prompts": {"reflect": prompt.ref()}}
    try:
        if prompt.output == "sentence":  # a small model: one plainer sentence, no diagnosis
            reply = await services.llm.complete(prompt.messages(), max_tokens=prompt.max_tokens)
            diagnosis, revised = "", clean([parse_sentence_reply(reply) or ""], 1)
        else:
            out = await services.llm.complete(prompt.messages(), schema=Revision, max_tokens=prompt.max_tokens)
            diagnosis, revised = out.diagnosis, clean(out.descriptions, n)
        if not revised:
            raise ModelError(services.llm.name, "reflect returned only empty descriptions")
    except ModelError as exc:
        return {**update, "stop_reason": "degraded", "degraded": [degraded("reflect", exc, "stop with these results")],
                "reflections": [{**note, "failures": failed, "decision": "stop: revision failed"}]}
    return {**update, "descriptions": revised, "description_source": "reflect",
            "reflections": [{**note, "failures": failed, "diagnosis": diagnosis, "decision": "revise"}]}
