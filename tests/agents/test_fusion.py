"""The scoring arithmetic, checked against hand-computed numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cirgraph.agents import fusion


def test_effective_weights_renormalise_over_available_components() -> None:
    w = {"text_image": 1.0, "text_caption": 0.5, "reference": 0.5, "propositions": 0.0}
    assert fusion.effective_weights(w, ["text_image", "text_caption", "reference"]) == pytest.approx(
        {"text_image": 0.5, "text_caption": 0.25, "reference": 0.25})
    # a caption-only gallery: only text_caption is left, and it takes the whole weight
    assert fusion.effective_weights(w, ["text_caption"]) == {"text_caption": 1.0}


def test_zero_weights_on_every_available_component_fall_back_to_the_text_components() -> None:
    cirevl = {"text_image": 1.0, "text_caption": 0.0, "reference": 0.0, "propositions": 0.0}
    assert fusion.effective_weights(cirevl, ["text_caption", "reference"]) == {"text_caption": 1.0}
    assert fusion.effective_weights(cirevl, ["reference"]) == {}


def test_the_description_keeps_its_total_weight_when_a_text_space_is_missing() -> None:
    w = {"text_image": 1.0, "text_caption": 0.5, "modification": 0.75, "reference": 0.25, "propositions": 0.0}
    both = fusion.effective_weights(w, ["text_image", "text_caption", "modification", "reference"])
    assert both == pytest.approx({"text_image": 0.4, "text_caption": 0.2, "modification": 0.3, "reference": 0.1})
    # caption space: text_caption takes text_image's share, so the description is still 60% of the score
    captions = fusion.effective_weights(w, ["text_caption", "modification", "reference"])
    assert captions == pytest.approx({"text_caption": 0.6, "modification": 0.3, "reference": 0.1})


def test_the_modification_is_scored_in_the_description_spaces_and_needs_one() -> None:
    w = {"text_image": 1.0, "text_caption": 0.5, "modification": 1.0}
    assert fusion.space_shares(w, ["text_image", "text_caption"]) == pytest.approx(
        {"text_image": 2 / 3, "text_caption": 1 / 3})
    assert fusion.space_shares({"text_image": 1.0, "text_caption": 0.0}, ["text_caption"]) == {"text_caption": 1.0}
    assert fusion.space_shares(w, ["reference"]) == {}
    assert fusion.effective_weights(w, ["modification", "reference"]) == {}


def test_fuse_is_a_weighted_mean_and_a_missing_component_drops_out_of_that_items_mean() -> None:
    scores = {"text_image": np.array([0.3, 0.2]), "text_caption": np.array([0.6, np.nan])}
    out = fusion.fuse(scores, {"text_image": 0.75, "text_caption": 0.25})
    assert out[0] == pytest.approx(0.75 * 0.3 + 0.25 * 0.6)
    assert out[1] == pytest.approx(0.2)  # only text_image: its weight renormalised to 1
    assert fusion.fuse({"text_image": np.array([np.nan])}, {"text_image": 1.0})[0] == -math.inf


def test_mean_direction_is_the_unit_mean_of_unit_vectors() -> None:
    v = fusion.mean_direction(np.array([[2.0, 0.0], [0.0, 5.0]]))
    assert v == pytest.approx([math.sqrt(0.5), math.sqrt(0.5)])


def test_best_caption_score_is_the_max_over_captions() -> None:
    q = np.array([1.0, 0.0])
    out = fusion.best_caption_scores([np.array([[0.0, 1.0], [0.8, 0.6]]), None], q)
    assert out[0] == pytest.approx(0.8) and np.isnan(out[1])


def test_propositions_are_signed_by_polarity() -> None:
    sims = np.array([[0.5, 0.1], [0.4, 0.0]])
    out = fusion.proposition_scores(sims, ["must_show", "must_not_show"])
    assert out == pytest.approx([(0.5 - 0.4) / 2, (0.1 - 0.0) / 2])


def test_answer_probabilities_and_verdict_score() -> None:
    assert fusion.p_yes("yes", 1.0) == 1.0 and fusion.p_yes("no", 1.0) == 0.0
    assert fusion.p_yes("yes", 0.0) == fusion.p_yes("no", 0.0) == 0.5
    assert fusion.holds("no", 0.8, "must_not_show") == pytest.approx(0.9)
    answers = {1: ("yes", 0.8), 2: ("yes", 0.8)}  # question 3 unanswered -> neutral
    score = fusion.verdict_score(answers, ["must_show", "must_not_show", "must_show"])
    assert score == pytest.approx((0.9 + 0.1 + 0.5) / 3)
    assert fusion.verdict_score({}, []) == fusion.NEUTRAL


def test_rerank_scores_mix_normalised_retrieval_and_verdict_and_keep_the_tail_below() -> None:
    retrieval = [0.9, 0.8, 0.7, 0.6, 0.5]
    out = fusion.rerank_scores(retrieval, [0.0, 1.0, None], weight=0.5)
    assert out[:3] == pytest.approx([0.5 * 1.0 + 0.0, 0.5 * 0.5 + 0.5, 0.0 + 0.5 * 0.5])
    assert max(out[3:]) <= min(out[:3])
    assert out[3] > out[4]  # the tail keeps its retrieval order
    assert fusion.rerank_scores(retrieval, [], 0.5) == retrieval


def test_rerank_scores_with_equal_retrieval_scores_follow_the_verdicts() -> None:
    out = fusion.rerank_scores([0.4, 0.4], [0.2, 0.9], weight=0.3)
    assert out[1] > out[0]
