"""The types of an evaluation run: what to evaluate (EvalSpec), the live models (Models, from cirgraph.tools.protocols),
what one command's runs share (Session, with a Part per gallery) and what a run tells its caller as it goes (Reporter).
The runner builds and runs them; records and reports read them, without importing the runner."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cirgraph.agents.context import PipelineConfig
from cirgraph.errors import InputError
from cirgraph.evals.benchmarks import get_task
from cirgraph.tools.protocols import Models  # built from Settings (cirgraph.clients) unless a caller injects them

if TYPE_CHECKING:
    from cirgraph.evals.loaders import SplitData
    from cirgraph.evals.records import QueryResult, RunRecord
    from cirgraph.evals.space import Space
    from cirgraph.evals.task import Query
    from cirgraph.settings import Settings
    from cirgraph.tools.cache import CallCache
    from cirgraph.tools.health import EndpointHealth

EMPTY_TEXT = "the same image"  # searched for when a query's modification text is empty (CIRR test1 has one)


class Reporter:
    """What a run tells its caller as it goes (the CLI draws progress bars from it); every method may be left out."""

    def building(self, gallery: str, done: int, total: int) -> None: ...
    def start(self, run_id: str, total: int, finished: int) -> None: ...
    def result(self, result: QueryResult) -> None: ...
    def finish(self, record: RunRecord, folder: Path) -> None: ...
    def waiting(self, endpoint: str, reason: str, seconds: float) -> None: ...


@dataclass(frozen=True)
class EvalSpec:
    """What to evaluate: a benchmark split, where its data is, the space to search in, and the configuration.
    `limit` keeps the first N queries of each part (each FashionIQ category) after skipping `offset`; `depth` is how
    many ranked names every query keeps (the pipeline's k; default 50, CIRR 200). `outage_backoff` is the (first,
    longest) pause between probes of an unreachable model endpoint; `max_outage_s` how long the run waits for it."""

    benchmark: str
    split: str
    data_dir: Path
    images_dir: Path | None = None
    captions_file: Path | None = None
    query_file: Path | None = None
    categories: tuple[str, ...] = ()
    config: PipelineConfig = field(default_factory=lambda: PipelineConfig(preset="reflect"))
    limit: int | None = None
    offset: int = 0
    concurrency: int = 4
    depth: int | None = None
    out_dir: Path | None = None
    fresh: bool = False
    outage_backoff: tuple[float, float] = (1.0, 30.0)
    max_outage_s: float = 600.0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise InputError("concurrency", f"must be at least 1, got {self.concurrency}")
        if self.limit is not None and self.limit < 1:
            raise InputError("limit", f"must be at least 1, got {self.limit}")
        if self.offset < 0:
            raise InputError("offset", f"must be at least 0, got {self.offset}")
        if self.depth is not None and not 1 <= self.depth <= 1000:
            raise InputError("depth", f"must be within 1..1000, got {self.depth}")

    @property
    def k(self) -> int:
        """The effective depth: `depth`, else the benchmark's default (the deepest cut its metrics use, R@50 or
        mAP@50; CIRR keeps 200, so that Recall_subset finds nearly every member of the image set)."""
        return self.depth or get_task(self.benchmark).default_depth

    @property
    def mode(self) -> str:
        return "images" if self.images_dir is not None else "captions"


@dataclass
class Part:
    """One gallery of the run (the split, or one FashionIQ category): its data, space and queries."""

    data: SplitData
    space: Space
    queries: list[Query]


@dataclass
class Session:
    """What the runs of one command share: the parts with their built spaces, the cached models, the call cache."""

    spec: EvalSpec
    settings: Settings
    parts: list[Part]
    models: Models
    cache: CallCache
    opened_at: float | None = None  # when the session began building its galleries (perf_counter)
    endpoints: list[tuple[EndpointHealth, str, Callable[[], Awaitable[object]]]] = field(default_factory=list)

    def retriever(self, part: Part, config: PipelineConfig) -> Any:
        from cirgraph.retriever import Retriever

        from cirgraph.evals.space import PreparedTextEmbedder, query_texts

        captions = part.space.gallery.has_captions
        embedder = self.models.embedder if part.space.mode == "images" else None
        text_embedder = self.models.text_embedder if captions else None
        texts = query_texts(part.space, part.queries, config, EMPTY_TEXT)  # embedded in batches, not one by one
        return Retriever(gallery=part.space.gallery, llm=self.models.llm, vlm=self.models.vlm,
                         embedder=embedder and PreparedTextEmbedder(embedder, texts),
                         text_embedder=text_embedder and PreparedTextEmbedder(text_embedder, texts),
                         config=config, caption_cache=self.cache)

    def fingerprint(self, config: PipelineConfig) -> str:
        """What determines a run's results: data files, spaces, model names, prompt template hashes, configuration.
        Not the limit or the concurrency, so a rerun with a larger --limit resumes and extends the run."""
        from cirgraph.evals.records import SCHEMA_VERSION
        from cirgraph.prompts.loader import template_sha
        from cirgraph.tools.cache import hash_key

        models = self.models
        prompts = {s: template_sha(s, getattr(config, f"{s}_prompt"))
                   for s in ("caption", "recompose", "decompose", "rerank", "reflect")}
        return hash_key({"benchmark": self.spec.benchmark, "split": self.spec.split,
                         "data": [f.sha256 for p in self.parts for f in p.data.files],
                         "spaces": [p.space.info["key"] for p in self.parts], "depth": self.spec.k,
                         "models": [getattr(m, "name", None) for m in (models.llm, models.vlm, models.embedder,
                                                                       models.text_embedder)],
                         "prompts": prompts, "config": config.to_dict(), "schema": SCHEMA_VERSION})
