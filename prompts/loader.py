"""Prompt templates addressed by stage and variant: `prompts/templates/<stage>/<variant>.j2`, shipped as package data.

Templates render with StrictUndefined, so a variable the caller forgot fails loudly instead of rendering as empty
text. Every render reports the template's name and the hash of its source, so results can say which prompt text
produced them (a prompt edit changes the hash; cache keys and evaluation records follow).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from cirgraph.errors import InputError

if TYPE_CHECKING:
    import jinja2

_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
_PACKAGE = "cirgraph.prompts"


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered prompt: its text, the template's `stage/variant` name and the sha256 (12 hex) of its source."""

    text: str
    name: str
    sha: str

    def ref(self) -> dict[str, str]:
        """How results and traces cite the prompt."""
        return {"template": self.name, "sha": self.sha}


def _templates_root() -> Any:
    return resources.files(_PACKAGE).joinpath("templates")


def stages() -> list[str]:
    """The stages that have templates."""
    return sorted(p.name for p in _templates_root().iterdir() if p.is_dir() and _NAME.match(p.name))


def variants(stage: str) -> list[str]:
    """The variants of one stage, e.g. variants("recompose") -> ["multi", "plain", "structural"]."""
    return list(_variants(stage))


@lru_cache(maxsize=64)
def _variants(stage: str) -> tuple[str, ...]:
    folder = _templates_root().joinpath(stage) if _NAME.match(stage) else None
    if folder is None or not folder.is_dir():
        raise InputError(f"prompt stage {stage!r}", f"no such stage; known stages: {', '.join(stages())}")
    return tuple(sorted(p.name[:-3] for p in folder.iterdir() if p.name.endswith(".j2")))


@lru_cache(maxsize=128)
def source(stage: str, variant: str) -> str:
    """The template source of `stage/variant`; InputError naming the known variants when it does not exist."""
    known = _variants(stage)
    if variant not in known:
        raise InputError(f"prompt {stage}/{variant}", f"no such variant; {stage} has: {', '.join(known)}")
    return _templates_root().joinpath(stage, f"{variant}.j2").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        undefined=jinja2.StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=False,
    )


@lru_cache(maxsize=128)
def _compiled(stage: str, variant: str) -> tuple[jinja2.Template, str]:
    text = source(stage, variant)
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return _environment().from_string(text), sha


def template_sha(stage: str, variant: str) -> str:
    """The content hash a render of `stage/variant` reports."""
    return _compiled(stage, variant)[1]


def render(stage: str, variant: str, /, **variables: Any) -> Rendered:
    """Render `stage/variant` with `variables`; a missing variable raises InputError naming the template."""
    import jinja2

    template, sha = _compiled(stage, variant)
    try:
        text = template.render(**variables)
    except jinja2.UndefinedError as exc:
        raise InputError(f"prompt {stage}/{variant}", f"missing template variable ({exc.message})") from None
    return Rendered(text=text.strip(), name=f"{stage}/{variant}", sha=sha)
