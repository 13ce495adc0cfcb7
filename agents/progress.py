"""One line per finished pipeline stage, saying what it produced: progress for `cirgraph search`, the terminal
chat and the web chat, from the (stage, partial update) pairs that Retriever.astream yields."""

from __future__ import annotations

from typing import Any


def stage_summary(stage: str, update: dict[str, Any]) -> str:
    """E.g. 'recompose: 3 description(s) (0.84s)', with ' [degraded]' when the stage fell back."""
    seconds = sum(t.get("seconds", 0.0) for t in update.get("trace") or [])
    if stage == "caption_reference":
        detail = f"caption: {update['caption']}" if update.get("caption") else "no caption"
    elif stage in ("recompose", "review_description"):
        detail = f"{len(update.get('descriptions') or [])} description(s)"
    elif stage == "decompose":
        detail = f"{len(update.get('propositions') or [])} proposition(s)"
    elif stage == "retrieve":
        detail = f"{len(update.get('hits') or [])} candidates (round {update.get('round', 1)})"
    elif stage == "rerank":
        detail = f"{len(update.get('verdicts') or {})} candidate(s) checked"
    elif stage == "reflect":
        detail = f"stop: {update['stop_reason']}" if update.get("stop_reason") else "revised the description"
    else:
        detail = ""
    warn = " [degraded]" if update.get("degraded") else ""
    return f"{stage}: {detail} ({seconds:.2f}s){warn}"
