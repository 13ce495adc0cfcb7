"""Prompt templates addressed by stage and variant: `prompts/templates/<stage>/<variant>.j2`, shipped as package data.

Templates render with StrictUndefined, so a variable the caller forgot fails loudly instead of rendering as empty
text. Every render reports the template's name and the hash of its source, so results can say which prompt text
produced them (a prompt edit changes the hash; cache keys and evaluation records follow).

A template is one user message, or a conversation: lines `### system`, `### user` and `### assistant` open turns,
so worked examples reach a small model as real chat turns (its chat template formats them as it was trained to).
A template declares what its reply is with top-level `{% set %}` lines, read back as `Rendered.meta`:
`output` ("json", the default: a schema-validated object; "sentence": one plain-text sentence; "yes_no": one word,
scored by its log-probability where the server gives it; "checks": the smallest proposition schema, two lists of
phrases) and `max_tokens` (the reply cap).
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
_TURN = re.compile(r"^### (system|user|assistant)[ \t]*$", re.M)
OUTPUTS = ("json", "sentence", "yes_no", "checks")


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered prompt: its text, the template's `stage/variant` name and the sha256 (12 hex) of its source, its
    chat turns ((role, text) pairs; one user turn for a plain template) and what the template declares of its
    reply (`output`, `max_tokens`)."""

    text: str
    name: str
    sha: str
    turns: tuple[tuple[str, str], ...] = ()
    output: str = "json"
    max_tokens: int | None = None

    def ref(self) -> dict[str, str]:
        """How results and traces cite the prompt."""
        return {"template": self.name, "sha": self.sha}

    def messages(self, *images: Any) -> list[Any]:
        """The turns as chat messages; `images` join the last user turn, after its text."""
        from cirgraph.tools.messages import Message

        turns = self.turns or (("user", self.text),)
        last_user = max(i for i, (role, _) in enumerate(turns) if role == "user")
        return [Message(role, (text, *images) if i == last_user else (text,))  # type: ignore[arg-type]
                for i, (role, text) in enumerate(turns)]


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
    name = f"{stage}/{variant}"
    try:
        module = template.make_module(variables)
    except jinja2.UndefinedError as exc:
        raise InputError(f"prompt {name}", f"missing template variable ({exc.message})") from None
    text = str(module).strip()
    output = getattr(module, "output", "json")
    max_tokens = getattr(module, "max_tokens", None)
    if output not in OUTPUTS or not (max_tokens is None or isinstance(max_tokens, int) and max_tokens > 0):
        raise InputError(f"prompt {name}", f"declares output={output!r}, max_tokens={max_tokens!r} (output is one of "
                                           f"{', '.join(OUTPUTS)}; max_tokens a positive integer)")
    return Rendered(text=text, name=name, sha=sha, turns=_turns(name, text), output=output, max_tokens=max_tokens)


def _turns(name: str, text: str) -> tuple[tuple[str, str], ...]:
    """(role, text) per `### role` section; the whole text as one user turn when there is none."""
    parts = _TURN.split(text)
    if len(parts) == 1:
        return (("user", text),)
    if parts[0].strip():
        raise InputError(f"prompt {name}", "text before the first '### role' line")
    turns = tuple((role, body.strip()) for role, body in zip(parts[1::2], parts[2::2], strict=True))
    if any(not body for _, body in turns) or turns[-1][0] != "user":
        raise InputError(f"prompt {name}", "every turn needs text, and the last turn must be the user's")
    return turns
