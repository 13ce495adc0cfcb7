"""Named configurations: the baselines and the stages of the full pipeline, one step at a time, for ablations.

    modification-only     search with the modification text alone (no model calls)
    caption-only          search with the reference caption alone (vision model only)
    caption+modification  caption and modification concatenated (vision model only)
    modification+reference  the modification, fused with the reference's own similarity (no model calls)
    cirevl                caption -> LLM recompose -> text->image search (CIReVL, exactly)
    anchored              + the modification text's own similarity fused with the description's (WeiMoCIR)
    multi-description     + several descriptions ensembled, + caption and reference similarity (LDRE, WeiMoCIR)
    propositions          + decomposition into propositions, used as a fusion component (NDCR)
    rerank                + verification of the top candidates by a vision model
    reflect               + revision and re-search while the best candidates fail (the full pipeline)
    small-model           anchored, with the prompts and output formats of a <= 1B local LLM: worked examples as
                          chat turns, one plain sentence out, 48 tokens at most (one call a query)
    small-model+rerank    + the top candidates checked by one yes/no question each, scored as P(yes)
"""

from __future__ import annotations

from cirgraph.agents.context import PipelineConfig
from cirgraph.errors import InputError

# The default when none is asked for: the best configuration the configured models can serve, measured on CIRR
# val queries no weight was chosen on (docs/evaluation.md). The full pipeline ("reflect") needs a large model.
LLM_DEFAULT = "small-model"
NO_LLM_DEFAULT = "modification+reference"
# modification+reference: the reference's weight beside the modification's 1.0 (chosen on CIRR val dev 1-500)
NO_LLM_REFERENCE_WEIGHT = 0.15
# small-model's fusion beside the description's total weight of 1.0 (cirevl's text weights; same queries)
SMALL_WEIGHTS = {"w_modification": 2.0, "w_reference": 0.4}
SMALL_RERANK = {"depth": 10, "weight": 0.5}

# The no-LLM baselines search with text alone, as in the CIReVL paper's baselines.
_NO_LLM = {"recompose": False, "decompose": False, "rerank": False, "reflect": False, "n_descriptions": 1,
           "w_modification": 0.0, "w_reference": 0.0, "w_propositions": 0.0}


def _presets() -> dict[str, PipelineConfig]:
    full = PipelineConfig(preset="reflect")
    cirevl = full.with_(recompose_prompt="plain", n_descriptions=1, decompose=False, rerank=False, reflect=False,
                        w_text_image=1.0, w_text_caption=0.0, w_modification=0.0, w_reference=0.0,
                        w_propositions=0.0, preset="cirevl")
    # the modification weighs as much as the description (chosen on CIRR val queries 61-184, docs/evaluation.md)
    anchored = cirevl.with_(w_modification=cirevl.w_text_image + cirevl.w_text_caption, preset="anchored")
    multi = full.with_(decompose=False, rerank=False, reflect=False, w_propositions=0.0, preset="multi-description")
    # small-model: the prompts, output formats and fusion for a <= 1B local LLM (docs/evaluation.md, "Small models")
    small = anchored.with_(recompose_prompt="small", caption_prompt="small", fallback_text="modification",
                           w_modification=SMALL_WEIGHTS["w_modification"], w_reference=SMALL_WEIGHTS["w_reference"],
                           preset="small-model")
    small_rerank = small.with_(rerank=True, rerank_prompt="small", rerank_depth=SMALL_RERANK["depth"],
                               rerank_weight=SMALL_RERANK["weight"], rerank_with_reference=False,
                               preset="small-model+rerank")
    return {
        "modification-only": full.with_(**_NO_LLM, caption=False, baseline_text="modification",
                                        preset="modification-only"),
        "caption-only": full.with_(**_NO_LLM, baseline_text="caption", preset="caption-only"),
        "caption+modification": full.with_(**_NO_LLM, baseline_text="caption+modification",
                                           preset="caption+modification"),
        # the reference's own similarity fused with the modification's (needs no LLM; w chosen on CIRR val 1-500)
        "modification+reference": full.with_(**{**_NO_LLM, "w_reference": NO_LLM_REFERENCE_WEIGHT}, caption=False,
                                             baseline_text="modification", preset="modification+reference"),
        "cirevl": cirevl,
        "anchored": anchored,
        "multi-description": multi,
        "propositions": multi.with_(decompose=True, w_propositions=full.w_propositions, preset="propositions"),
        "rerank": full.with_(reflect=False, preset="rerank"),
        "reflect": full,
        "small-model": small,
        "small-model+rerank": small_rerank,
    }


PRESETS: dict[str, PipelineConfig] = _presets()


def preset(name: str, **overrides: object) -> PipelineConfig:
    """The named configuration, with `overrides` applied; InputError listing the names for an unknown one."""
    try:
        config = PRESETS[name]
    except KeyError:
        raise InputError(f"preset {name!r}", f"unknown; choose one of: {', '.join(PRESETS)}") from None
    return config.with_(**overrides) if overrides else config


def default_preset(*, has_llm: bool) -> tuple[str, str]:
    """The preset to use when none is asked for, and why, in words: the small-model configuration when an LLM is
    configured, else the best preset that needs no LLM."""
    if has_llm:
        return LLM_DEFAULT, "an LLM is configured; for a large one the full pipeline is --preset reflect"
    return NO_LLM_DEFAULT, "no LLM is configured, and it needs none; with CIRGRAPH_LLM_BASE_URL set: small-model"


def names() -> list[str]:
    return list(PRESETS)
