"""recompose (CIReVL): the LLM writes the target image's description(s) from the caption and the modification.

With n_descriptions > 1 it writes several, from the essential content to full detail, which retrieve ensembles
(LDRE, ImageScope). Without a caption there is nothing to recompose: the modification text stands in. When the LLM
fails, caption + modification concatenated stands in, and the result says so.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from cirgraph.agents.context import PipelineConfig
from cirgraph.agents.nodes._trace import degraded, traced
from cirgraph.agents.query import baseline_query
from cirgraph.agents.schemas import Recomposition
from cirgraph.agents.services import Services
from cirgraph.agents.state import PipelineState
from cirgraph.errors import ModelError
from cirgraph.prompts.loader import render
from cirgraph.tools.messages import Message


def clean(texts: list[str], limit: int) -> list[str]:
    """Non-empty, whitespace-normalised, de-duplicated texts, at most `limit`, order kept."""
    out: list[str] = []
    for text in texts:
        norm = " ".join(str(text).split())
        if norm and norm.lower() not in {t.lower() for t in out}:
            out.append(norm)
    return out[:limit]


@traced("recompose")
async def recompose(state: PipelineState, runtime: Runtime[PipelineConfig], *, services: Services) -> dict[str, Any]:
    """Describe the target image; a partial update with `descriptions` and where they came from."""
    ctx = runtime.context
    if not state.get("caption"):
        return {"descriptions": [state["modification"]], "description_source": "modification", "edits": []}
    prompt = render("recompose", ctx.recompose_prompt, caption=state["caption"], modification=state["modification"],
                    n=ctx.n_descriptions)
    update: dict[str, Any] = {"prompts": {"recompose": prompt.ref()}}
    fallback = baseline_query(state, "caption+modification")
    try:
        out = await services.llm.complete([Message.user(prompt.text)], schema=Recomposition)
        descriptions = clean(out.descriptions, ctx.n_descriptions)
        if not descriptions:
            raise ModelError(services.llm.name, "recompose returned only empty descriptions")
    except ModelError as exc:
        return {**update, "descriptions": [fallback], "description_source": "fallback", "edits": [],
                "degraded": [degraded("recompose", exc, "caption + modification text")]}
    return {**update, "descriptions": descriptions, "description_source": "recompose", "edits": clean(out.edits, 20)}
