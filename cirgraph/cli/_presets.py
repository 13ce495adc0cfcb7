"""The --preset option shared by the commands that search, and the default it stands for."""

from __future__ import annotations

from typing import Any

import typer

PRESET_HELP = ("Pipeline configuration: modification-only, caption-only, caption+modification, modification+reference, "
               "cirevl, anchored, multi-description, propositions, rerank, reflect, small-model, small-model+rerank. "
               "Default: the best one the configured models can serve (small-model with an LLM, "
               "modification+reference without).")


def preset_option(help_text: str = PRESET_HELP) -> typer.models.OptionInfo:
    return typer.Option(None, "--preset", "-p", help=help_text, show_default=False)


def chosen_preset(name: str | None, settings: Any = None) -> Any:
    """`name`, or the default for the configured models (their profile's configuration, else a preset name), said in
    one line on stderr. `settings`: the command's Settings (read from the environment when not given)."""
    if name is not None:
        return name
    from cirgraph.settings import Settings

    chosen, why = (settings or Settings()).default_preset()
    announce_default(chosen, why)
    return chosen


def announce_default(chosen: Any, why: str) -> None:
    label = chosen if isinstance(chosen, str) else (chosen.preset or "custom")
    typer.echo(f"preset: {label} ({why})", err=True)
