"""The SDK face of the assistant: one conversation, persisted under a thread id.

    chat = ChatSession(thread_id="shopping", retriever=retriever)     # or ChatSession(settings=Settings())
    turn = chat.send("make it red", image="dress.jpg")
    turn = chat.send("now with long sleeves")                         # refines the current target
    turn = chat.send("the second one, but blue")                       # or chat.send("but blue", pick=2)
    chat.undo(); chat.reset(); chat.history()

A later `ChatSession(thread_id="shopping", ...)` (another process, after a restart) continues where it stopped: the
thread lives in the SQLite checkpoints under CIRGRAPH_HOME unless a store is given. Every method has an async twin
(`asend`, `astream`, `aundo`, `areset`, `ahistory`); the sync ones run on a private event loop thread.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from cirgraph._loop import LoopThread
from cirgraph.chat.store import ChatStore, check_thread_id
from cirgraph.chat.threads import Conversations
from cirgraph.chat.turns import Turn

if TYPE_CHECKING:
    from cirgraph.agents.context import PipelineConfig
    from cirgraph.retriever import Retriever
    from cirgraph.settings import Settings

StageCallback = Callable[[str, dict[str, Any]], None]
__all__ = ["ChatSession", "Turn"]


class ChatSession:
    """A multi-turn conversation with the retrieval assistant (see the module docstring).

    Give a `retriever` (and optionally a `store`), or `settings` from which both are opened (gallery `gallery`,
    configuration `preset`). Sessions built on one `conversations` object share its per-thread locks. `k` and
    `preset` set the results and pipeline configuration of every turn; `allow_remote` lets `image=` be an http(s)
    URL; `parse_ordinals=False` stops "the second one" from being read as a pick.
    """

    def __init__(self, thread_id: str | None = None, *, retriever: Retriever | None = None,
                 settings: Settings | None = None, gallery: str = "default", preset: PipelineConfig | str | None = None,
                 store: ChatStore | None = None, conversations: Conversations | None = None, k: int | None = None,
                 allow_remote: bool = False, parse_ordinals: bool = True) -> None:
        self.thread_id = check_thread_id(thread_id) if thread_id is not None else uuid.uuid4().hex
        self.k, self.config = k, preset
        self._owned: list[Any] = []
        if conversations is None:
            if retriever is None or store is None:
                from cirgraph.settings import Settings as _Settings

                settings = settings or _Settings()
            if retriever is None:
                from cirgraph.retriever import Retriever as _Retriever

                retriever = _Retriever.from_settings(settings, gallery=gallery, preset=preset)
                self._owned.append(retriever)
            if store is None:
                store = ChatStore.from_settings(settings)
                self._owned.append(store)
            conversations = Conversations(store, retriever, allow_remote=allow_remote, parse_ordinals=parse_ordinals)
        self.conversations = conversations
        if retriever is not None:
            self.gallery = retriever.gallery.name
        else:
            self.gallery = gallery if gallery in conversations.retrievers else conversations.galleries[0]
        self._loop = LoopThread()

    # -- async API -------------------------------------------------------------------------------------------------

    async def astream(self, text: str = "", image: Any = None,
                      pick: int | None = None) -> AsyncIterator[tuple[str, Any]]:
        """Yield ("stage", (name, update)) as each pipeline stage finishes, then ("turn", Turn)."""
        async for kind, payload in self.conversations.stream(
                self.thread_id, text, image=image, pick=pick, k=self.k, config=self.config, create=True,
                gallery=self.gallery):
            yield kind, Turn.from_dict(payload) if kind == "turn" else payload

    async def asend(self, text: str = "", image: Any = None, pick: int | None = None, *,
                    on_stage: StageCallback | None = None) -> Turn:
        """See `send`."""
        turn = None
        async for kind, payload in self.astream(text, image, pick):
            if kind == "turn":
                turn = payload
            elif on_stage is not None:
                on_stage(*payload)
        return turn

    async def aundo(self) -> Turn:
        """See `undo`."""
        return Turn.from_dict(await self.conversations.undo(self.thread_id))

    async def areset(self) -> None:
        """See `reset`."""
        if await self.conversations.get(self.thread_id) is not None:
            await self.conversations.reset(self.thread_id)

    async def ahistory(self) -> list[Turn]:
        """See `history`."""
        state = await self.conversations.get(self.thread_id)
        return [Turn.from_dict(t) for t in state["turns"]] if state else []

    # -- sync API --------------------------------------------------------------------------------------------------

    def send(self, text: str = "", image: Any = None, pick: int | None = None, *,
             on_stage: StageCallback | None = None) -> Turn:
        """One turn: `text` modifies the current target; `image` (path, bytes, PIL image, GalleryRef) starts from a
        new reference; `pick` (1-based) starts from that result of the last search. Phrases such as "the second one"
        or "#2" in `text` pick too. A pick or an image without text only changes the reference (a "select" turn).
        `on_stage(name, update)` is called as each pipeline stage finishes. InputError before anything runs when
        the turn cannot be planned (no reference yet, a pick beyond the results, empty text)."""
        return self._loop.run(self.asend(text, image, pick, on_stage=on_stage))

    def undo(self) -> Turn:
        """Remove the last turn and return it: the turn before it is current again. InputError when there is none."""
        return self._loop.run(self.aundo())

    def reset(self) -> None:
        """Start over: forget every turn (the thread keeps its id and gallery)."""
        self._loop.run(self.areset())

    def history(self) -> list[Turn]:
        """The turns of the conversation, oldest first."""
        return self._loop.run(self.ahistory())

    def close(self) -> None:
        """Stop the private loop and close what the session opened itself (a given retriever or store stays open)."""
        self._loop.close()
        for owned in self._owned:
            owned.close()
        self._owned.clear()

    def __enter__(self) -> ChatSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
