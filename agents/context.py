"""Per-run configuration of the pipeline: LangGraph's `context_schema`.

A frozen, keyword-only dataclass, so one compiled graph serves every configuration (presets, ablations, per-call
`k`) and a run cannot change its own settings. Live clients are not here: they are injected when the graph is
built (see cirgraph.agents.services).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from cirgraph.errors import ConfigError

BaselineText = Literal["modification", "caption", "caption+modification"]


def _f(default: Any, description: str) -> Any:
    return field(default=default, metadata={"description": description})


@dataclass(frozen=True, kw_only=True, slots=True)
class PipelineConfig:
    """Settings of one retrieval run. The defaults are the full pipeline (the "reflect" preset)."""

    k: int = _f(10, "How many ranked results to return.")
    # stages
    caption: bool = _f(True, "Caption the reference image with the vision model (skipped when a caption is known).")
    recompose: bool = _f(True, "Let the LLM write the target description from caption + modification (CIReVL).")
    review: bool = _f(False, "Pause after recompose so a person can edit the target description (needs a "
                             "checkpointer; resume with the edited text).")
    decompose: bool = _f(True, "Split the target into propositions with polarity and a yes/no question (NDCR).")
    rerank: bool = _f(True, "Verify the top candidates against the propositions with a (vision) model.")
    reflect: bool = _f(True, "Revise the description and search again when the best candidates fail (needs rerank).")
    baseline_text: BaselineText = _f(
        "caption+modification", "What is searched for when recompose is off: the modification, the caption, or both."
    )
    fallback_text: BaselineText = _f(
        "caption+modification", "What stands in for the description when recompose fails or all its descriptions "
                                "are dropped: the modification, the caption, or both."
    )
    # recompose / decompose
    n_descriptions: int = _f(3, "Target descriptions to write and ensemble at retrieval (LDRE, ImageScope).")
    max_propositions: int = _f(6, "At most this many propositions from decompose.")
    check_outputs: bool = _f(True, "Drop descriptions that repeat the reference caption unchanged or copy the "
                                   "prompt's instructions, and propositions copied from the prompt's examples.")
    # retrieval and fusion
    candidate_pool: int = _f(100, "Candidates taken from each component's index before exact rescoring.")
    w_text_image: float = _f(1.0, "Weight of description -> image similarity.")
    w_text_caption: float = _f(0.5, "Weight of description -> caption similarity.")
    w_modification: float = _f(1.5, "Weight of the modification text's own similarity, scored in the description's "
                                     "spaces: anchors the search to the user's words when the LLM drifts. The "
                                     "default equals the description's weight (w_text_image + w_text_caption).")
    w_reference: float = _f(0.1, "Weight of the reference's own similarity: its image, or its caption in a "
                                  "caption-only gallery (WeiMoCIR).")
    w_propositions: float = _f(0.2, "Weight of proposition-level similarity (signed by polarity).")
    # rerank and reflect
    rerank_depth: int = _f(10, "How many top candidates the model verifies.")
    rerank_weight: float = _f(0.5, "Share of the verdict in a verified candidate's score (the rest is retrieval).")
    rerank_with_reference: bool = _f(True, "Show the reference image beside each candidate (pairwise judgement).")
    max_rounds: int = _f(2, "Retrieval rounds at most (1 = reflect never loops).")
    stop_threshold: float = _f(0.75, "Stop when the best candidate's verdict score reaches this confidence.")
    reflect_top: int = _f(3, "How many top candidates reflect reads failures from.")
    # prompt variants (prompts/templates/<stage>/<variant>.j2)
    caption_prompt: str = _f("default", "Variant of the caption prompt.")
    recompose_prompt: str = _f("multi", "Variant of the recompose prompt: plain, structural, multi.")
    decompose_prompt: str = _f("default", "Variant of the decompose prompt.")
    rerank_prompt: str = _f("default", "Variant of the rerank prompt.")
    reflect_prompt: str = _f("default", "Variant of the reflect prompt.")
    preset: str | None = _f(None, "The preset this configuration came from, for records.")

    def __post_init__(self) -> None:
        _check_ranges(self)
        if self.reflect and not self.rerank:
            raise ConfigError("PipelineConfig: reflect=True needs rerank=True (reflect reads the verdicts)")
        if self.review and not self.recompose:
            raise ConfigError("PipelineConfig: review=True needs recompose=True (it pauses after recompose)")

    @property
    def weights(self) -> dict[str, float]:
        """Fusion weights by component name (see cirgraph.agents.fusion.COMPONENTS)."""
        return {"text_image": self.w_text_image, "text_caption": self.w_text_caption,
                "modification": self.w_modification, "reference": self.w_reference,
                "propositions": self.w_propositions}

    @property
    def pool(self) -> int:
        """Candidates per component: never fewer than the results asked for."""
        return max(self.k, self.candidate_pool, self.rerank_depth if self.rerank else 0)

    def with_(self, **changes: Any) -> PipelineConfig:
        """A copy with `changes`; unknown names raise ConfigError."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"PipelineConfig: unknown setting(s) {', '.join(unknown)}")
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_ranges(c: PipelineConfig) -> None:
    """Reject settings outside their range, naming the setting and the value."""
    ints = {"k": (1, 1000), "n_descriptions": (1, 8), "max_propositions": (1, 16), "candidate_pool": (1, 10_000),
            "rerank_depth": (1, 100), "max_rounds": (1, 10), "reflect_top": (1, 20)}
    for name, (lo, hi) in ints.items():
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ConfigError(f"PipelineConfig: {name}={value!r} is outside {lo}..{hi}")
    weights = ("w_text_image", "w_text_caption", "w_modification", "w_reference", "w_propositions")
    for name in weights:
        if not getattr(c, name) >= 0:
            raise ConfigError(f"PipelineConfig: {name}={getattr(c, name)!r} must be >= 0")
    if sum(getattr(c, name) for name in weights) <= 0:
        raise ConfigError("PipelineConfig: at least one fusion weight must be positive")
    for name in ("rerank_weight", "stop_threshold"):
        if not 0.0 <= getattr(c, name) <= 1.0:
            raise ConfigError(f"PipelineConfig: {name}={getattr(c, name)!r} is outside 0..1")
    for name in ("baseline_text", "fallback_text"):
        if getattr(c, name) not in ("modification", "caption", "caption+modification"):
            raise ConfigError(f"PipelineConfig: {name}={getattr(c, name)!r} is not one of modification, caption, "
                              "caption+modification")
    _check_prompts(c)


def _check_prompts(c: PipelineConfig) -> None:
    from cirgraph.errors import InputError
    from cirgraph.prompts.loader import variants

    for stage in ("caption", "recompose", "decompose", "rerank", "reflect"):
        variant = getattr(c, f"{stage}_prompt")
        try:
            known = variants(stage)
        except InputError as exc:
            raise ConfigError(f"PipelineConfig: {exc}") from None
        if variant not in known:
            raise ConfigError(f"PipelineConfig: {stage}_prompt={variant!r} is not one of {', '.join(known)}")
