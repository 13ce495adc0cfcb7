"""Conversations: every thread of a ChatStore, over one or more galleries. The SDK session, the terminal chat and
the web API all go through this object.

Turns of one thread run one at a time (a per-thread lock), turns of different threads run concurrently; each turn
reads its thread's checkpoint, plans the turn (cirgraph.chat.turns) and runs the conversation graph, which appends
the turn to the checkpoint. Threads in other processes sharing the SQLite file are not locked against.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
import weakref
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from cirgraph.chat.graph import TurnSettings, build_chat_graph
from cirgraph.chat.sources import DEFAULT_MAX_UPLOAD_BYTES, remote_reference, to_reference
from cirgraph.chat.store import ThreadNotFound, check_thread_id
from cirgraph.chat.turns import plan_turn
from cirgraph.errors import InputError

if TYPE_CHECKING:
    from cirgraph.agents.context import PipelineConfig
    from cirgraph.chat.store import ChatStore
    from cirgraph.retriever import Retriever

Event = tuple[str, Any]  # ("stage", (name, update)) while a search runs, then ("turn", record)


class Conversations:
    """Threads stored in `store`, searched with one Retriever per gallery name."""

    def __init__(self, store: ChatStore, retrievers: Mapping[str, Retriever] | Retriever, *,
                 max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, allow_remote: bool = False,
                 parse_ordinals: bool = True) -> None:
        if not isinstance(retrievers, Mapping):
            retrievers = {retrievers.gallery.name: retrievers}
        if not retrievers:
            raise InputError("retrievers", "at least one gallery is needed")
        self.store = store
        self.retrievers = dict(retrievers)
        self.max_upload_bytes = max_upload_bytes
        self.allow_remote = allow_remote
        self.parse_ordinals = parse_ordinals
        self.graph = build_chat_graph(self.retrievers, store)
        self._locks: weakref.WeakKeyDictionary[Any, weakref.WeakValueDictionary[str, asyncio.Lock]] = \
            weakref.WeakKeyDictionary()
        self._locks_guard = threading.Lock()

    @property
    def galleries(self) -> list[str]:
        return list(self.retrievers)

    def retriever(self, gallery: str) -> Retriever:
        """The retriever of a gallery this object serves; InputError naming the known ones otherwise."""
        try:
            return self.retrievers[gallery]
        except (KeyError, TypeError):
            raise InputError(f"gallery {str(gallery)[:80]!r}",
                             f"not served here; choose one of: {', '.join(self.retrievers)}") from None

    def _lock(self, thread_id: str) -> asyncio.Lock:
        """The lock of a thread on the running event loop (asyncio locks belong to one loop)."""
        with self._locks_guard:
            per_loop = self._locks.setdefault(asyncio.get_running_loop(), weakref.WeakValueDictionary())
            lock = per_loop.get(thread_id)
            if lock is None:
                lock = per_loop[thread_id] = asyncio.Lock()
            return lock

    @staticmethod
    def _run(thread_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": thread_id}}

    # -- reading -----------------------------------------------------------------------------------------------------

    async def get(self, thread_id: str) -> dict[str, Any] | None:
        """A thread's state ({"gallery", "turns", "resets"}), or None when there is no such thread."""
        snapshot = await self.graph.aget_state(self._run(check_thread_id(thread_id)))
        values = snapshot.values or {}
        if "gallery" not in values:
            return None
        return {"thread_id": thread_id, "gallery": values["gallery"], "turns": list(values.get("turns") or []),
                "resets": values.get("resets", 0)}

    async def require(self, thread_id: str) -> dict[str, Any]:
        """A thread's state, or ThreadNotFound."""
        state = await self.get(thread_id)
        if state is None:
            raise ThreadNotFound(thread_id)
        return state

    # -- changing --------------------------------------------------------------------------------------------------

    async def create(self, thread_id: str | None = None, *, gallery: str | None = None) -> dict[str, Any]:
        """Open a thread (a new id unless one is given); an existing thread must be on the same gallery."""
        thread_id = check_thread_id(thread_id) if thread_id is not None else uuid.uuid4().hex
        gallery = gallery if gallery is not None else self.galleries[0]
        self.retriever(gallery)
        async with self._lock(thread_id):
            return await self._open(thread_id, gallery)

    async def _open(self, thread_id: str, gallery: str) -> dict[str, Any]:
        state = await self.get(thread_id)
        if state is not None:
            if state["gallery"] != gallery:
                raise InputError(f"thread {thread_id!r}", f"belongs to gallery {state['gallery']!r}, not {gallery!r}")
            return state
        await self.graph.ainvoke({"action": {"kind": "open", "gallery": gallery}}, self._run(thread_id))
        return await self.require(thread_id)

    def reference(self, image: Any, gallery: str) -> dict[str, Any]:
        """Validate and keep a reference image for a thread on `gallery` (see cirgraph.chat.sources)."""
        retriever = self.retriever(gallery)
        return to_reference(image, self.store, retriever.gallery, max_pixels=retriever.max_image_pixels,
                            max_bytes=self.max_upload_bytes, allow_remote=self.allow_remote)

    def remote_reference(self, url: str, gallery: str) -> dict[str, Any]:
        """An http(s) image URL sent by a remote client as a thread's reference; never a local path."""
        retriever = self.retriever(gallery)
        return remote_reference(url, self.store, max_pixels=retriever.max_image_pixels,
                                max_bytes=self.max_upload_bytes, allow_remote=self.allow_remote)

    async def stream(self, thread_id: str, text: str = "", *, image: Any = None,
                     reference: dict[str, Any] | None = None, pick: int | None = None, k: int | None = None,
                     config: PipelineConfig | str | None = None,
                     create: bool = False, gallery: str | None = None) -> AsyncIterator[Event]:
        """Run one turn; yield ("stage", (name, update)) per pipeline stage, then ("turn", record).

        `image` is a user's reference (path, bytes, PIL image, GalleryRef, URL when allowed), `reference` one already
        validated by `reference()`. With `create`, an unknown thread is opened on `gallery` first; otherwise it is
        ThreadNotFound. Input errors are raised before anything runs.
        """
        check_thread_id(thread_id)
        async with self._lock(thread_id):
            state = await self.get(thread_id)
            if state is None:
                if not create:
                    raise ThreadNotFound(thread_id)
                state = await self._open(thread_id, gallery if gallery is not None else self.galleries[0])
            elif gallery is not None and gallery != state["gallery"]:
                raise InputError(f"thread {thread_id!r}", f"belongs to gallery {state['gallery']!r}, not {gallery!r}")
            if image is not None:
                reference = await asyncio.to_thread(self.reference, image, state["gallery"])
            action = plan_turn(state["turns"], text=text, reference=reference, pick=pick,
                               parse_ordinals=self.parse_ordinals)
            final: dict[str, Any] = {}
            async for mode, chunk in self.graph.astream({"action": action}, self._run(thread_id),
                                                        context=TurnSettings(k=k, config=config),
                                                        stream_mode=["custom", "values"]):
                if mode == "custom":
                    yield "stage", (chunk["stage"], chunk["update"])
                else:
                    final = chunk
            yield "turn", final["turns"][-1]

    async def send(self, thread_id: str, text: str = "", **kwargs: Any) -> dict[str, Any]:
        """Run one turn and return its record (see `stream` for the arguments)."""
        record: dict[str, Any] = {}
        async for kind, payload in self.stream(thread_id, text, **kwargs):
            if kind == "turn":
                record = payload
        return record

    async def undo(self, thread_id: str) -> dict[str, Any]:
        """Remove the last turn and return it; InputError when the thread has none."""
        async with self._lock(thread_id):
            state = await self.require(thread_id)
            if not state["turns"]:
                raise InputError(f"thread {thread_id!r}", "has no turn to undo")
            await self.graph.ainvoke({"action": {"kind": "undo"}}, self._run(thread_id))
            return state["turns"][-1]

    async def reset(self, thread_id: str) -> dict[str, Any]:
        """Forget every turn of the thread (it keeps its id and gallery); returns the emptied state."""
        async with self._lock(thread_id):
            await self.require(thread_id)
            await self.graph.ainvoke({"action": {"kind": "reset"}}, self._run(thread_id))
            return await self.require(thread_id)
