"""A conversation's turns as plain records, and the rules that carry context from one turn to the next.

Each user message is a modification of the current target. The next search keeps the current reference image and
takes the previous turn's target description as its caption, so recompose applies the new change to what the user
already asked for ("now with long sleeves" after "make it red"). Picking a result ("the second one, but blue", or
`pick=2`) makes that gallery item the new reference, described by its own captions; a new image starts afresh from
that image. A message that only picks or only gives an image is a "select" turn: it sets the reference without
searching.

Records are plain JSON-ready dicts (what the checkpointer stores); `Turn` is their typed SDK view.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cirgraph.agents.progress import stage_summary as stage_summary  # the chat API and CLI import it here
from cirgraph.agents.query import check_text
from cirgraph.agents.results import RankedHit
from cirgraph.chat.ordinals import LAST, parse_pick
from cirgraph.errors import InputError

if TYPE_CHECKING:
    from cirgraph.agents.results import SearchResult

# What a turn keeps of a search's explanation: enough to show why, without prompts, traces and configuration.
EXPLANATION_KEYS = ("caption", "caption_source", "descriptions", "description_source", "edits", "queries",
                    "propositions", "verdicts", "weights", "rounds", "stop_reason", "reflections", "degraded",
                    "latency_s", "usage")


def plain(value: Any) -> Any:
    """A JSON round trip: what the checkpoint stores is exactly what JSON can carry (no numpy scalars, no objects)."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


@dataclass(slots=True)
class Turn:
    """One turn of a conversation.

    kind: "search" (a search ran) or "select" (the reference changed, nothing was searched). `context` is the
    caption the turn was given (the previous target description), `description` the target description it produced
    (the next turn's context), `hits` the ranking and `explanation` the caption, descriptions, propositions and
    verdicts behind it.
    """

    n: int
    kind: str
    text: str
    modification: str | None
    reference: dict[str, Any]
    pick: int | None = None
    context: str | None = None
    description: str | None = None
    hits: list[RankedHit] = field(default_factory=list)
    explanation: dict[str, Any] = field(default_factory=dict)
    at: str = ""

    @property
    def ids(self) -> list[str]:
        return [h.id for h in self.hits]

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "kind": self.kind, "text": self.text, "modification": self.modification,
                "reference": dict(self.reference), "pick": self.pick, "context": self.context,
                "description": self.description, "hits": [h.to_dict() for h in self.hits],
                "explanation": self.explanation, "at": self.at}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Turn:
        hits = [RankedHit(**h) for h in record.get("hits") or []]
        return cls(n=record["n"], kind=record["kind"], text=record.get("text", ""),
                   modification=record.get("modification"), reference=dict(record.get("reference") or {}),
                   pick=record.get("pick"), context=record.get("context"), description=record.get("description"),
                   hits=hits, explanation=dict(record.get("explanation") or {}), at=record.get("at", ""))


def last_hits(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The hits of the latest turn that searched (a select turn has none)."""
    return next((t["hits"] for t in reversed(turns) if t.get("hits")), [])


def _picked(turns: list[dict[str, Any]], pick: int) -> dict[str, Any]:
    hits = last_hits(turns)
    if not hits:
        raise InputError(f"pick {pick}", "there are no results to pick from yet")
    number = len(hits) if pick == LAST else pick
    if not 1 <= number <= len(hits):
        raise InputError(f"pick {pick}", f"the last results are numbered 1 to {len(hits)}")
    return hits[number - 1] | {"rank": number}


def plan_turn(turns: list[dict[str, Any]], *, text: str = "", reference: dict[str, Any] | None = None,
              pick: int | None = None, parse_ordinals: bool = True) -> dict[str, Any]:
    """The action that runs the next turn: reference, context caption and modification. InputError names what is
    missing or wrong (no reference yet, a pick beyond the results, an empty message) before anything runs."""
    if not isinstance(text, str):
        raise InputError("text", f"expected a string, got {type(text).__name__}")
    rest = text
    if pick is None and reference is None and parse_ordinals and last_hits(turns):
        pick, rest = parse_pick(text)
    if pick is not None and reference is not None:
        raise InputError("pick", "give either a result to pick or a new image, not both")
    if isinstance(pick, bool) or (pick is not None and not isinstance(pick, int)):
        raise InputError("pick", f"expected a result number, got {pick!r}")
    modification = check_text(rest) if rest.strip() else None
    context = None
    if reference is not None:
        new_reference = reference
    elif pick is not None:
        hit = _picked(turns, pick)
        new_reference, pick = {"kind": "gallery", "id": hit["id"]}, hit["rank"]
    elif turns:
        new_reference, context = turns[-1]["reference"], turns[-1].get("description")
    else:
        raise InputError("reference", "the first message needs a reference image (or a gallery item to start from)")
    if modification is None and reference is None and pick is None:
        raise InputError("text", "is empty")
    return {"kind": "turn", "text": text, "modification": modification, "pick": pick,
            "reference": new_reference, "context": context}


def record_turn(action: dict[str, Any], n: int, result: SearchResult | None = None) -> dict[str, Any]:
    """The stored record of a turn: the action, and the search result's hits and explanation when it searched."""
    record = {"n": n, "kind": "select" if result is None else "search", "text": action["text"],
              "modification": action["modification"], "reference": action["reference"], "pick": action["pick"],
              "context": action["context"], "description": None, "hits": [], "explanation": {},
              "at": datetime.now(UTC).isoformat(timespec="seconds")}
    if result is not None:
        explanation = result.explanation()
        kept = {key: explanation.get(key) for key in EXPLANATION_KEYS}
        kept["preset"] = (result.config or {}).get("preset")
        descriptions = result.descriptions or result.queries
        record.update(description=descriptions[0] if descriptions else action["modification"],
                      hits=[h.to_dict() for h in result.hits], explanation=kept)
    return plain(record)
