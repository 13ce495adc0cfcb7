"""`cirgraph search`: rank a gallery's images for a reference image plus a modification text.

Stage-by-stage progress goes to stderr (a spinner on a terminal, one line per stage otherwise); the ranking goes
to stdout as a table, or with --json as exactly one JSON object {"results": [...], "explanation": {...}}.
Degraded stages are always reported on stderr. Bad input and configuration exit 1 with a one-line error.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from cirgraph.agents.progress import stage_summary
from cirgraph.cli import app
from cirgraph.cli._presets import chosen_preset, preset_option

if TYPE_CHECKING:
    from rich.console import Console

    from cirgraph.agents.results import SearchResult
    from cirgraph.retriever import Retriever
    from cirgraph.settings import Settings


def open_retriever(gallery: str, preset: Any, settings: Settings | None = None) -> Retriever:
    """The retriever for `gallery` with the preset, from Settings (tests replace this function)."""
    from cirgraph.retriever import Retriever

    return Retriever.from_settings(settings, gallery=gallery, preset=preset)


async def _run(retriever: Retriever, reference: Any, text: str, k: int, caption: str | None,
               err: Console) -> SearchResult:
    result = None
    with err.status("searching...") as status:
        async for stage, payload in retriever.astream(reference, text, k=k, caption=caption):
            if stage == "result":
                result = payload
                continue
            line = stage_summary(stage, payload)
            status.update(line)
            if not err.is_terminal:
                err.print(line, highlight=False, markup=False)
    return result


def _table(result: SearchResult) -> Any:
    """The results with the columns that carry data (a caption gallery has no image score, a run without rerank
    no verdict); numbers never wrap, long paths fold."""
    from rich.table import Table

    fmt = lambda v: "" if v is None else f"{v:.3f}"  # noqa: E731
    columns = {"#": lambda h: str(h.rank), "id": lambda h: h.id, "score": lambda h: fmt(h.score),
               "image": lambda h: fmt(h.components.get("text_image")),
               "caption": lambda h: fmt(h.components.get("text_caption")),
               "mod": lambda h: fmt(h.components.get("modification")),
               "ref": lambda h: fmt(h.components.get("reference")),
               "props": lambda h: fmt(h.components.get("propositions")),
               "verdict": lambda h: fmt(h.verdict), "uri": lambda h: h.uri or ""}
    rows = [{name: cell(h) for name, cell in columns.items()} for h in result.hits]
    shown = [name for name in columns if name in ("#", "id", "score") or any(row[name] for row in rows)]
    table = Table(title=f"{len(result.hits)} results", title_justify="left")
    for col in shown:  # an id must stay copyable and a number readable; only a path gives way
        table.add_column(col, justify="left" if col in ("id", "uri") else "right", no_wrap=col != "uri",
                         overflow="fold")
    for row in rows:
        table.add_row(*(row[col] for col in shown))
    return table


def _explain(out: Console, result: SearchResult) -> None:
    e = result.explanation()
    out.print(f"caption ({e['caption_source']}): {e['caption'] or '-'}", highlight=False, markup=False)
    for d in e["descriptions"] or e["queries"]:
        out.print(f"description ({e['description_source'] or 'baseline'}): {d}", highlight=False, markup=False)
    for p in e["propositions"]:
        out.print(f"proposition [{p['polarity']}]: {p['text']} -- {p['question']}", highlight=False, markup=False)
    weights = {k: round(v, 4) for k, v in e["weights"].items()}  # 0.9090909090909092 reads as 0.9091
    out.print(f"weights: {json.dumps(weights)}", highlight=False, markup=False)
    out.print(f"rounds: {e['rounds']}, stop: {e['stop_reason'] or '-'}", highlight=False, markup=False)
    latency = ", ".join(f"{k} {v:.2f}s" for k, v in e["latency_s"].items())
    u = e["usage"]
    out.print(f"latency: {latency}", highlight=False, markup=False)
    out.print(f"model calls: {u['calls']} ({u['cached_calls']} cached, {u['failed_calls']} failed), tokens: "
              f"{u['prompt_tokens']} in / {u['completion_tokens']} out", highlight=False, markup=False)
    for stage, ref in e["prompts"].items():
        out.print(f"prompt {stage}: {ref['template']} @{ref['sha']}", highlight=False, markup=False)


def _check_inputs(text: str, image: Path | None, settings: Settings) -> None:
    """Refuse an empty or oversized modification and an unreadable reference image, naming which and why. The
    decoded image is kept for the search, which does not decode it again."""
    from cirgraph.agents.query import check_reference_bytes, check_text
    from cirgraph.tools.images import read_image_bytes

    check_text(text)
    if image is not None:
        check_reference_bytes(read_image_bytes(image), name=str(image), max_pixels=settings.max_image_pixels)


@app.command("search")
def search(
    text: str = typer.Option(..., "--text", "-t", help="The modification: what should differ from the reference."),
    image: Optional[Path] = typer.Option(None, "--image", "-i", help="The reference image file."),
    ref_id: Optional[str] = typer.Option(None, "--ref-id", help="The reference as a gallery item id."),
    gallery: str = typer.Option("default", "--gallery", "-g", help="The gallery to search."),
    k: int = typer.Option(10, "-k", "--k", min=1, max=1000, help="How many results."),
    preset: Optional[str] = preset_option(),
    caption: Optional[str] = typer.Option(None, "--caption", help="The reference's caption (skips captioning)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: results and explanation."),
    explain: bool = typer.Option(False, "--explain", help="Also print how the ranking came about."),
) -> None:
    """Find gallery images that look like the reference image changed as the text says."""
    from rich.console import Console

    from cirgraph.agents.query import GalleryRef
    from cirgraph.settings import Settings

    if (image is None) == (ref_id is None):
        raise typer.BadParameter("give exactly one of --image and --ref-id")
    out, err = Console(soft_wrap=True), Console(stderr=True, soft_wrap=True)
    settings = Settings()  # read once: the input check, the default preset and the retriever share it
    _check_inputs(text, image, settings)  # bad input fails before any model is loaded
    retriever = open_retriever(gallery, chosen_preset(preset, settings), settings)
    try:
        reference = GalleryRef(ref_id) if ref_id is not None else image
        result = asyncio.run(_run(retriever, reference, text, k, caption, err))
    finally:
        retriever.close()
    for d in result.degraded:
        err.print(f"warning: {d['stage']} degraded ({d['reason']}); used {d['fallback']}", highlight=False,
                  markup=False)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False, default=str))
        return
    out.print(_table(result))
    if explain:
        _explain(out, result)
