"""`cirgraph index`: add images (a folder or one file) and their captions to a gallery, or captions alone.

Progress goes to stderr (a bar on a terminal, a line a second otherwise); the summary to stdout, as text or, with
--json, as exactly one JSON object. Bad files are listed in the summary. Exit codes: 0 when every input was
indexed (or was already); 3 (EXIT_SOME_FAILED) when some inputs failed, the others indexed; 1 for fatal problems
(unreachable store, missing model, bad captions file, missing or image-less PATH), before anything is written; 2
for usage errors. A run in which every input failed leaves no new, empty gallery behind.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from cirgraph.cli import app

if TYPE_CHECKING:
    from rich.console import Console

    from cirgraph.stores.scan import IndexReport


EXIT_SOME_FAILED = 3


def gallery_exists(settings: object, name: str) -> bool:
    from cirgraph.stores.chroma import gallery_names, make_client

    return name in gallery_names(make_client(settings))


def _writer(settings: Any, err: Console) -> Any:
    """The embedded store's writer lock (cirgraph.stores.sharing); a Chroma server orders writes itself."""
    import contextlib

    from cirgraph.stores.sharing import write_lock

    if settings.uses_chroma_server:
        return contextlib.nullcontext()
    return write_lock(settings.galleries_dir / "chroma", on_wait=lambda holder: err.print(
        f"waiting for another writer of this gallery store ({holder}) to finish...", highlight=False, markup=False))


class _Progress:
    """Progress callback: a rich bar on a terminal, else a plain "indexed N/M" line at most once a second."""

    def __init__(self, console: Console, label: str) -> None:
        self.console, self.label = console, label
        self._bar = self._task = None
        self._last = 0.0

    def __enter__(self) -> _Progress:
        if self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), console=self.console, transient=True)
            self._bar.__enter__()
        return self

    def __call__(self, done: int, total: int) -> None:
        if self._bar is not None:
            if self._task is None:
                self._task = self._bar.add_task(self.label, total=total)
            self._bar.update(self._task, completed=done, total=total)
        elif time.monotonic() - self._last >= 1.0 or done == total:
            self._last = time.monotonic()
            self.console.print(f"{self.label} {done}/{total}", highlight=False)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def _summary_lines(name: str, report: IndexReport) -> list[str]:
    lines = [f"gallery {name!r}: {report.added} added, {report.skipped} skipped, {report.moved} moved, "
             f"{report.pruned} pruned, {report.ignored} ignored, {len(report.failed)} failed; "
             f"{report.captions} captions written, {report.updated} items re-captioned; {report.total} items in total"]
    if report.links_outside:
        lines.append(f"skipped {report.links_outside} links that lead outside the folder (--follow-links follows them)")
    if report.orphans_removed:
        lines.append(f"removed {report.orphans_removed} captions left by an interrupted run")
    lines += [f"failed: {f.path}: {f.reason}" for f in report.failed]
    lines += [f"skipped: {d['path']}: duplicate of {d['duplicate_of']}" for d in report.duplicates]
    lines += [f"not captioned: {f.path}: {f.reason}" for f in report.caption_failures]
    return lines


def _warn_unknown(err: Console, report: IndexReport, source: Path) -> None:
    names = report.unknown_caption_names
    if names:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        err.print(f"warning: {len(names)} names in {source} match nothing and were left out (first: {shown})",
                  highlight=False, markup=False)


@app.command("index")
def index(
    path: Path | None = typer.Argument(
        None, help="A folder (walked recursively) or one image file. Omit it with --captions to index the names "
                   "of the captions file (caption-only gallery) or caption an existing gallery's images."),
    gallery: str = typer.Option("default", "--gallery", "-g", help="Gallery name."),
    captions: Path | None = typer.Option(
        None, "--captions", help="Captions file: JSON, JSONL or CSV mapping image names to one or more captions."),
    caption_with_model: bool = typer.Option(
        False, "--caption-with-model", help="Caption images that have no captions with the vision model."),
    prune: bool = typer.Option(False, "--prune", help="Remove items whose files under PATH are gone."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as one JSON object on stdout."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Images embedded per batch."),
    follow_links: bool = typer.Option(
        False, "--follow-links", help="Follow links that lead outside PATH (by default they are skipped and "
                                      "counted); link loops are cut either way."),
) -> None:
    """Add images and captions to a gallery. Already indexed content is skipped; a killed run resumes."""
    import click
    from rich.console import Console

    from cirgraph import clients
    from cirgraph.settings import Settings
    from cirgraph.stores.captions import import_captions, load_captions
    from cirgraph.stores.chroma import check_gallery_name, drop_gallery, make_client
    from cirgraph.stores.hnsw import after_index
    from cirgraph.stores.indexer import Indexer
    from cirgraph.stores.scan import scan_path

    if path is None and captions is None:
        raise click.UsageError("give PATH (a folder or an image), or --captions FILE to index names only")
    if path is None and caption_with_model:
        raise click.UsageError("--caption-with-model needs PATH: it captions the images it indexes")
    settings = Settings()
    check_gallery_name(gallery)
    table = load_captions(captions) if captions is not None else None  # a bad file fails before any write
    # so does a missing or image-less PATH
    scan = scan_path(path, follow_links=follow_links) if path is not None else None
    captioner = clients.build_captioner(settings) if caption_with_model else None  # and a missing vision model
    err = Console(stderr=True, soft_wrap=True)
    hnsw: dict = {}
    # one writer at a time per embedded store: a second run waits, then skips what the first added
    with _writer(settings, err):
        existed = gallery_exists(settings, gallery)
        store = clients.open_gallery(settings, gallery, create=True, kind="images" if scan else "captions")
        with _Progress(err, "indexed" if scan else "captions") as progress:
            if scan is not None:
                indexer = Indexer(store, captioner=captioner, batch_size=batch_size,
                                  max_pixels=settings.max_image_pixels, max_concurrency=settings.max_concurrency,
                                  progress=progress)
                report = indexer.index(scan, captions=table, prune=prune)
            else:
                report = import_captions(store, table, prune=prune, progress=progress)
        nothing = report.failed and not (report.added or report.updated or report.moved or report.skipped)
        if nothing and not existed:  # every input failed: leave no empty gallery behind
            drop_gallery(make_client(settings), gallery)
        else:  # ef_search measured on the gallery's own vectors (cirgraph.stores.hnsw)
            hnsw = after_index(store, bool(report.added or report.updated or report.pruned))
    if table is not None:
        _warn_unknown(err, report, captions)
    if json_out:
        typer.echo(json.dumps({"gallery": gallery, **report.to_dict(), "hnsw": hnsw}))
    else:
        for line in _summary_lines(gallery, report):
            typer.echo(line)
    if report.failed:  # the summary says which; a script can tell from the exit code
        raise typer.Exit(EXIT_SOME_FAILED)
