"""review_description (human in the loop): pause after recompose so a person can accept or edit the target
description. Needs a checkpointer; the caller resumes with Command(resume=...) carrying None (accept), a string,
a list of strings, or {"descriptions": [...]}."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from cirgraph.agents.context import PipelineConfig
from cirgraph.agents.nodes._trace import traced
from cirgraph.agents.nodes.recompose import clean
from cirgraph.agents.state import PipelineState
from cirgraph.errors import InputError


def edited_descriptions(answer: Any, current: list[str], limit: int) -> list[str] | None:
    """The descriptions a resume value asks for, or None to keep `current`. InputError for an unusable value."""
    if answer is None or answer is True or answer == "" or answer == []:
        return None
    if isinstance(answer, dict):
        answer = answer.get("descriptions", answer.get("description"))
    texts = [answer] if isinstance(answer, str) else answer
    if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
        raise InputError("review answer", f"expected None, a string or a list of strings, got {type(answer).__name__}")
    cleaned = clean(list(texts), limit)
    if not cleaned:
        raise InputError("review answer", "the edited description is empty")
    return None if cleaned == current else cleaned


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
