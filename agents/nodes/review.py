"""review_description (human in the loop): pause after recompose so a person can accept or edit the target
description. Needs a checkpointer; the caller resumes with Command(resume=...) carrying None (accept), a string,
a list of strings, or {"descriptions": [...]}."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from cirgraph.agents.context import PipelineConfig
from cirgraph.agents.nodes._trace import traced
from cirgraph.agents.state import PipelineState
from cirgraph.agents.texts import edited_descriptions


@traced("review_description")
async def review_description(state: PipelineState, runtime: Runtime[PipelineConfig]) -> dict[str, Any]:
    """Ask the caller (interrupt) for the final target description."""
    current = list(state.get("descriptions", []))
    answer = interrupt({"stage": "review_description", "caption": state.get("caption"),
                        "modification": state["modification"], "descriptions": current})
    edited = edited_descriptions(answer, current, max(runtime.context.n_descriptions, 8))
    if edited is None:
        return {}
    return {"descriptions": edited, "description_source": "human"}
