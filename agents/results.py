"""What a search returns: ranked hits with their component scores, and the explanation of how they came about
(caption, descriptions, propositions, verdicts, rounds, per-stage latency, model calls and tokens, prompts used,
degradations). Built from the graph's final state; plain data, JSON-ready through `to_dict`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from cirgraph.agents.verdicts import checks, propositions_key, verdict_of

_USAGE_KEYS = ("calls", "cached_calls", "failed_calls", "prompt_tokens", "completion_tokens", "model_seconds",
               "cost_calls", "cost_tokens", "cost_seconds")


@dataclass(slots=True)
class RankedHit:
    """One result. `score` orders the list (retrieval score, or the verified score for reranked candidates)."""

    rank: int
    id: str
    score: float
    uri: str | None = None
    retrieval_score: float = 0.0
    components: dict[str, float | None] = field(default_factory=dict)
    verdict: float | None = None
    captions: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Review:
    """A run paused after recompose, waiting for the target description to be accepted or edited."""

    thread_id: str
    modification: str
    caption: str | None
    descriptions: list[str]


@dataclass(slots=True)
class SearchResult:
    """Ranked hits plus the full explanation of one query."""

    hits: list[RankedHit]
    modification: str
    reference: dict[str, Any]
    caption: str | None = None
    caption_source: str = "none"
    descriptions: list[str] = field(default_factory=list)
    description_source: str | None = None
    edits: list[str] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    propositions: list[dict[str, Any]] = field(default_factory=list)
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    excluded: list[str] = field(default_factory=list)
    rounds: int = 0
    stop_reason: str | None = None
    reflections: list[dict[str, Any]] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)
    prompts: dict[str, dict[str, str]] = field(default_factory=dict)
    degraded: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    pending: Review | None = None
    tail: list[str] = field(default_factory=list)  # the asked-for score_ids outside `hits`, in rank order

    @property
    def ids(self) -> list[str]:
        return [h.id for h in self.hits]

    @property
    def stages_run(self) -> list[str]:
        """Node names in the order they ran (a node that ran in several rounds appears each time)."""
        return [s["stage"] for s in self.stages]

    @property
    def usage(self) -> dict[str, float]:
        """Model calls, tokens and model seconds summed over every stage."""
        totals = {key: sum(s.get(key, 0) for s in self.stages) for key in _USAGE_KEYS}
        totals["model_seconds"] = round(totals["model_seconds"], 4)
        totals["cost_seconds"] = round(totals["cost_seconds"], 4)
        return totals

    @property
    def latency(self) -> dict[str, float]:
        """Seconds per stage, summed over rounds, plus the total."""
        out: dict[str, float] = {}
        for s in self.stages:
            out[s["stage"]] = round(out.get(s["stage"], 0.0) + s["seconds"], 6)
        out["total"] = round(sum(s["seconds"] for s in self.stages), 6)
        return out

    def explanation(self) -> dict[str, Any]:
        """Everything but the hits, JSON-ready."""
        return {
            "modification": self.modification, "reference": self.reference,
            "caption": self.caption, "caption_source": self.caption_source,
            "descriptions": self.descriptions, "description_source": self.description_source, "edits": self.edits,
            "queries": self.queries, "propositions": self.propositions, "verdicts": self.verdicts,
            "weights": self.weights, "excluded": self.excluded, "rounds": self.rounds, "stop_reason": self.stop_reason,
            "reflections": self.reflections, "latency_s": self.latency, "usage": self.usage,
            "stages": self.stages, "prompts": self.prompts, "degraded": self.degraded, "config": self.config,
            "pending": asdict(self.pending) if self.pending else None, "tail": self.tail,
        }

    def to_dict(self) -> dict[str, Any]:
        """{"results": [...], "explanation": {...}}, as `cirgraph search --json` prints it."""
        return {"results": [h.to_dict() for h in self.hits], "explanation": self.explanation()}

    @classmethod
    def from_state(cls, state: dict[str, Any], *, k: int, config: dict[str, Any] | None = None,
                   pending: Review | None = None) -> SearchResult:
        """Read the final (or paused) graph state."""
        hits = [RankedHit(rank=i, **{key: h.get(key) for key in ("id", "score", "uri", "retrieval_score",
                                                                    "components", "verdict", "captions", "metadata")})
                for i, h in enumerate(state.get("hits") or [], 1)][:k]
        pkey = propositions_key(checks(state)) if "modification" in state else ""
        found = {h.id: verdict_of(state.get("verdicts"), h.id, pkey) for h in hits}
        verdicts = {item_id: v for item_id, v in found.items() if v is not None}
        ref = state.get("reference") or {}
        wanted = set(state.get("score_ids") or [])
        # ranked hits past k come first (in rank order), then the rest of the asked-for items by retrieval score
        tail = [h["id"] for h in (state.get("hits") or [])[k:] if h["id"] in wanted]
        extra = state.get("extra_scores") or {}
        tail += sorted((i for i in extra if i not in tail), key=lambda i: (-extra[i], i))
        return cls(
            hits=hits, modification=state.get("modification", ""),
            reference={"id": ref.get("id"), "hash": ref.get("hash")},
            caption=state.get("caption"), caption_source=state.get("caption_source") or "none",
            descriptions=list(state.get("descriptions") or []), description_source=state.get("description_source"),
            edits=list(state.get("edits") or []), queries=list(state.get("queries") or []),
            propositions=list(state.get("propositions") or []), verdicts=verdicts,
            weights=dict(state.get("weights") or {}), excluded=list(state.get("excluded") or []),
            rounds=state.get("round", 0),
            stop_reason=state.get("stop_reason") or ("paused" if pending else None),
            reflections=list(state.get("reflections") or []), stages=list(state.get("trace") or []),
            prompts=dict(state.get("prompts") or {}), degraded=list(state.get("degraded") or []),
            config=dict(config or {}), pending=pending, tail=tail,
        )
