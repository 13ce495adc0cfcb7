"""Where the graph goes next. Each router reads the run's configuration and the state, and names a node.

Routers are `async def` only because LangGraph runs a synchronous router in a worker thread: at a handful of
routers per query, that thread hop was most of the orchestration overhead.
"""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END
from langgraph.runtime import Runtime

from cirgraph.agents.context import PipelineConfig
from cirgraph.agents.state import PipelineState


def _after_caption(ctx: PipelineConfig) -> Literal["recompose", "decompose", "retrieve"]:
    if ctx.recompose:
        return "recompose"
    return _after_review(ctx)


def _after_review(ctx: PipelineConfig) -> Literal["decompose", "retrieve"]:
    return "decompose" if ctx.decompose else "retrieve"


async def route_start(
    state: PipelineState, runtime: Runtime[PipelineConfig]
) -> Literal["caption_reference", "recompose", "decompose", "retrieve"]:
    """Caption the reference unless captioning is off or a caption came with the query."""
    if runtime.context.caption and not state.get("caption"):
        return "caption_reference"
    return _after_caption(runtime.context)


async def route_after_caption(
    state: PipelineState, runtime: Runtime[PipelineConfig]
) -> Literal["recompose", "decompose", "retrieve"]:
    return _after_caption(runtime.context)


async def route_after_recompose(
    state: PipelineState, runtime: Runtime[PipelineConfig]
) -> Literal["review_description", "decompose", "retrieve"]:
    """Pause for a person when review is on (whatever the description came from), else continue."""
    if runtime.context.review:
        return "review_description"
    return _after_review(runtime.context)


async def route_after_review(
    state: PipelineState, runtime: Runtime[PipelineConfig]
) -> Literal["decompose", "retrieve"]:
    return _after_review(runtime.context)


async def route_after_retrieve(
    state: PipelineState, runtime: Runtime[PipelineConfig]
) -> Literal["rerank", "__end__"]:
    """Verify when rerank is on and there is something to verify."""
    return "rerank" if runtime.context.rerank and state.get("hits") else END


async def route_after_rerank(
    state: PipelineState, runtime: Runtime[PipelineConfig]
) -> Literal["reflect", "__end__"]:
    return "reflect" if runtime.context.reflect else END


async def route_after_reflect(
    state: PipelineState, runtime: Runtime[PipelineConfig]
) -> Literal["retrieve", "__end__"]:
    """Loop while reflect revised the description; it sets `stop_reason` when it decides to stop."""
    return END if state.get("stop_reason") else "retrieve"
