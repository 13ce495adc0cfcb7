"""Text rules the nodes share: the texts searched for without an LLM, the target text that propositions and
verdicts are about, and the checks that drop model output which cannot stand for the target (a description that
repeats the caption or copies the prompt, a proposition lifted from the prompt's examples)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from cirgraph.errors import InputError

if TYPE_CHECKING:
    from cirgraph.agents.state import PipelineState

COPY_WORDS = 6  # a run of this many words from the prompt's instructions counts as copying them
_WORD = re.compile(r"[a-z0-9]+")
_ARTICLES = frozenset({"a", "an", "the"})
_SMALL = frozenset("a an the is are there in on of image photo it its this that to and or does do".split())


def baseline_query(state: dict, mode: str) -> str:
    """The text searched for without recompose: the modification, the caption, or both (no-LLM baselines).
    Without a caption every mode falls back to the modification."""
    caption, modification = state.get("caption"), state["modification"]
    if not caption or mode == "modification":
        return modification
    if mode == "caption":
        return caption
    return f"{caption.rstrip(' .')}. {modification}"


def target_text(state: PipelineState) -> str:
    """The most detailed target description (the last one), or caption + modification without recompose."""
    descriptions = state.get("descriptions") or []
    return descriptions[-1] if descriptions else baseline_query(state, "caption+modification")


def clean(texts: list[str], limit: int) -> list[str]:
    """Non-empty, whitespace-normalised, de-duplicated texts, at most `limit`, order kept."""
    out: list[str] = []
    for text in texts:
        norm = " ".join(str(text).split())
        if norm and norm.lower() not in {t.lower() for t in out}:
            out.append(norm)
    return out[:limit]


def words(text: str) -> list[str]:
    """Lower-case words (letters and digits) of `text`: how the output checks compare texts."""
    return _WORD.findall(text.lower())


def _runs(tokens: list[str], n: int = COPY_WORDS) -> set[tuple[str, ...]]:
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def unusable(description: str, *, caption: str, modification: str, prompt: str) -> str | None:
    """Why `description` cannot stand for the target image, or None when it can."""
    content = [w for w in words(description) if w not in _ARTICLES]
    if content == [w for w in words(caption) if w not in _ARTICLES]:
        return "repeats the reference caption unchanged"
    instructions = _runs(words(prompt)) - _runs(words(caption)) - _runs(words(modification))
    if _runs(words(description)) & instructions:
        return "copies the prompt's instructions"
    return None


def copied_example(text: str, *, prompt: str, inputs: list[str]) -> bool:
    """True when `text` occurs in the prompt outside the query's own texts (`inputs`: target, caption,
    modification) and names something none of them mentions: an example copied from the instructions."""
    said = words(text)
    fixed = prompt.lower()
    for given in inputs:
        fixed = fixed.replace(given.lower(), " ")
    known = {w for given in inputs for w in words(given)}
    in_template = " ".join(said) in " ".join(words(fixed))
    return bool(said) and in_template and any(w not in known and w not in _SMALL for w in said)


def edited_descriptions(answer: Any, current: list[str], limit: int) -> list[str] | None:
    """The descriptions a review answer asks for, or None to keep `current`. InputError for an unusable value."""
    if answer is None or answer is True or answer == "" or answer == []:
        return None
    if isinstance(answer, dict):
        answer = answer.get("descriptions", answer.get("description"))
    texts = [answer] if isinstance(answer, str) else answer
    if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
        raise InputError("review answer", f"expected None, a string or a list of strings, got {type(answer).__name__}")
    cleaned = clean(list(texts), limit)
    if not cleaned:
        raise InputError("review answer", "the edited description is empty")
    return None if cleaned == current else cleaned
