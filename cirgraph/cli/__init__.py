"""The `cirgraph` command. Each subcommand lives in its own module and imports heavy packages only when it runs."""

from __future__ import annotations

import os
import sys

import typer

from cirgraph import __version__


def _flags_without_metavar() -> None:
    """typer's rich help shows a `<bool>` type after boolean flags, which take no value: show none."""
    from typer.core import TyperOption

    original = getattr(TyperOption, "display_type_rich", None)
    if original is None or getattr(original, "flags_plain", False):
        return

    def display_type_rich(self: TyperOption, ctx: object) -> str | None:
        return None if self.is_flag and not self.count else original(self, ctx)

    display_type_rich.flags_plain = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_without_metavar()

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
    verbose: bool = typer.Option(False, "--verbose", envvar="CIRGRAPH_VERBOSE",
                                 help="Show the model library's progress bars (weights loading, downloads)."),
) -> None:
    """Composed image retrieval: find images from a reference image plus a modification text."""
    quiet_model_library(verbose)


def quiet_model_library(verbose: bool = False) -> None:
    """Silence the progress bars of huggingface_hub and transformers ("Loading weights") unless asked for: they read
    HF_HUB_DISABLE_PROGRESS_BARS when first imported, which the command bodies do after this. A value the user set
    wins."""
    if verbose:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "0"
    else:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _register() -> None:
    # Command modules are light at import time (typer signatures only); their bodies import the heavy parts.
    from cirgraph.cli import index as _index  # noqa: F401
    from cirgraph.cli import search as _search  # noqa: F401
    from cirgraph.cli import eval as _eval  # noqa: F401
    from cirgraph.cli import chat as _chat  # noqa: F401
    from cirgraph.cli import ui as _ui  # noqa: F401
    from cirgraph.cli import cache as _cache  # noqa: F401


_register()


def _click_kinds() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(ClickException, Abort) classes of click and of the click that typer vendors (typer >= 0.17 raises its own)."""
    import click

    usage, abort = [click.exceptions.ClickException], [click.exceptions.Abort]
    try:
        from typer import _click as vendored  # type: ignore[attr-defined]
    except ImportError:
        pass
    else:
        usage.append(vendored.exceptions.ClickException)
        abort += [getattr(vendored.exceptions, "Abort", click.exceptions.Abort)]
    return tuple(usage), tuple(abort)


def main() -> None:
    """Entry point: one-line errors and a non-zero exit for expected failures, tracebacks only for bugs. Usage
    errors exit 2 (click's convention)."""
    from cirgraph.errors import CirgraphError

    usage, abort = _click_kinds()
    try:
        code = app(standalone_mode=False)
    except CirgraphError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except usage as exc:
        ctx = getattr(exc, "ctx", None)
        hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        typer.echo(f"error: {exc.format_message()}{hint}", err=True)
        sys.exit(exc.exit_code)
    except abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    if isinstance(code, int) and code:  # a command's typer.Exit(code) comes back as the return value here
        sys.exit(code)
