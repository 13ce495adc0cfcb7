"""The prompt-evaluation runner: the pipeline over every query of a benchmark split, resumable and failure-isolated.

    record = evaluate(EvalSpec("cirr", "val", data_dir, captions_file=captions, config=preset("cirevl")), settings)

Queries run with bounded concurrency; each finished query is appended to the run folder's log at once (see
cirgraph.evals.records.QueryLog), so an interrupted run resumes where it stopped, and a query that raises is recorded
with its error while the others go on (as dspy's Evaluate isolates examples). Every model call goes through a disk
cache (cirgraph.tools.cache) under CIRGRAPH_HOME/cache, so a rerun with unchanged prompts and models makes no call.
Failed queries count as misses in the metrics and are listed in the record. A model endpoint that goes away does
not fail query after query: the runner waits, probing it with a cheap request at exponentially growing intervals
(`EvalSpec.outage_backoff`), runs again the queries that were under way when it went down, and stops the run with
an error naming the endpoint only after `EvalSpec.max_outage_s` (a rerun resumes).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cirgraph.agents.context import PipelineConfig
from cirgraph.errors import InputError
from cirgraph.evals.records import LOG_FILE, RECORD_FILE, QueryLog, QueryResult, RunRecord, write_record
from cirgraph.evals.session import EMPTY_TEXT, EvalSpec, Models, Part, Reporter, Session
from cirgraph.evals.task import Query

if TYPE_CHECKING:
    from cirgraph.agents.results import SearchResult
    from cirgraph.evals.loaders import SplitData
    from cirgraph.evals.space import Space
    from cirgraph.settings import Settings
    from cirgraph.tools.health import EndpointHealth

__all__ = ["EMPTY_TEXT", "EvalSpec", "Models", "Part", "Reporter", "Session", "evaluate", "evaluate_async",
           "ladder", "ladder_async", "open_session", "run_config"]
Search = Callable[[Query], Awaitable[QueryResult]]


class OutageGate:
    """The model endpoints of a run, each with its health state and a cheap probe (see cirgraph.tools.health).
    `ready()` waits while one is down, one worker probing for all; `mark()` before a query and `went_down(mark)`
    after it tell whether an endpoint went down meanwhile (the query then ran on degraded stages)."""

    def __init__(self, endpoints: Sequence[tuple[EndpointHealth, str, Callable[[], Awaitable[object]]]], *,
                 backoff: tuple[float, float] = (1.0, 30.0), max_wait_s: float = 600.0,
                 on_wait: Callable[[str, str, float], None] | None = None) -> None:
        self.endpoints, self.backoff, self.max_wait_s, self.on_wait = list(endpoints), backoff, max_wait_s, on_wait
        self._lock = asyncio.Lock()

    async def ready(self) -> None:
        from cirgraph.tools.health import EndpointDown

        async with self._lock:
            for health, key, probe in self.endpoints:
                tell = None if self.on_wait is None else (lambda why, s, k=key: self.on_wait(k, why, s))
                try:
                    await health.wait_until_up(key, probe, initial_s=self.backoff[0], cap_s=self.backoff[1],
                                               max_wait_s=self.max_wait_s, on_wait=tell)
                except EndpointDown as exc:
                    raise EndpointDown(exc.model, f"{exc.reason}; the run stops here, and a rerun resumes "
                                                  "it after the finished queries") from None

    def mark(self) -> tuple[int, ...]:
        return tuple(health.outages(key) for health, key, _ in self.endpoints)

    def went_down(self, mark: tuple[int, ...]) -> bool:
        return self.mark() != mark


async def run_queries(queries: Sequence[Query], search: Search, log: QueryLog, *, concurrency: int,
                      on_result: Callable[[QueryResult], None] | None = None, gate: OutageGate | None = None,
                      reruns: int = 3) -> int:
    """Run the queries the log has no successful result for, at most `concurrency` at a time; each result is
    logged as soon as it exists. A query that raises becomes a failed result. With a `gate`, no query starts while
    a model endpoint is down, and a query during which one went down runs again (up to `reruns` times) once it is
    back. Returns how many ran."""
    todo = deque(q for q in queries if q.id not in log.results or log.results[q.id].status == "failed")
    ran, tries = len(todo), {q.id: 0 for q in todo}

    async def worker() -> None:
        while todo:
            query = todo.popleft()
            if gate is not None:
                await gate.ready()
            mark = gate.mark() if gate is not None else ()
            started = time.perf_counter()
            try:
                result = await search(query)
            except Exception as exc:  # isolate the query: record why, go on with the others
                result = QueryResult.failure(query.id, exc, time.perf_counter() - started)
            if gate is not None and gate.went_down(mark) and tries[query.id] < reruns:
                tries[query.id] += 1
                todo.appendleft(query)  # its stages degraded because the endpoint went away: run it again
                continue
            await asyncio.to_thread(log.append, result)  # the fsync stays off the event loop
            if on_result is not None:
                on_result(result)

    workers = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, len(todo)))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for task in workers:  # an endpoint that stayed down ends the run: stop the other workers too
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    return ran


def query_result(query: Query, found: SearchResult, space: Space, seconds: float, notes: list[str],
                 members: dict[str, str] | None = None) -> QueryResult:
    """A pipeline result as a record entry: gallery ids become benchmark names (`members`: the image set's
    benchmark name -> gallery id, for the subset tail)."""
    names = {hit.id: space.name_of(hit.id, hit.uri) for hit in found.hits}
    members = {item: name for name, item in (members or {}).items()}
    return QueryResult(
        id=query.id, status="ok", ranking=[names[h.id] for h in found.hits],
        subset_tail=[members[i] for i in found.tail if i in members],
        scores=[round(float(h.score), 5) for h in found.hits], caption=found.caption,
        caption_source=found.caption_source, descriptions=list(found.descriptions),
        description_source=found.description_source, propositions=list(found.propositions),
        verdicts={names.get(i, i): v for i, v in found.verdicts.items()}, rounds=found.rounds,
        stop_reason=found.stop_reason, degraded=list(found.degraded), prompts=dict(found.prompts),
        usage=dict(found.usage), seconds=round(seconds, 4), notes=notes,
    )


def pipeline_search(part: Part, retriever: Any, config: PipelineConfig) -> Search:
    """The search of one part: its space gives the reference (and its caption), the retriever runs the pipeline."""

    async def search(query: Query) -> QueryResult:
        started = time.perf_counter()
        reference, caption = part.space.reference(query)
        text, notes = query.modification, []
        if not text.strip():  # the evaluation server still expects a ranking for this query
            text, notes = EMPTY_TEXT, [f"empty modification text: searched for {EMPTY_TEXT!r}"]
        # CIRR: the image set is scored exactly, so Recall_subset orders it even below the kept ranking
        members = part.space.item_ids(query.subset_candidates) if query.image_set else {}
        found = await retriever.asearch(reference, text, caption=caption, config=config,
                                        score_ids=list(members.values()))
        return query_result(query, found, part.space, time.perf_counter() - started, notes, members)

    return search


def run_label(config: PipelineConfig) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "-", config.preset or "custom")


async def run_config(session: Session, config: PipelineConfig, out_dir: Path | None = None,
                     reporter: Reporter | None = None) -> RunRecord:
    """Evaluate one configuration on a prepared session and write the run folder (log, record, summaries)."""
    from cirgraph.evals import reports

    reporter, spec = reporter or Reporter(), session.spec
    config = config.with_(k=spec.k)
    fingerprint = session.fingerprint(config)
    categories = "-".join(p.data.category for p in session.parts if p.data.category)
    run_id = "-".join(x for x in (spec.benchmark, spec.split, categories, run_label(config), spec.mode,
                                  fingerprint[:8]) if x)
    folder = Path(out_dir or spec.out_dir or session.settings.home / "runs" / run_id)
    log = QueryLog(folder / LOG_FILE, run_id=run_id, fingerprint=fingerprint, fresh=spec.fresh)
    queries = [q for p in session.parts for q in p.queries]
    finished = sum(1 for q in queries if q.id in log.results and log.results[q.id].status == "ok")
    reporter.start(run_id, len(queries), finished)
    searches = {p.data.category: pipeline_search(p, session.retriever(p, config), config) for p in session.parts}
    # the first run of a command counts the gallery build in its wall time; later runs of a ladder start here
    started, session.opened_at = session.opened_at or time.perf_counter(), None
    gate = OutageGate(session.endpoints, backoff=spec.outage_backoff, max_wait_s=spec.max_outage_s,
                      on_wait=reporter.waiting) if session.endpoints else None
    ran = await run_queries(queries, lambda q: searches[q.category](q), log, concurrency=spec.concurrency,
                            on_result=reporter.result, gate=gate)
    record = reports.assemble(session, config, run_id, fingerprint, log.results, time.perf_counter() - started, ran)
    reports.write_submissions(session, record, folder)
    write_record(record, folder / RECORD_FILE)
    reports.write_summaries(record, folder)
    reporter.finish(record, folder)
    return record


def _models_from_settings(settings: Settings, spec: EvalSpec, configs: Sequence[PipelineConfig]) -> Models:
    """Only the models some configuration needs (cirgraph.clients.needed_models): caption space with captions calls
    no vision model at all."""
    from cirgraph.clients import eval_models

    return eval_models(settings, configs, images=spec.images_dir is not None,
                       captions=spec.captions_file is not None)


def _load_parts(spec: EvalSpec) -> list[SplitData]:
    from cirgraph.evals.benchmarks import get_benchmark
    from cirgraph.evals.loaders import load_split

    parts = get_benchmark(spec.benchmark).split(spec.split).parts
    categories = spec.categories or tuple(p.category for p in parts)
    if spec.query_file is not None and len(categories) > 1:
        raise InputError(str(spec.query_file), "a query file replaces one part's queries: give one --category")
    return [load_split(spec.benchmark, spec.split, spec.data_dir, category=c, query_file=spec.query_file,
                       images_dir=spec.images_dir) for c in categories]


@contextlib.asynccontextmanager
async def open_session(spec: EvalSpec, settings: Settings, configs: Sequence[PipelineConfig], *,
                       models: Models | None = None, reporter: Reporter | None = None) -> AsyncIterator[Session]:
    """Load the split, build (or reuse) each part's space, and wrap the chat models in the disk call cache."""
    from cirgraph.evals.space import build_space
    from cirgraph.tools.cache import FAILED_NAMESPACE, CachedChatModel, CallCache

    reporter, opened_at = reporter or Reporter(), time.perf_counter()
    live = models or _models_from_settings(settings, spec, configs)
    parts = []
    for data in _load_parts(spec):
        space = await asyncio.to_thread(
            build_space, settings, data, images_dir=spec.images_dir, captions_file=spec.captions_file,
            embedder=live.embedder, text_embedder=live.text_embedder,
            progress=lambda done, total, d=data: reporter.building(d.category or d.split, done, total))
        end = None if spec.limit is None else spec.offset + spec.limit
        queries = list(data.queries[spec.offset:end])
        if not queries:
            raise InputError(f"--offset {spec.offset}", f"skips every one of the {len(data.queries)} queries of "
                             f"{data.benchmark} {data.split}{' ' + data.category if data.category else ''}")
        parts.append(Part(data, space, queries))
    cache = CallCache(settings.cache_dir / "calls.sqlite")
    if spec.fresh:  # a fresh run asks again what failed before (it may have been a passing fault of the server)
        cache.clear(FAILED_NAMESPACE)
    cached = {id(m): CachedChatModel(m, cache) for m in (live.llm, live.vlm) if m is not None}  # one per client
    session = Session(spec, settings, parts, replace(live, llm=cached.get(id(live.llm)) if live.llm else None,
                                                     vlm=cached.get(id(live.vlm)) if live.vlm else None), cache,
                      endpoints=_endpoints(live))
    session.opened_at = opened_at
    try:
        yield session
    finally:
        for model in (live.llm, live.vlm):
            if hasattr(model, "aclose"):
                await model.aclose()
        cache.close()


def _endpoints(models: Models) -> list[tuple[EndpointHealth, str, Callable[[], Awaitable[object]]]]:
    """(health, endpoint key, probe) of each distinct endpoint the chat models call (clients over HTTP only)."""
    out = {}
    for model in (models.llm, models.vlm):
        health, key, probe = (getattr(model, a, None) for a in ("health", "endpoint", "probe"))
        if health is not None and key is not None and probe is not None:
            out.setdefault((id(health), key), (health, key, probe))
    return list(out.values())


async def evaluate_async(spec: EvalSpec, settings: Settings, *, models: Models | None = None,
                         reporter: Reporter | None = None) -> RunRecord:
    """Build the session (spaces, cached models) and run `spec.config` on it."""
    async with open_session(spec, settings, [spec.config], models=models, reporter=reporter) as session:
        return await run_config(session, spec.config, reporter=reporter)


def evaluate(spec: EvalSpec, settings: Settings, *, models: Models | None = None,
             reporter: Reporter | None = None) -> RunRecord:
    """Synchronous form of `evaluate_async`."""
    return asyncio.run(evaluate_async(spec, settings, models=models, reporter=reporter))


async def ladder_async(spec: EvalSpec, configs: Sequence[PipelineConfig], settings: Settings, *,
                       models: Models | None = None, reporter: Reporter | None = None) -> list[RunRecord]:
    """Run configurations one after another on one session (spaces, models and the call cache shared); each run
    gets its own folder `<out>/<preset>/`."""
    base = spec.out_dir or settings.home / "runs" / f"ladder-{spec.benchmark}-{spec.split}-{spec.mode}"
    out = []
    async with open_session(spec, settings, configs, models=models, reporter=reporter) as session:
        for config in configs:
            session.spec = replace(spec, config=config, out_dir=None)
            out.append(await run_config(session, config, Path(base) / run_label(config), reporter))
    return out


def ladder(spec: EvalSpec, configs: Sequence[PipelineConfig], settings: Settings, *, models: Models | None = None,
           reporter: Reporter | None = None) -> list[RunRecord]:
    """Synchronous form of `ladder_async`."""
    return asyncio.run(ladder_async(spec, configs, settings, models=models, reporter=reporter))
