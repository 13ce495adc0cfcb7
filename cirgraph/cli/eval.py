"""`cirgraph eval`: run the pipeline on a benchmark split (run, ladder), compare runs, score prediction files.

    cirgraph eval run cirr --split val --data data/cirr --captions data/cirr/mllm_captions.json --preset cirevl
    cirgraph eval cirr --split val ...            (shorthand for `eval run cirr ...`)
    cirgraph eval ladder cirr --split val --data data/cirr --captions data/cirr/mllm_captions.json
    cirgraph eval compare RUN_DIR RUN_DIR ...
    cirgraph eval score cirr --split val --data data/cirr --predictions recall.json --json

Progress (with ETA) goes to stderr: a bar on a terminal, a line every few seconds otherwise. Tables go to stdout, or
with --json exactly one JSON object. Exit codes of run and ladder: 0 when every query was answered; 3
(EXIT_SOME_FAILED) when some queries failed (they count as misses, and the record and summary list them); 1 for bad
input or configuration, before any model is loaded; 2 for usage errors.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from typer.core import TyperGroup

from cirgraph.cli import app
from cirgraph.cli._presets import announce_default, preset_option
from cirgraph.cli.index import EXIT_SOME_FAILED

if TYPE_CHECKING:
    from cirgraph.agents.context import PipelineConfig
    from cirgraph.evals.records import QueryResult, RunRecord
    from cirgraph.evals.runner import EvalSpec


class _EvalGroup(TyperGroup):
    """`cirgraph eval BENCHMARK ...` is `cirgraph eval run BENCHMARK ...`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["run", *args]
        return super().parse_args(ctx, args)


eval_app = typer.Typer(cls=_EvalGroup, no_args_is_help=True, help="Evaluate the pipeline on CIRR, CIRCO and "
                       "FashionIQ; compare runs; score prediction files. `cirgraph eval BENCHMARK ...` runs one.")
app.add_typer(eval_app, name="eval")

_BENCHMARK = typer.Argument(..., help="cirr, circo or fashioniq.")
_SPLIT = typer.Option("val", "--split", "-s", help="cirr: val, test1; circo: val, test; fashioniq: val.")
_DATA = typer.Option(..., "--data", "-d", help="Folder of the annotation files (flat, or as the dataset ships).")
_IMAGES = typer.Option(None, "--images", help="Folder of the benchmark images (image mode).")
_CAPTIONS = typer.Option(None, "--captions", help="Captions file: caption-space mode without --images "
                         "(e.g. CIRR's mllm_captions.json); with --images, captions of the gallery and references.")
_QUERIES = typer.Option(None, "--queries", help="Query file in place of the split's (e.g. cap.rc2.val.dev.json).")
_VARIANT = typer.Option([], "--variant", help="Prompt variant STAGE=VARIANT, e.g. recompose=structural.")
_SET = typer.Option([], "--set", help="Pipeline setting NAME=VALUE, e.g. n_descriptions=1.")
_CATEGORY = typer.Option([], "--category", help="FashionIQ categories to run (default: all three).")
_LIMIT = typer.Option(None, "--limit", min=1, help="Only the first N queries (of each category).")
_OFFSET = typer.Option(0, "--offset", min=0, help="Skip the first N queries (of each category), e.g. to report on "
                       "queries other than those a prompt or setting was tuned on.")
_CONCURRENCY = typer.Option(4, "--concurrency", "-c", min=1, help="Queries in flight at once.")
_DEPTH = typer.Option(None, "--depth", min=1, max=1000, help="Ranked names kept per query (default 50; CIRR 200, "
                      "so Recall_subset ranks the image set exactly).")
_FRESH = typer.Option(False, "--fresh", help="Discard the run folder's finished queries and start over.")
_JSON = typer.Option(False, "--json", help="Print one JSON object instead of tables.")
_QUIET = typer.Option(False, "--quiet", "-q", help="No progress output.")
_MAX_OUTAGE = typer.Option(600.0, "--max-outage", min=0.0, metavar="SECONDS",
                           help="How long the run waits for a model endpoint that went away (probing it with "
                                "back-off) before it stops; a rerun resumes.")
_PRESET = preset_option()
_RUN_OUT = typer.Option(None, "--out", "-o", help="Run folder (default: CIRGRAPH_HOME/runs/<run id>); rerunning "
                        "into it skips finished queries.")
_LADDER_OUT = typer.Option(None, "--out", "-o", help="Folder of the ladder's runs, one sub-folder per preset "
                           "(default: CIRGRAPH_HOME/runs/ladder-<benchmark>-<split>-<mode>).")
_PRESETS = typer.Option(None, "--presets", help="Comma-separated presets (default: every preset, in the order "
                        "--preset lists them).")


class _Reporter:
    """Progress on stderr: rich bars with ETA on a terminal, else a plain line at most every 5 seconds."""

    def __init__(self, enabled: bool = True) -> None:
        from rich.console import Console

        self.console, self.enabled, self.folders = Console(stderr=True), enabled, []
        self._bar, self._tasks, self._last, self._done, self._failed, self._total = None, {}, 0.0, 0, 0, 0
        if enabled and self.console.is_terminal:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=self.console)
            self._bar.start()

    def _line(self, text: str, force: bool = False) -> None:
        if self.enabled and (force or time.monotonic() - self._last >= 5.0):
            self._last = time.monotonic()
            self.console.print(text, highlight=False, markup=False)

    def building(self, gallery: str, done: int, total: int) -> None:
        if self._bar is not None:
            if gallery not in self._tasks:
                self._tasks[gallery] = self._bar.add_task(f"gallery {gallery}", total=total)
            self._bar.update(self._tasks[gallery], completed=done, total=total)
        else:
            self._line(f"gallery {gallery}: {done}/{total}", force=done == total)

    def start(self, run_id: str, total: int, finished: int) -> None:
        self._done, self._failed, self._total, self._started = 0, 0, total - finished, time.monotonic()
        self._line(f"{run_id}: {total} queries, {finished} already done", force=True)
        if self._bar is not None:
            self._tasks["run"] = self._bar.add_task(run_id, total=self._total)

    def result(self, result: QueryResult) -> None:
        self._done, self._failed = self._done + 1, self._failed + (result.status == "failed")
        if self._bar is not None:
            self._bar.update(self._tasks["run"], advance=1, description=f"queries ({self._failed} failed)")
            return
        eta = (self._total - self._done) * (time.monotonic() - self._started) / self._done
        self._line(f"{self._done}/{self._total} queries, {self._failed} failed, ETA {eta:.0f}s",
                   force=self._done == self._total)

    def finish(self, record: RunRecord, folder: Path) -> None:
        self.folders.append(folder)
        if self._bar is not None:
            self._bar.remove_task(self._tasks.pop("run"))

    def waiting(self, endpoint: str, reason: str, seconds: float) -> None:
        self._line(f"model endpoint {endpoint} is down ({reason}); probing again in {seconds:.0f}s", force=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def parse_config(preset_name: str | PipelineConfig, variants: list[str], settings: list[str]) -> PipelineConfig:
    """A preset (or a configuration, e.g. a profile's) with prompt variants (STAGE=VARIANT) and settings
    (NAME=VALUE) applied; its label names them."""
    from dataclasses import fields

    from cirgraph.agents.context import PipelineConfig
    from cirgraph.agents.presets import preset
    from cirgraph.errors import InputError

    types = {f.name: f.type for f in fields(PipelineConfig)}
    changes: dict[str, Any] = {}
    for option, items in (("--variant", variants), ("--set", settings)):
        for item in items:
            name, _, value = item.partition("=")
            name = f"{name.strip()}_prompt" if option == "--variant" else name.strip()
            if not value or name not in types:
                raise InputError(f"{option} {item!r}", "expected STAGE=VARIANT (stages: caption, recompose, decompose,"
                                 " rerank, reflect)" if option == "--variant" else
                                 f"expected NAME=VALUE with NAME one of: {', '.join(types)}")
            changes[name] = _typed(str(types[name]), value.strip(), f"{option} {item!r}")
    base = preset(preset_name) if isinstance(preset_name, str) else preset_name
    label = "+".join([base.preset or "custom", *variants, *settings])
    return base.with_(**changes, preset=label) if changes else base


def _typed(kind: str, value: str, subject: str) -> Any:
    from cirgraph.errors import InputError

    booleans = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}
    try:
        if kind == "bool":
            return booleans[value.lower()]
        return int(value) if kind == "int" else float(value) if kind == "float" else value
    except (KeyError, ValueError):
        raise InputError(subject, f"{value!r} is not a valid {kind}") from None


def check_paths(data: Path, images: Path | None = None, captions: Path | None = None,
                queries: Path | None = None) -> None:
    """Refuse a missing data folder, images folder, captions or query file in one line, before any model loads."""
    from cirgraph.errors import InputError

    for option, path, folder in (("--data", data, True), ("--images", images, True), ("--captions", captions, False),
                                 ("--queries", queries, False)):
        if path is None or (path.is_dir() if folder else path.is_file()):
            continue
        kind = "folder" if folder else "file"
        reason = f"not a {kind}" if path.exists() else f"no such {kind}"
        raise InputError(f"{option} {str(path)!r}", reason + (" (the benchmark's annotation files)"
                                                              if option == "--data" else ""))


def _spec(benchmark: str, split: str, data: Path, images: Path | None, captions: Path | None, queries: Path | None,
          config: PipelineConfig, category: list[str], limit: int | None, concurrency: int, depth: int | None,
          out: Path | None, fresh: bool, offset: int = 0, max_outage: float = 600.0) -> EvalSpec:
    from cirgraph.evals.runner import EvalSpec

    check_paths(data, images, captions, queries)

    return EvalSpec(benchmark=benchmark.lower(), split=split, data_dir=data, images_dir=images,
                    captions_file=captions, query_file=queries, categories=tuple(category), config=config,
                    limit=limit, offset=offset, concurrency=concurrency, depth=depth, out_dir=out,
                    fresh=fresh, max_outage_s=max_outage)


def _print_comparison(records: list[RunRecord], as_json: bool, plot_path: Path | None) -> None:
    from rich.console import Console
    from rich.table import Table

    from cirgraph.evals.reports import comparison, plot, summary_row

    written = plot(records, plot_path) if plot_path is not None else None
    if as_json:
        typer.echo(json.dumps({"runs": [summary_row(r) for r in records],
                               "plot": str(written) if written else None}))
        return
    header, rows = comparison(records)
    out = Console(soft_wrap=True)
    if out.is_terminal:
        table = Table(title_justify="left")
        for i, column in enumerate(header):
            table.add_column(column, justify="left" if i == 0 else "right", overflow="fold")
        for row in rows:
            table.add_row(*row)
        out.print(table)
    else:  # piped or redirected: a markdown table, whole at any width, ready to paste into notes
        lines = [header, ["---"] + ["---:"] * (len(header) - 1), *rows]
        out.print("\n".join("| " + " | ".join(line) + " |" for line in lines), highlight=False, markup=False)
    if written is not None:
        out.print(f"plot: {written}", highlight=False, markup=False)


def _print_run(record: RunRecord, folder: Path, as_json: bool) -> None:
    from rich.console import Console

    if as_json:
        typer.echo(json.dumps({"run_id": record.run_id, "folder": str(folder), "metrics": record.metrics,
                               "counts": record.counts, "failures": record.failures,
                               "submissions": record.submissions}))
        return
    out = Console(soft_wrap=True)
    out.print(Path(folder, "summary.md").read_text(encoding="utf-8"), highlight=False, markup=False)
    out.print(f"record: {Path(folder, 'record.json')}", highlight=False, markup=False)


@eval_app.command("run")
def run(
    benchmark: str = _BENCHMARK, split: str = _SPLIT, data: Path = _DATA,
    images: Optional[Path] = _IMAGES, captions: Optional[Path] = _CAPTIONS,
    queries: Optional[Path] = _QUERIES,
    preset_name: Optional[str] = _PRESET,
    variant: list[str] = _VARIANT, setting: list[str] = _SET, category: list[str] = _CATEGORY,
    limit: Optional[int] = _LIMIT, offset: int = _OFFSET, concurrency: int = _CONCURRENCY,
    depth: Optional[int] = _DEPTH,
    out: Optional[Path] = _RUN_OUT, fresh: bool = _FRESH, as_json: bool = _JSON, quiet: bool = _QUIET,
    max_outage: float = _MAX_OUTAGE,
) -> None:
    """Run the pipeline on every query of a split; write the record, summaries and (test splits) submissions."""
    from cirgraph.evals.runner import evaluate
    from cirgraph.settings import Settings

    check_paths(data, images, captions, queries)
    settings = Settings()
    chosen, why = (preset_name, None) if preset_name is not None else settings.default_preset()
    config = parse_config(chosen, variant, setting)
    if why is not None:  # said once the inputs are known to be good
        announce_default(config, why)
    spec = _spec(benchmark, split, data, images, captions, queries, config, category, limit, concurrency, depth,
                 out, fresh, offset, max_outage)
    reporter = _Reporter(enabled=not quiet)
    try:
        record = evaluate(spec, settings, reporter=reporter)
    finally:
        reporter.close()
    _print_run(record, reporter.folders[-1], as_json)
    _exit_if_failed([record])


def _exit_if_failed(records: list[RunRecord]) -> None:
    """Exit EXIT_SOME_FAILED when some queries of the runs failed (after the output is printed)."""
    failed = sum(r.counts.get("failed", 0) for r in records)
    if failed:
        typer.echo(f"{failed} of {sum(r.counts.get('queries', 0) for r in records)} queries failed (listed in the "
                   f"summary); exit status {EXIT_SOME_FAILED}", err=True)
        raise typer.Exit(EXIT_SOME_FAILED)


@eval_app.command("ladder")
def ladder(
    benchmark: str = _BENCHMARK, split: str = _SPLIT, data: Path = _DATA,
    images: Optional[Path] = _IMAGES, captions: Optional[Path] = _CAPTIONS,
    queries: Optional[Path] = _QUERIES,
    presets: Optional[str] = _PRESETS,
    variant: list[str] = _VARIANT, setting: list[str] = _SET, category: list[str] = _CATEGORY,
    limit: Optional[int] = _LIMIT, offset: int = _OFFSET, concurrency: int = _CONCURRENCY,
    depth: Optional[int] = _DEPTH,
    out: Optional[Path] = _LADDER_OUT, fresh: bool = _FRESH, as_json: bool = _JSON, quiet: bool = _QUIET,
    max_outage: float = _MAX_OUTAGE,
) -> None:
    """Run the ablation presets one after another with shared caches, then print the comparison table."""
    from cirgraph.agents.presets import names
    from cirgraph.evals.runner import ladder as run_ladder
    from cirgraph.settings import Settings

    chosen = [p.strip() for p in presets.split(",") if p.strip()] if presets else names()
    configs = [parse_config(name, variant, setting) for name in chosen]
    spec = _spec(benchmark, split, data, images, captions, queries, configs[0], category, limit, concurrency, depth,
                 out, fresh, offset, max_outage)
    settings = Settings()
    reporter = _Reporter(enabled=not quiet)
    try:
        records = run_ladder(spec, configs, settings, reporter=reporter)
    finally:
        reporter.close()
    base = out or settings.home / "runs" / f"ladder-{spec.benchmark}-{spec.split}-{spec.mode}"
    _print_comparison(records, as_json, Path(base) / "ladder.png")
    _exit_if_failed(records)


_CANDIDATES = typer.Option("modification-only,modification+reference,small-model", "--candidates",
                           help="Comma-separated presets to choose from; those needing a model that is not "
                                "configured are left out.")


@eval_app.command("calibrate")
def calibrate(
    benchmark: str = _BENCHMARK, split: str = _SPLIT, data: Path = _DATA,
    images: Optional[Path] = _IMAGES, captions: Optional[Path] = _CAPTIONS,
    queries: Optional[Path] = _QUERIES, candidates: str = _CANDIDATES,
    category: list[str] = _CATEGORY, limit: Optional[int] = _LIMIT, offset: int = _OFFSET,
    concurrency: int = _CONCURRENCY, depth: Optional[int] = _DEPTH,
    out: Optional[Path] = _LADDER_OUT, fresh: bool = _FRESH, as_json: bool = _JSON, quiet: bool = _QUIET,
    max_outage: float = _MAX_OUTAGE,
) -> None:
    """Run candidate presets on a slice with the configured models and keep the best (by the benchmark's main
    score) as their profile: search, chat, ui, the SDK and eval use it when no preset is given."""
    from cirgraph.clients import needed_models
    from cirgraph.errors import InputError
    from cirgraph.evals.runner import ladder as run_ladder
    from cirgraph.profiles import Profile, model_key, save_profile
    from cirgraph.settings import Settings

    settings = Settings()
    configs = [parse_config(name.strip(), [], []) for name in candidates.split(",") if name.strip()]
    usable = [c for c in configs if not needed_models(c, has_images=images is not None).llm or settings.has_llm]
    if not usable:
        raise InputError("--candidates", "every candidate needs an LLM and none is configured (CIRGRAPH_LLM_BASE_URL)")
    spec = _spec(benchmark, split, data, images, captions, queries, usable[0], category, limit, concurrency, depth,
                 out, fresh, offset, max_outage)
    reporter = _Reporter(enabled=not quiet)
    try:
        records = run_ladder(spec, usable, settings, reporter=reporter)
    finally:
        reporter.close()
    scored = [r for r in records if r.main_value is not None]
    if not scored:
        raise InputError(f"{benchmark} {split}", "has no ground truth to calibrate on (use a split with targets)")
    best = max(scored, key=lambda r: (r.main_value, -r.per_query("calls")))
    profile = Profile(
        preset=best.preset, models=model_key(settings), criterion=best.main_score,
        measured_on={"benchmark": best.benchmark, "split": best.split, "mode": best.mode,
                     "queries": best.counts.get("queries", 0), "offset": offset, "limit": limit,
                     "query_file": str(queries) if queries else None},
        candidates=[{"preset": r.preset, "metrics": r.metrics, "calls_per_query": round(r.per_query("calls"), 3),
                     "model_seconds_per_query": round(r.per_query("cost_seconds"), 3)} for r in records])
    path = save_profile(settings, profile)
    if as_json:
        typer.echo(json.dumps({"profile": str(path), **profile.model_dump()}))
        return
    _print_comparison(records, False, None)
    typer.echo(f"profile: {path} (preset {best.preset}: {best.main_score} {best.main_value:.2f})")


@eval_app.command("compare")
def compare(
    runs: list[str] = typer.Argument(..., help="Run ids (as `eval run` prints them, under CIRGRAPH_HOME/runs), run "
                                     "folders or record.json files."),
    plot_path: Optional[Path] = typer.Option(None, "--plot", help="Where to save the chart (.png needs "
                                             "matplotlib, else .svg; default: compare-<runs>.png in the folder "
                                             "that holds the runs, named after them)."),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="Also write the table as CSV."),
    as_json: bool = _JSON,
) -> None:
    """Print a side-by-side table of the runs' metrics and cost per query, and save a chart of the metrics."""
    from cirgraph.evals.records import load_record, write_atomic
    from cirgraph.evals.reports import comparison_chart_path, summary_row, to_csv

    paths = [_run_path(run_ref) for run_ref in runs]
    records = [load_record(path) for path in paths]
    if csv_path is not None:
        write_atomic(csv_path, to_csv([summary_row(r) for r in records]))
    folders = [path if path.is_dir() else path.parent for path in paths]
    _print_comparison(records, as_json, plot_path or comparison_chart_path(records, folders))


def _run_path(run_ref: str) -> Path:
    """A run folder or record file as given, else the folder of the run id under CIRGRAPH_HOME/runs."""
    from cirgraph.errors import InputError
    from cirgraph.settings import Settings

    path = Path(run_ref).expanduser()
    if path.exists():
        return path
    runs = Settings().home / "runs"
    if "/" not in run_ref and (runs / run_ref).is_dir():
        return runs / run_ref
    raise InputError(f"run {run_ref!r}", f"no such folder or record file, and no run with this id in {runs}")


@eval_app.command("score")
def score(
    benchmark: str = _BENCHMARK, split: str = _SPLIT, data: Path = _DATA,
    predictions: list[Path] = typer.Option(..., "--predictions", help="Rankings in the test-server format (CIRR: "
                                           "the recall and/or recall_subset file)."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics object only."),
) -> None:
    """Score a rankings file in the test-server format against a split with ground truth (CIRR val, CIRCO val)."""
    from cirgraph.evals.reports import clean_metrics
    from cirgraph.evals.scoring import score_predictions

    metrics = clean_metrics(score_predictions(benchmark.lower(), split, data, predictions))
    if as_json:
        typer.echo(json.dumps(metrics))
        return
    typer.echo("\n".join(f"{name}\t{value:.2f}" for name, value in metrics.items()))
