"""The pipeline as a LangGraph StateGraph. This module only wires: nodes live in cirgraph.agents.nodes, routing in
cirgraph.agents.routing, settings in PipelineConfig (context_schema), clients in Services (bound at build time).

    START -> [caption_reference] -> [recompose] -> [review_description] -> [decompose] -> retrieve
          retrieve -> [rerank] -> [reflect] -> retrieve (another round) | END
Bracketed stages run when their setting is on (and, for caption_reference, when no caption is known).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from langgraph.graph import END, START, StateGraph

from cirgraph.agents import routing
from cirgraph.agents.context import PipelineConfig
from cirgraph.agents.nodes.caption_reference import caption_reference
from cirgraph.agents.nodes.decompose import decompose
from cirgraph.agents.nodes.recompose import recompose
from cirgraph.agents.nodes.reflect import reflect
from cirgraph.agents.nodes.rerank import rerank
from cirgraph.agents.nodes.retrieve import retrieve
from cirgraph.agents.nodes.review import review_description
from cirgraph.agents.state import PipelineState, QueryInput

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph
    from langgraph.types import Checkpointer

    from cirgraph.agents.services import Services

NODES = ("caption_reference", "recompose", "review_description", "decompose", "retrieve", "rerank", "reflect")


def build_graph(services: Services, *, checkpointer: Checkpointer = False) -> CompiledStateGraph:
    """Compile the pipeline with `services` bound into its nodes. A checkpointer is needed for review (interrupt).

    The default, False, never checkpoints: None would make a run started inside another graph's node inherit that
    graph's checkpointer, saving the whole pipeline state (reference image bytes included) into the caller's store.
    """
    builder = StateGraph(PipelineState, context_schema=PipelineConfig, input_schema=QueryInput)
    builder.add_node("caption_reference", partial(caption_reference, services=services))
    builder.add_node("recompose", partial(recompose, services=services))
    builder.add_node("review_description", review_description)
    builder.add_node("decompose", partial(decompose, services=services))
    builder.add_node("retrieve", partial(retrieve, services=services))
    builder.add_node("rerank", partial(rerank, services=services))
    builder.add_node("reflect", partial(reflect, services=services))

    builder.add_conditional_edges(START, routing.route_start)
    builder.add_conditional_edges("caption_reference", routing.route_after_caption)
    builder.add_conditional_edges("recompose", routing.route_after_recompose)
    builder.add_conditional_edges("review_description", routing.route_after_review)
    builder.add_edge("decompose", "retrieve")
    builder.add_conditional_edges("retrieve", routing.route_after_retrieve)
    builder.add_conditional_edges("rerank", routing.route_after_rerank)
    builder.add_conditional_edges("reflect", routing.route_after_reflect)
    return builder.compile(checkpointer=checkpointer, name="cirgraph")


__all__ = ["END", "NODES", "build_graph"]
