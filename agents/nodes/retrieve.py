"""retrieve: rank gallery items for the current descriptions (cirgraph.agents.ranking) and keep the top results.

The ranking is synchronous (embedders, the store) and runs in a worker thread, so concurrent queries overlap.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime

from cirgraph.agents.context import PipelineConfig
from cirgraph.agents.nodes._trace import traced
from cirgraph.agents.ranking import rank
from cirgraph.agents.services import Services
from cirgraph.agents.state import PipelineState
from cirgraph.agents.texts import baseline_query


@traced("retrieve")
async def retrieve(state: PipelineState, runtime: Runtime[PipelineConfig], *, services: Services) -> dict[str, Any]:
    """Search with the current descriptions (or the baseline text) and keep the top results with their scores."""
    ctx = runtime.context
    queries = list(state.get("descriptions") or [baseline_query(state, ctx.baseline_text)])
    ranked = await asyncio.to_thread(
        rank, services, ctx, queries, list(state.get("propositions") or []), state["reference"],
        modification=state.get("modification"), caption=state.get("caption"),
        score_ids=list(state.get("score_ids") or []),
    )
    return {"queries": queries, "hits": ranked.hits, "weights": ranked.weights, "excluded": ranked.excluded,
            "extra_scores": ranked.extra_scores, "round": state.get("round", 0) + 1}


