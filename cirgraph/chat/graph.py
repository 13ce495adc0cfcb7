"""The conversation as a small LangGraph graph, checkpointed per thread: open, turn, undo, reset.

    START -> open | turn | undo | reset -> END      (routed by the action the caller sends)

State is plain data (the gallery name, the list of turn records, the last action), so the SQLite checkpointer needs
no serializer allow-list and any process can continue a thread. The turn node runs one retrieval with the thread's
gallery Retriever and streams each pipeline stage to the caller through LangGraph's custom stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from cirgraph.agents.context import PipelineConfig
from cirgraph.agents.query import GalleryRef
from cirgraph.chat.turns import record_turn

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

    from cirgraph.chat.store import ChatStore
    from cirgraph.retriever import Retriever


class ChatState(TypedDict, total=False):
    """A thread: its gallery, its turns (oldest first), and the action being applied."""

    gallery: str
    turns: list[dict[str, Any]]
    resets: int
    action: dict[str, Any]


@dataclass(frozen=True, kw_only=True, slots=True)
class TurnSettings:
    """Per-call settings of a turn (LangGraph context): results wanted and the pipeline configuration."""

    k: int | None = field(default=None, metadata={"description": "Results per turn; None = the retriever's k."})
    config: PipelineConfig | str | None = field(
        default=None, metadata={"description": "Pipeline configuration or preset; None = the retriever's."})


def reference_source(reference: dict[str, Any], store: ChatStore) -> Any:
    """What the Retriever accepts for a stored reference record: a GalleryRef or the uploaded image's bytes."""
    if reference["kind"] == "gallery":
        return GalleryRef(reference["id"])
    return store.get_upload(reference["hash"])


async def open_thread(state: ChatState) -> dict[str, Any]:
    """Start a thread on a gallery."""
    return {"gallery": state["action"]["gallery"], "turns": [], "resets": 0}


async def turn(state: ChatState, runtime: Runtime[TurnSettings], *, retrievers: Mapping[str, Retriever],
               store: ChatStore) -> dict[str, Any]:
    """Run the planned turn: search (streaming each stage) unless it only selects a reference; append its record."""
    action, turns = state["action"], list(state.get("turns") or [])
    result = None
    if action["modification"] is not None:
        settings = runtime.context or TurnSettings()
        write = get_stream_writer()
        search = retrievers[state["gallery"]].astream(
            reference_source(action["reference"], store), action["modification"], caption=action["context"],
            k=settings.k, config=settings.config)
        async for stage, payload in search:
            if stage == "result":
                result = payload
            else:
                write({"stage": stage, "update": payload})
    return {"turns": [*turns, record_turn(action, len(turns) + 1, result)]}


async def undo(state: ChatState) -> dict[str, Any]:
    """Forget the last turn: the one before it is current again."""
    return {"turns": list(state.get("turns") or [])[:-1]}


async def reset(state: ChatState) -> dict[str, Any]:
    """Start over on the same thread and gallery."""
    return {"turns": [], "resets": state.get("resets", 0) + 1}


async def route(state: ChatState) -> Literal["open", "turn", "undo", "reset"]:
    return state["action"]["kind"]


def build_chat_graph(retrievers: Mapping[str, Retriever], store: ChatStore) -> CompiledStateGraph:
    """Compile the conversation graph over `store`'s checkpointer."""
    builder = StateGraph(ChatState, context_schema=TurnSettings)
    builder.add_node("open", open_thread)
    builder.add_node("turn", partial(turn, retrievers=retrievers, store=store))
    builder.add_node("undo", undo)
    builder.add_node("reset", reset)
    builder.add_conditional_edges(START, route)
    for node in ("open", "turn", "undo", "reset"):
        builder.add_edge(node, END)
    return builder.compile(checkpointer=store.saver, name="cirgraph-chat")
