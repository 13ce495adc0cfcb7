"""Closed-choice answers ("yes" / "no") scored as probabilities, from the first reply token's log-probabilities.

A sampled "yes" says nothing about how sure the model was: a small model answers "yes" to nearly every check, so
a verdict built from it never reorders anything. The probability mass the model puts on each option's first token
is a continuous score instead (the OpenAI protocol's `logprobs` / `top_logprobs`, which vLLM and llama.cpp's
server return). Where an endpoint gives no log-probabilities, the sampled answer stands in as probability 1.

`classify(model, messages, options)` is what pipeline code calls: it uses the model's own `classify` when the
client has one (OpenAI-compatible, cached, scripted) and falls back to a short plain-text completion otherwise.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from cirgraph.errors import ModelOutputError
from cirgraph.tools.messages import Message

YES_NO = ("yes", "no")
_TOKEN = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True, slots=True)
class Choice:
    """The answer to a closed question: a probability per option (summing to 1), the most probable option, and
    whether the probabilities came from log-probabilities ("logprobs") or from the sampled text alone ("text")."""

    probabilities: dict[str, float]
    answer: str
    source: str

    def p(self, option: str) -> float:
        return self.probabilities.get(option, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Choice:
        return cls({str(k): float(v) for k, v in data["probabilities"].items()}, str(data["answer"]),
                   str(data["source"]))


def _norm(token: str) -> str:
    return _TOKEN.sub("", token.lower())


def _option_of(token: str, options: Sequence[str]) -> str | None:
    """The option a reply token starts: the whole option word, or a prefix of two letters or more ("Ye")."""
    word = _norm(token)
    if not word:
        return None
    hits = [o for o in options if word == _norm(o) or (len(word) >= 2 and _norm(o).startswith(word))]
    return hits[0] if len(hits) == 1 else None


def choice_from_logprobs(top: Sequence[Mapping[str, Any]], options: Sequence[str]) -> Choice | None:
    """A Choice from one position's top log-probabilities ([{"token", "logprob"}, ...]); None when no listed token
    starts an option (the model meant to say something else)."""
    mass = dict.fromkeys(options, 0.0)
    for entry in top:
        option = _option_of(str(entry.get("token", "")), options)
        logprob = entry.get("logprob")
        if option is not None and isinstance(logprob, (int, float)) and math.isfinite(logprob):
            mass[option] += math.exp(logprob)
    total = sum(mass.values())
    if total <= 0:
        return None
    probabilities = {o: m / total for o, m in mass.items()}
    return Choice(probabilities, max(options, key=lambda o: probabilities[o]), "logprobs")


def choice_from_text(text: str, options: Sequence[str], *, model: str = "model") -> Choice:
    """A Choice from a sampled reply: its first word names the option, which gets probability 1."""
    first = next((w for w in re.split(r"\s+", text.strip()) if _norm(w)), "")
    option = _option_of(first, options) if first else None
    if option is None:
        raise ModelOutputError(model, f"expected one of {', '.join(options)}; the reply was {text[:120]!r}", text)
    return Choice({o: float(o == option) for o in options}, option, "text")


async def classify(model: Any, messages: Sequence[Message], options: Sequence[str] = YES_NO) -> Choice:
    """Ask `model` a closed question; see the module docstring. ModelError when no option could be read."""
    own = getattr(model, "classify", None)
    if own is not None:
        return await own(messages, options)
    text = await model.complete(messages, max_tokens=3)
    return choice_from_text(text, options, model=getattr(model, "name", "model"))
