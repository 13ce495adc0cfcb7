"""The SDK: one object that answers composed image queries against a gallery.

    retriever = Retriever(gallery=gallery, llm=llm, vlm=vlm, embedder=clip, text_embedder=minilm, config="cirevl")
    result = retriever.search("shirt.jpg", "the same shirt in red, with long sleeves", k=10)
    for hit in result.hits: print(hit.rank, hit.id, hit.score)

`search` is synchronous (it runs on a private event loop thread, so it also works inside notebooks); `asearch`,
`astream` and `asearch_many` are the async forms. With `review=True` in the configuration a search pauses after
recompose (`result.pending`) and `resume(thread_id, descriptions)` continues it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cirgraph._loop import LoopThread
from cirgraph.agents.context import PipelineConfig
from cirgraph.agents.presets import default_preset, preset
from cirgraph.agents.query import GalleryRef, ReferenceSource, build_input
from cirgraph.agents.results import Review, SearchResult
from cirgraph.agents.services import MemoryCache, Services, load_uri_image
from cirgraph.errors import ConfigError, InputError
from cirgraph.tools.images import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    from cirgraph.settings import Settings
    from cirgraph.stores.base import GalleryReader
    from cirgraph.tools.protocols import ChatModel, ImageTextEmbedder, TextEmbedder

__all__ = ["GalleryRef", "PipelineConfig", "Query", "Retriever", "SearchResult"]


@dataclass(frozen=True, slots=True)
class Query:
    """One query of a batch: a reference (path, bytes, PIL image, gallery id) and a modification text."""

    reference: ReferenceSource
    text: str
    caption: str | None = None
    k: int | None = None


def as_config(config: PipelineConfig | str | None, default: PipelineConfig | None = None, *,
              has_llm: bool = False) -> PipelineConfig:
    """A PipelineConfig from a config, a preset name, or None (`default`, else the default preset for the models
    at hand: see cirgraph.agents.presets.default_preset)."""
    if config is None:
        return default or preset(default_preset(has_llm=has_llm)[0])
    if isinstance(config, str):
        return preset(config)
    if isinstance(config, PipelineConfig):
        return config
    raise ConfigError(f"config: expected a PipelineConfig or a preset name, got {type(config).__name__}")


class Retriever:
    """Composed image retrieval over one gallery with injected models. Thread-safe for concurrent searches."""

    def __init__(self, *, gallery: GalleryReader, llm: ChatModel | None = None, vlm: ChatModel | None = None,
                 embedder: ImageTextEmbedder | None = None, text_embedder: TextEmbedder | None = None,
                 config: PipelineConfig | str | None = None, checkpointer: Any = None, caption_cache: Any = None,
                 image_loader: Any = None, max_image_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.services = Services(gallery=gallery, llm=llm, vlm=vlm, embedder=embedder, text_embedder=text_embedder,
                                 caption_cache=caption_cache if caption_cache is not None else MemoryCache(),
                                 image_loader=image_loader or load_uri_image)
        self.config = as_config(config, has_llm=llm is not None)
        self.services.check(self.config)
        self.max_image_pixels = max_image_pixels
        self._checkpointer = checkpointer
        self._graphs: dict[bool, Any] = {}
        self._paused: dict[str, PipelineConfig] = {}
        self._loop = LoopThread()

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *, gallery: str = "default",
                      preset: PipelineConfig | str | None = None, **kwargs: Any) -> Retriever:
        """Open the named gallery (with the embedders it was built with) and the chat models the configuration
        uses, from Settings (environment, .env); see cirgraph.clients. Reference captions are cached persistently
        under the settings' cache folder."""
        try:
            from cirgraph import clients
        except ImportError as exc:
            raise ConfigError(f"Retriever.from_settings needs cirgraph.clients, which is not available ({exc})") \
                from None
        from cirgraph.settings import Settings as _Settings
        from cirgraph.tools.cache import CallCache

        settings = settings or _Settings()
        config = as_config(preset if preset is not None else settings.default_preset()[0])
        store = clients.open_gallery(settings, gallery)
        parts = {"gallery": store, **clients.search_models(settings, store, config).as_kwargs(),
                 "caption_cache": CallCache(settings.cache_dir / "captions.sqlite"),
                 "max_image_pixels": settings.max_image_pixels}
        return cls(**{**parts, **kwargs}, config=config)

    @property
    def gallery(self) -> GalleryReader:
        return self.services.gallery

    def graph(self, *, checkpointed: bool = False) -> Any:
        """The compiled graph (once per variant: with a checkpointer for review runs, without otherwise: never one
        inherited from a graph whose node runs this search)."""
        if checkpointed not in self._graphs:
            from cirgraph.agents.graph import build_graph

            saver = False
            if checkpointed:
                from langgraph.checkpoint.memory import InMemorySaver

                saver = self._checkpointer if self._checkpointer is not None else InMemorySaver()
            self._graphs[checkpointed] = build_graph(self.services, checkpointer=saver)
        return self._graphs[checkpointed]

    def _run_config(self, config: PipelineConfig | str | None, k: int | None) -> PipelineConfig:
        cfg = as_config(config, self.config)
        if k is not None and k != cfg.k:
            cfg = cfg.with_(k=k)
        if cfg is not self.config:
            self.services.check(cfg)
        return cfg

    # -- async API -------------------------------------------------------------------------------------------------

    async def astream(self, reference: ReferenceSource, text: str, *, k: int | None = None,
                      caption: str | None = None, config: PipelineConfig | str | None = None,
                      thread_id: str | None = None, score_ids: Sequence[str] = ()) -> AsyncIterator[tuple[str, Any]]:
        """Yield (stage, partial update) as each stage finishes, then ("result", SearchResult)."""
        cfg = self._run_config(config, k)
        inputs = build_input(reference, text, self.gallery, caption=caption, max_rounds=cfg.max_rounds,
                             max_pixels=self.max_image_pixels, score_ids=score_ids)
        async for item in self._stream(inputs, cfg, thread_id):
            yield item

    async def asearch(self, reference: ReferenceSource, text: str, *, k: int | None = None,
                      caption: str | None = None, config: PipelineConfig | str | None = None,
                      thread_id: str | None = None, score_ids: Sequence[str] = ()) -> SearchResult:
        """Run one query; see `search`."""
        result = None
        async for kind, payload in self.astream(reference, text, k=k, caption=caption, config=config,
                                                thread_id=thread_id, score_ids=score_ids):
            if kind == "result":
                result = payload
        return result

    async def aresume(self, thread_id: str, descriptions: str | list[str] | None = None, *,
                      config: PipelineConfig | str | None = None) -> SearchResult:
        """Continue a run paused for review: None accepts the descriptions, a string or list replaces them."""
        from langgraph.types import Command

        from cirgraph.agents.texts import edited_descriptions

        cfg = self._paused.get(thread_id) or as_config(config, self.config)
        edited_descriptions(descriptions, [], 8)  # InputError before anything runs
        if not cfg.review:
            raise ConfigError("resume: the configuration has review=False; pass the paused run's config=")
        snapshot = await self.graph(checkpointed=True).aget_state({"configurable": {"thread_id": thread_id}})
        if not snapshot.interrupts:
            raise InputError(f"thread {thread_id!r}", "no run is paused for review under this id")
        # True = accept: LangGraph treats Command(resume=None) as "no resume value"
        answer = True if descriptions is None else descriptions
        result = None
        async for kind, payload in self._stream(Command(resume=answer), cfg, thread_id):
            if kind == "result":
                result = payload
        return result

    async def asearch_many(self, queries: Iterable[Query | Mapping[str, Any] | tuple], *, concurrency: int = 4,
                           config: PipelineConfig | str | None = None,
                           return_exceptions: bool = False) -> list[SearchResult | BaseException]:
        """Run queries with at most `concurrency` in flight; results in input order. With return_exceptions, a
        failing query's exception takes its place instead of stopping the batch."""
        if concurrency < 1:
            raise InputError("concurrency", f"must be >= 1, got {concurrency}")
        batch = [_as_query(q) for q in queries]
        gate = asyncio.Semaphore(concurrency)

        async def one(q: Query) -> SearchResult:
            async with gate:
                return await self.asearch(q.reference, q.text, k=q.k, caption=q.caption, config=config)

        tasks = [asyncio.ensure_future(one(q)) for q in batch]
        try:
            return list(await asyncio.gather(*tasks, return_exceptions=return_exceptions))
        except BaseException:
            for task in tasks:  # the first failure ends the batch: stop the rest instead of leaving them running
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _stream(self, payload: Any, cfg: PipelineConfig, thread_id: str | None) -> AsyncIterator[tuple[str, Any]]:
        checkpointed = cfg.review
        thread_id = thread_id or uuid.uuid4().hex
        run = {"configurable": {"thread_id": thread_id}} if checkpointed else None
        state: dict[str, Any] = {}
        pause = None
        async for mode, chunk in self.graph(checkpointed=checkpointed).astream(
            payload, run, context=cfg, stream_mode=["updates", "values"]
        ):
            if mode == "values":
                state = chunk
                continue
            for node, update in chunk.items():
                if node == "__interrupt__":
                    pause = update[0].value
                else:
                    yield node, update
        pending = None
        if pause is not None:
            self._paused[thread_id] = cfg
            pending = Review(thread_id=thread_id, modification=pause["modification"], caption=pause["caption"],
                             descriptions=list(pause["descriptions"]))
        else:
            self._paused.pop(thread_id, None)
        yield "result", SearchResult.from_state(state, k=cfg.k, config=cfg.to_dict(), pending=pending)

    # -- sync API --------------------------------------------------------------------------------------------------

    def search(self, reference: ReferenceSource, text: str, *, k: int | None = None, caption: str | None = None,
               config: PipelineConfig | str | None = None, thread_id: str | None = None,
               score_ids: Sequence[str] = ()) -> SearchResult:
        """Rank gallery items for `reference` (path, bytes, PIL image, gallery id or GalleryRef) changed by `text`.

        `caption` skips captioning; `config` (a PipelineConfig or preset name) and `k` override the retriever's for
        this call. `score_ids`: gallery items whose place must be known even below the top k (e.g. the candidates
        of a CIRR image set); those not among the hits come back in `result.tail`, in rank order. Raises
        InputError for a bad reference or text before any model is called.
        """
        return self._loop.run(self.asearch(reference, text, k=k, caption=caption, config=config,
                                           thread_id=thread_id, score_ids=score_ids))

    def resume(self, thread_id: str, descriptions: str | list[str] | None = None, *,
               config: PipelineConfig | str | None = None) -> SearchResult:
        return self._loop.run(self.aresume(thread_id, descriptions, config=config))

    def search_many(self, queries: Iterable[Query | Mapping[str, Any] | tuple], *, concurrency: int = 4,
                    config: PipelineConfig | str | None = None,
                    return_exceptions: bool = False) -> list[SearchResult | BaseException]:
        return self._loop.run(self.asearch_many(queries, concurrency=concurrency, config=config,
                                                return_exceptions=return_exceptions))

    def close(self) -> None:
        """Stop the private event loop of the sync API, first closing what the models opened on it (their HTTP
        clients are bound to that loop). The models and the gallery belong to the caller and stay usable."""
        if self._loop.started:
            self._loop.run(self._close_model_clients())
        self._loop.close()

    async def _close_model_clients(self) -> None:
        for model in {id(m): m for m in (self.services.llm, self.services.vlm) if m is not None}.values():
            aclose = getattr(model, "aclose", None)
            if aclose is not None:
                await aclose()

    def __enter__(self) -> Retriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _as_query(q: Query | Mapping[str, Any] | tuple) -> Query:
    if isinstance(q, Query):
        return q
    if isinstance(q, Mapping):
        return Query(**q)
    if isinstance(q, tuple) and len(q) == 2:
        return Query(*q)
    raise InputError("query", f"expected a Query, a mapping or a (reference, text) pair, got {type(q).__name__}")
