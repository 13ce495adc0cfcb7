"""What a finished run turns into: its record (metrics, counts, timings, usage, failures), a markdown and a CSV
summary beside it, test-server files for splits without ground truth, and side-by-side comparisons of runs (a
table, and a bar chart of metrics by run: PNG through matplotlib when it is installed, else a plain SVG)."""

from __future__ import annotations

import csv
import hashlib
import html
import io
import os
import statistics
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cirgraph.errors import InputError
from cirgraph.evals.records import DataInfo, QueryResult, RunRecord, describe_model, git_revision, write_atomic

if TYPE_CHECKING:
    from cirgraph.agents.context import PipelineConfig
    from cirgraph.evals.session import Session

# model s/q: the model seconds a query costs, cached answers counted at their original cost (tools.cache)
COST_COLUMNS = ("calls/q", "cached/q", "tokens/q", "s/q", "model s/q")
_SHOWN_FAILURES = 20


def clean_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Metrics (percentages) rounded to 4 decimals: 55.00000000000001 -> 55.0, nothing a reader can use is lost."""
    return {name: round(value, 4) if isinstance(value, float) else value for name, value in metrics.items()}


def comparison_chart_path(records: Sequence[RunRecord], folders: Sequence[Path]) -> Path:
    """Where a comparison's chart goes by default: the folder that holds the compared runs, under a name of the
    runs' own (compare-<hash of their ids>.png), so that comparing other runs there does not overwrite it."""
    resolved = [str(Path(f).resolve()) for f in folders]
    common = Path(os.path.commonpath(resolved))
    if str(common) in resolved:  # a run folder itself (one run, or runs nested in it): beside it
        common = common.parent
    digest = hashlib.sha1("\n".join(r.run_id for r in records).encode()).hexdigest()[:10]
    return common / f"compare-{digest}.png"


def _timings(results: list[QueryResult], wall: float) -> dict[str, float]:
    seconds = sorted(r.seconds for r in results) or [0.0]
    return {"wall_s": round(wall, 3), "query_s_total": round(sum(seconds), 3),
            "query_s_mean": round(statistics.fmean(seconds), 4), "query_s_median": round(statistics.median(seconds), 4),
            "query_s_p95": round(seconds[min(len(seconds) - 1, int(0.95 * len(seconds)))], 4)}


def assemble(session: Session, config: PipelineConfig, run_id: str, fp: str, logged: dict[str, QueryResult],
             wall: float, ran: int) -> RunRecord:
    """The record of a finished run, from the session and the logged results, in query order. Failed queries have
    an empty ranking, so the official metrics count them as misses."""
    from cirgraph import __version__
    from cirgraph.evals.benchmarks import get_task

    spec, task = session.spec, get_task(session.spec.benchmark)
    bench = task.declaration
    queries = [q for p in session.parts for q in p.queries]
    results = [logged[q.id] for q in queries]
    metrics = {}
    if bench.split(spec.split).has_ground_truth and queries:
        # CIRR: the image-set members below the kept ranking follow it, in their exact order (Recall_subset)
        metrics = clean_metrics(task.score(queries, {r.id: r.ranking for r in results},
                                           subset_rankings={r.id: r.ranking + r.subset_tail for r in results}))
    usage: dict[str, float] = {}
    for result in results:
        for key, value in result.usage.items():
            usage[key] = round(usage.get(key, 0) + value, 4)
    failed = [r for r in results if r.status == "failed"]
    notes = [n for p in session.parts for n in (*p.data.notes, *p.space.notes)]
    if spec.offset:
        notes.append(f"queries {spec.offset + 1}-{spec.offset + (spec.limit or 10**9)} of each part (offset "
                     f"{spec.offset})" if spec.limit else f"the queries after the first {spec.offset} of each part")
    elif spec.limit is not None:
        notes.append(f"limited to the first {spec.limit} queries of each part")
    if metrics:
        notes += task.run_notes(queries, results, spec.k)
    ids = {q.id for q in queries}
    m = session.models
    return RunRecord(
        run_id=run_id, fingerprint=fp, created=datetime.now(UTC).isoformat(timespec="seconds"),
        package_version=__version__, git_revision=git_revision(), benchmark=bench.name, split=spec.split,
        categories=[p.data.category for p in session.parts], revision=bench.revision, main_score=bench.main_score,
        data=[DataInfo(role=f.role, name=f.path.name, sha256=f.sha256, known_sha256=f.known_sha256,
                       category=p.data.category) for p in session.parts for f in p.data.files],
        notes=notes, mode=spec.mode, spaces=[p.space.info for p in session.parts],
        models={"llm": describe_model(m.llm), "vlm": describe_model(m.vlm), "embedder": describe_model(m.embedder),
                "text_embedder": describe_model(m.text_embedder)},
        prompts={stage: ref for r in results for stage, ref in r.prompts.items()}, preset=config.preset,
        config=config.to_dict(), limit=spec.limit, offset=spec.offset, metrics=metrics,
        main_value=metrics.get(bench.main_score),
        counts={"queries": len(results), "ok": len(results) - len(failed), "failed": len(failed),
                "degraded": sum(1 for r in results if r.degraded), "ran": ran, "resumed": len(results) - ran},
        timings=_timings(results, wall), usage=usage,
        failures=[{"id": r.id, "type": r.error.type, "message": r.error.message} for r in failed if r.error],
        missing_captions={"references": [i for p in session.parts for i in p.space.missing_references if i in ids],
                          "targets": [i for p in session.parts for i in p.space.missing_targets if i in ids]},
        queries=results,
    )


def write_submissions(session: Session, record: RunRecord, folder: Path) -> None:
    """A split without ground truth (CIRR test1, CIRCO test): write and validate the test-server files. A partial
    run (limit, failed queries) cannot make a valid submission; the record then says why none was written."""
    from cirgraph.evals.benchmarks import get_task

    split, task = session.spec.split, get_task(record.benchmark)
    if task.declaration.split(split).has_ground_truth or not task.has_server_format:
        return
    if record.limit is not None or record.offset or record.counts.get("failed"):
        record.submission_error = (f"not written: {record.counts.get('failed', 0)} failed queries, limit "
                                   f"{record.limit}; the server expects a full ranking for every query")
        return
    queries = [q for p in session.parts for q in p.queries]
    rankings = {r.id: r.ranking for r in record.queries}
    gallery = session.parts[0].data.gallery
    try:
        paths = task.write_submission(queries, rankings, folder, split=split, gallery=gallery)
    except InputError as exc:
        record.submission_error = str(exc)
        return
    record.submissions = [str(p) for p in paths]


def summary_row(record: RunRecord) -> dict[str, Any]:
    """One flat row per run: identity, metrics (percentages) and cost per query."""
    row: dict[str, Any] = {"run_id": record.run_id, "preset": record.preset or "custom",
                           "benchmark": record.benchmark, "split": record.split, "mode": record.mode,
                           "queries": record.counts.get("queries", 0), "failed": record.counts.get("failed", 0)}
    row.update({name: round(value, 2) for name, value in record.metrics.items()})
    cached = record.per_query("cached_calls")
    tokens = record.per_query("prompt_tokens") + record.per_query("completion_tokens")
    row.update(dict(zip(COST_COLUMNS, (round(record.per_query("calls"), 2), round(cached, 2), round(tokens, 1),
                                       round(record.per_query("seconds"), 3),
                                       round(record.per_query("cost_seconds"), 3)), strict=True)))
    return row


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def markdown(record: RunRecord) -> str:
    """A human-readable summary of one run."""
    row = summary_row(record)
    lines = [f"# {record.run_id}", "",
             f"{record.benchmark} {record.split} ({record.revision}), {record.mode} space, preset "
             f"`{record.preset or 'custom'}`; cirgraph {record.package_version}"
             + (f" at {record.git_revision[:12]}" if record.git_revision else "") + f"; written {record.created}.", ""]
    if record.metrics:
        lines += ["| metric | % |", "|---|---|", *(f"| {k} | {v:.2f} |" for k, v in record.metrics.items()), ""]
    else:
        lines += ["No ground truth in this split: score the submission files on the benchmark's server.", ""]
    lines += [f"Queries: {row['queries']} ({row['failed']} failed, {record.counts.get('degraded', 0)} degraded, "
              f"{record.counts.get('resumed', 0)} resumed from an earlier run).",
              f"Per query: {row['calls/q']} model calls, {row['cached/q']} cached, {row['tokens/q']} tokens, "
              f"{row['s/q']} s; the model's time {row['model s/q']} s a query, cached answers at their original "
              f"cost. Wall time of this invocation, the gallery build included: "
              f"{record.timings.get('wall_s', 0)} s.", ""]
    models = {k: f"{m.name} ({m.kind}{', ' + m.endpoint if m.endpoint else ''})" for k, m in record.models.items() if m}
    lines += [f"- {k}: {v}" for k, v in models.items()]
    lines += [f"- prompt {s}: {p['template']} ({p['sha']})" for s, p in sorted(record.prompts.items())]
    if record.failures:
        lines += ["", "## Failed queries", *(f"- {f['id']}: {f['type']}: {f['message'][:200]}"
                                             for f in record.failures[:_SHOWN_FAILURES])]
        lines += [f"- ... and {len(record.failures) - _SHOWN_FAILURES} more"] * (len(record.failures) > _SHOWN_FAILURES)
    missing = {k: v for k, v in record.missing_captions.items() if v}
    if missing:
        lines += ["", "## Missing captions", *(f"- {k}: {len(v)} queries ({', '.join(v[:10])})"
                                              for k, v in missing.items())]
    if record.notes:
        lines += ["", "## Notes", *(f"- {note}" for note in record.notes)]
    if record.submissions or record.submission_error:
        lines += ["", "## Submission", *(f"- {p}" for p in record.submissions)]
        lines += [f"- {record.submission_error}"] * bool(record.submission_error)
    return "\n".join(lines) + "\n"


def write_summaries(record: RunRecord, folder: Path) -> tuple[Path, Path]:
    """summary.md and summary.csv beside the record."""
    return (write_atomic(folder / "summary.md", markdown(record)),
            write_atomic(folder / "summary.csv", to_csv([summary_row(record)])))


def headline_metrics(records: Sequence[RunRecord]) -> list[str]:
    """The metrics to compare: every run's, in the order they first appear, without CIRCO's per-aspect mAP."""
    names = dict.fromkeys(name for r in records for name in r.metrics if "[" not in name)
    return list(names)


def comparison(records: Sequence[RunRecord]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the side-by-side table: one row per run, metrics then cost per query."""
    metrics = headline_metrics(records)
    header = ["run", *metrics, *COST_COLUMNS]
    rows = []
    for record in records:
        row = summary_row(record)
        label = f"{row['preset']} ({record.mode})" if len({r.mode for r in records}) > 1 else row["preset"]
        rows.append([label, *(f"{row[m]:.2f}" if m in row else "-" for m in metrics),
                     *(str(row[c]) for c in COST_COLUMNS)])
    return header, rows


def plot(records: Sequence[RunRecord], path: Path) -> Path:
    """A grouped bar chart of the headline metrics by run: PNG via matplotlib when installed and `path` ends in
    .png, else SVG written directly (same name, .svg). Returns the file written."""
    metrics, labels = headline_metrics(records), [r.preset or r.run_id for r in records]
    values = [[r.metrics.get(m, 0.0) for m in metrics] for r in records]
    if path.suffix.lower() == ".png":
        try:
            return _plot_matplotlib(metrics, labels, values, path)
        except ImportError:
            path = path.with_suffix(".svg")
    return write_atomic(path.with_suffix(".svg"), _svg(metrics, labels, values))


def _plot_matplotlib(metrics: list[str], labels: list[str], values: list[list[float]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = 0.8 / max(1, len(labels))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(metrics) * max(1, len(labels)) / 3), 4))
    for i, (label, row) in enumerate(zip(labels, values, strict=True)):
        ax.bar([x + i * width for x in range(len(metrics))], row, width, label=label)
    ax.set_xticks([x + width * (len(labels) - 1) / 2 for x in range(len(metrics))], metrics, rotation=30)
    ax.set_ylabel("%")
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")


def _svg(metrics: list[str], labels: list[str], values: list[list[float]]) -> str:
    """A dependency-free grouped bar chart (0-100 %), one colour per run, with a legend."""
    bar, gap, height, left, top = 14, 18, 220, 40, 20
    group = bar * max(1, len(labels)) + gap
    width = left + group * max(1, len(metrics)) + 180
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 90}" '
             'font-family="sans-serif" font-size="11">',
             f'<line x1="{left}" y1="{top + height}" x2="{width - 180}" y2="{top + height}" stroke="#333"/>']
    for tick in range(0, 101, 25):
        y = top + height - tick * height / 100
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>')
    for m, metric in enumerate(metrics):
        x0 = left + m * group + gap / 2
        for r, row in enumerate(values):
            h = max(0.0, min(100.0, row[m])) * height / 100
            parts.append(f'<rect x="{x0 + r * bar:.1f}" y="{top + height - h:.1f}" width="{bar - 2}" height="{h:.1f}" '
                         f'fill="{_COLOURS[r % len(_COLOURS)]}"><title>{html.escape(labels[r])} {html.escape(metric)}: '
                         f'{row[m]:.2f}</title></rect>')
        parts.append(f'<text x="{x0:.1f}" y="{top + height + 14}" transform="rotate(30 {x0:.1f} {top + height + 14})">'
                     f'{html.escape(metric)}</text>')
    for r, label in enumerate(labels):
        y = top + 14 * r
        parts += [f'<rect x="{width - 170}" y="{y}" width="10" height="10" fill="{_COLOURS[r % len(_COLOURS)]}"/>',
                  f'<text x="{width - 155}" y="{y + 9}">{html.escape(label)}</text>']
    return "\n".join([*parts, "</svg>"]) + "\n"
