"""stage_summary: the one progress line per finished stage that the search CLI and the chat show."""

from __future__ import annotations

import pytest

from cirgraph.agents.progress import stage_summary

TRACE = [{"stage": "x", "seconds": 0.25}, {"stage": "x", "seconds": 0.5}]


@pytest.mark.parametrize(("stage", "update", "line"), [
    ("caption_reference", {"caption": "a dress", "trace": TRACE}, "caption_reference: caption: a dress (0.75s)"),
    ("caption_reference", {}, "caption_reference: no caption (0.00s)"),
    ("recompose", {"descriptions": ["a", "b"], "trace": TRACE}, "recompose: 2 description(s) (0.75s)"),
    ("review_description", {"descriptions": ["a"]}, "review_description: 1 description(s) (0.00s)"),
    ("decompose", {"propositions": [{}, {}, {}]}, "decompose: 3 proposition(s) (0.00s)"),
    ("retrieve", {"hits": [{}] * 4, "round": 2}, "retrieve: 4 candidates (round 2) (0.00s)"),
    ("rerank", {"verdicts": {"a|k": {}}}, "rerank: 1 candidate(s) checked (0.00s)"),
    ("reflect", {"stop_reason": "satisfied"}, "reflect: stop: satisfied (0.00s)"),
    ("reflect", {"descriptions": ["c"]}, "reflect: revised the description (0.00s)"),
    ("something_new", {}, "something_new:  (0.00s)"),
])
def test_each_stage_says_what_it_produced(stage, update, line) -> None:
    assert stage_summary(stage, update) == line


def test_degraded_stages_are_flagged_and_missing_values_tolerated() -> None:
    update = {"descriptions": None, "trace": [{"stage": "recompose"}], "degraded": [{"stage": "recompose"}]}
    assert stage_summary("recompose", update) == "recompose: 0 description(s) (0.00s) [degraded]"


def test_the_chat_and_the_cli_share_it() -> None:
    from cirgraph.chat import turns
    from cirgraph.cli import search

    assert turns.stage_summary is stage_summary and search.stage_summary is stage_summary
