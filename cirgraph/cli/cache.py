"""`cirgraph cache`: what the model-call and caption caches under CIRGRAPH_HOME hold, and clearing them.

    cirgraph cache                                   # entries and size per namespace, per cache file
    cirgraph cache clear --namespace chat-invalid    # forget remembered failures (they also expire on their own)
    cirgraph cache clear                             # forget everything (the next runs ask the models again)
"""

from __future__ import annotations

import json
import time
from typing import Optional

import typer

from cirgraph.cli import app

cache_app = typer.Typer(help="Show or clear the model-call and caption caches.", no_args_is_help=False,
                        invoke_without_command=True)
app.add_typer(cache_app, name="cache")

_NAMESPACE = typer.Option(None, "--namespace", "-n", help="Only this namespace (chat, chat-invalid, captions...).")


def _files() -> list:
    from cirgraph.settings import Settings

    folder = Settings().cache_dir
    return sorted(folder.glob("*.sqlite")) if folder.is_dir() else []


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    hours = (time.time() - seconds) / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} d"


@cache_app.callback()
def show(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Entries, bytes and age per namespace of each cache file."""
    if ctx.invoked_subcommand is not None:
        return
    from cirgraph.tools.cache import CallCache

    report = {}
    for path in _files():
        with CallCache(path) as cache:
            report[str(path)] = cache.stats()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    if not report:
        typer.echo("no cache files yet")
    for path, namespaces in report.items():
        typer.echo(path + ("" if namespaces else "  (empty)"))
        for ns, st in namespaces.items():
            typer.echo(f"  {ns:<20} {st['entries']:>8} entries {st['bytes'] / 1e6:>9.2f} MB   oldest "
                       f"{_age(st['oldest'])}, newest {_age(st['newest'])}")


@cache_app.command("clear")
def clear(namespace: Optional[str] = _NAMESPACE) -> None:
    """Delete every entry, or one namespace's, in every cache file."""
    from cirgraph.tools.cache import CallCache

    removed = 0
    for path in _files():
        with CallCache(path) as cache:
            before = len(cache)
            cache.clear(namespace)
            removed += before - len(cache)
    typer.echo(f"removed {removed} entr{'y' if removed == 1 else 'ies'}"
               + (f" of namespace {namespace!r}" if namespace else ""))
