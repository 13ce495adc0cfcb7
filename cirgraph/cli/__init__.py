"""The `cirgraph` command. Each subcommand lives in its own module and imports heavy packages only when it runs."""

from __future__ import annotations

import sys

import typer

from cirgraph import __version__

app = typer.Typer(
    name="cirgraph",
    help="Composed image retrieval: find images from a reference image plus a modification text.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cirgraph {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Composed image retrieval: find images from a reference image plus a modification text."""


def _register() -> None:
    # Command modules are light at import time (typer signatures only); their bodies import the heavy parts.
    from cirgraph.cli import index as _index  # noqa: F401
    from cirgraph.cli import search as _search  # noqa: F401
    from cirgraph.cli import eval as _eval  # noqa: F401
    from cirgraph.cli import chat as _chat  # noqa: F401
    from cirgraph.cli import ui as _ui  # noqa: F401
    from cirgraph.cli import cache as _cache  # noqa: F401


_register()


def main() -> None:
    """Entry point: one-line errors and a non-zero exit for expected failures, tracebacks only for bugs."""
    from cirgraph.errors import CirgraphError

    try:
        app(standalone_mode=False)
    except CirgraphError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            typer.echo("aborted", err=True)
            sys.exit(1)
        raise
