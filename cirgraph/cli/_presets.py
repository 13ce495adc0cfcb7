"""The --preset option shared by the commands that search, and the default it stands for."""

from __future__ import annotations

import typer

PRESET_HELP = ("Pipeline configuration: modification-only, caption-only, caption+modification, modification+reference, "
               "cirevl, anchored, multi-description, propositions, rerank, reflect, small-model, small-model+rerank. "
               "Default: the best one the configured models can serve (small-model with an LLM, "
               "modification+reference without).")


def preset_option(help_text: str = PRESET_HELP) -> typer.models.OptionInfo:
    return typer.Option(None, "--preset", "-p", help=help_text, show_default=False)


def chosen_preset(name: str | None, *, announce: bool = True) -> str:
    """`name`, or the default preset for the configured models, said in one line on stderr (see `announce`)."""
    if name is not None:
        return name
    from cirgraph.settings import Settings

    name, why = Settings().default_preset()
    if announce:
        announce_default(name, why)
    return name


def announce_default(name: str, why: str | None = None) -> None:
    if why is None:
        from cirgraph.settings import Settings

        why = Settings().default_preset()[1]
    typer.echo(f"preset: {name} ({why})", err=True)
