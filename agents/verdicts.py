"""How verdicts are keyed: the propositions a candidate is checked against, and the state key of one candidate's
verdict on them. rerank writes verdicts under these keys; reflect and the search result read them back, so a
later round re-checks only candidates (or propositions) it has not seen."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

from cirgraph.agents.texts import target_text

if TYPE_CHECKING:
    from cirgraph.agents.state import PipelineState, PropositionRecord, VerdictRecord


def checks(state: PipelineState) -> list[PropositionRecord]:
    """The propositions to verify; without any, the whole target description is one (its question left to the
    prompt template)."""
    return list(state.get("propositions") or []) or [
        {"text": target_text(state), "polarity": "must_show", "question": ""}
    ]


def propositions_key(props: list[PropositionRecord]) -> str:
    """A short digest of the propositions (polarity, question and text, in order)."""
    text = "\n".join(f"{p['polarity']}|{p['question']}|{p['text']}" for p in props)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def verdict_key(item_id: str, props_key: str) -> str:
    """The `verdicts` state key of item `item_id`'s verdict on the propositions with key `props_key`."""
    return f"{item_id}|{props_key}"


def verdict_of(verdicts: Mapping[str, VerdictRecord] | None, item_id: str, props_key: str) -> VerdictRecord | None:
    """Item `item_id`'s verdict on those propositions, or None when it was not checked."""
    return (verdicts or {}).get(verdict_key(item_id, props_key))
