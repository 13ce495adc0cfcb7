"""recompose (CIReVL): the LLM writes the target image's description(s) from the caption and the modification.

With n_descriptions > 1 it writes several, from the essential content to full detail, which retrieve ensembles
(LDRE, ImageScope). Without a caption there is nothing to recompose: the modification text stands in.

A description that cannot stand for the target is dropped: one that repeats the reference caption unchanged (the
change was not applied; Qwen2.5-0.5B does this for about 4 in 10 CIRR queries) or copies a run of the prompt's own
instructions. When the LLM fails or nothing is left, the configured fallback text (caption + modification by
default) stands in, and the result says so in `degraded`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime

from cirgraph.agents.context import PipelineConfig
from cirgraph.agents.nodes._trace import degraded, traced
from cirgraph.agents.schemas import Recomposition
from cirgraph.agents.services import Services
from cirgraph.agents.state import PipelineState
from cirgraph.agents.texts import baseline_query, clean, unusable
from cirgraph.errors import ModelError
from cirgraph.prompts.loader import Rendered, render
from cirgraph.tools.structured import parse_sentence_reply

FALLBACK_NAMES = {"caption+modification": "caption + modification text", "modification": "modification text",
                  "caption": "caption"}
SAMPLE_TEMPERATURES = (0.7, 0.9, 1.1, 0.8, 1.0, 0.6, 1.2)  # the extra descriptions of a plain-text ensemble


@traced("recompose")
async def recompose(state: PipelineState, runtime: Runtime[PipelineConfig], *, services: Services) -> dict[str, Any]:
    """Describe the target image; a partial update with `descriptions` and where they came from."""
    ctx = runtime.context
    if not state.get("caption"):
        return {"descriptions": [state["modification"]], "description_source": "modification", "edits": []}
    prompt = render("recompose", ctx.recompose_prompt, caption=state["caption"], modification=state["modification"],
                    n=ctx.n_descriptions)
    update: dict[str, Any] = {"prompts": {"recompose": prompt.ref()}}
    fallback = baseline_query(state, ctx.fallback_text)
    instead = FALLBACK_NAMES[ctx.fallback_text]
    try:
        if prompt.output == "sentence":
            edits, written = [], await _sentences(services, prompt, ctx.n_descriptions)
        else:
            out = await services.llm.complete(prompt.messages(), schema=Recomposition, max_tokens=prompt.max_tokens)
            edits, written = out.edits, clean(out.descriptions, ctx.n_descriptions)
        if not written:
            raise ModelError(services.llm.name, "recompose returned only empty descriptions")
    except ModelError as exc:
        return {**update, "descriptions": [fallback], "description_source": "fallback", "edits": [],
                "degraded": [degraded("recompose", exc, instead)]}
    reasons = {d: unusable(d, caption=state["caption"], modification=state["modification"], prompt=prompt.text)
               if ctx.check_outputs else None for d in written}
    descriptions = [d for d in written if reasons[d] is None]
    dropped = [f"{d[:80]!r} {why}" for d, why in reasons.items() if why]
    if not descriptions:
        return {**update, "descriptions": [fallback], "description_source": "fallback", "edits": [],
                "degraded": [degraded("recompose", "; ".join(dropped), instead)]}
    note = [degraded("recompose", "; ".join(dropped), "the other descriptions")] if dropped else []
    return {**update, "descriptions": descriptions, "description_source": "recompose", "edits": clean(edits, 20),
            **({"degraded": note} if note else {})}


async def _sentences(services: Services, prompt: Rendered, n: int) -> list[str]:
    """Descriptions from a plain-text template (one sentence a reply): the first at temperature 0, the others
    sampled for an ensemble (LDRE), each at its own temperature so that a call cache keeps them apart; all asked
    at once."""
    temperatures = [0.0] + [SAMPLE_TEMPERATURES[i % len(SAMPLE_TEMPERATURES)] for i in range(n - 1)]
    replies = await asyncio.gather(*(services.llm.complete(prompt.messages(), temperature=t,
                                                           max_tokens=prompt.max_tokens) for t in temperatures),
                                   return_exceptions=True)
    errors = [r for r in replies if isinstance(r, BaseException)]
    if len(errors) == len(replies):
        raise errors[0]
    return clean([s for r in replies if isinstance(r, str) and (s := parse_sentence_reply(r))], n)
