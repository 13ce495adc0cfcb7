"""The small-model path: chat-turn prompts with one plain sentence out, and a rerank that scores each candidate as
P(yes) from the answer's log-probabilities (over real HTTP to the fake server), with the sampled answer as the
fallback where an endpoint gives none."""

from __future__ import annotations

import json
import re

import pytest

from cirgraph.agents.presets import preset
from cirgraph.testing.fake_chat import ScriptedChatModel
from cirgraph.testing.fake_openai import FakeOpenAIServer, TokenProbs
from cirgraph.testing.memory_gallery import TOY_ITEMS
from cirgraph.tools.openai_chat import OpenAIChatModel

SMALL_KEY = "You edit image descriptions"
CHECK_KEY = "Does the photo match?"


def small_llm(reply: str) -> ScriptedChatModel:
    return ScriptedChatModel({SMALL_KEY: reply}, name="small-llm")


async def test_recompose_asks_in_chat_turns_and_keeps_one_clean_sentence(world) -> None:
    llm = small_llm('Image: "A red dress on a hanger."\n\nI changed the colour.')
    _, vlm = world.models()
    res = await world.retriever("small-model", models=(llm, vlm)).asearch(world.path("blue-dress"), "make it red")
    assert res.descriptions == ["A red dress on a hanger."] and res.description_source == "recompose"
    assert res.prompts["recompose"]["template"] == "recompose/small"
    messages, schema = llm.requests[0]
    assert schema is None and [m.role for m in messages] == ["system", "user", "assistant", "user", "assistant",
                                                               "user"]
    assert messages[-1].text == "Image: a blue dress on a hanger\nInstruction: make it red"
    assert res.ids[0] == "red-dress"


@pytest.mark.parametrize(("reply", "why"), [
    ("a blue dress on a hanger", "repeats the reference caption unchanged"),
    ("One green apple on a wooden table.", "copies the prompt's instructions"),
    ("   \n  ", "only empty descriptions"),
])
async def test_unusable_sentences_fall_back_to_the_modification(world, reply: str, why: str) -> None:
    _, vlm = world.models()
    res = await world.retriever("small-model", models=(small_llm(reply), vlm)).asearch(
        world.path("blue-dress"), "make it red")
    assert res.description_source == "fallback" and res.descriptions == ["make it red"]
    assert why in res.degraded[0]["reason"]


async def test_an_ensemble_samples_each_extra_description_at_its_own_temperature(world) -> None:
    seen = []

    class Recording(ScriptedChatModel):
        async def complete(self, messages, **kwargs):
            seen.append(kwargs["temperature"])
            return f"A red dress, take {len(seen)}."

    _, vlm = world.models()
    res = await world.retriever(preset("small-model", n_descriptions=3), models=(Recording(), vlm)).asearch(
        world.path("blue-dress"), "make it red")
    assert sorted(seen) == [0.0, 0.7, 0.9] and len(res.descriptions) == 3


def yes_probability(body: dict) -> TokenProbs:
    """The fake verifier: P(yes) by the candidate's caption, so the order of the verdicts is known."""
    photo = re.search(r"^Photo: (.*)$", body["messages"][-1]["content"], re.M).group(1)
    p = {"a red dress on a hanger": 0.35, "a green dress on a hanger": 0.9}.get(photo, 0.1)
    return TokenProbs({"Yes": p, "No": 1 - p})


@pytest.mark.parametrize("logprobs", ["yes", "omit"])
async def test_rerank_scores_each_candidate_as_p_yes(world, logprobs: str) -> None:
    rules = [(CHECK_KEY, yes_probability), (SMALL_KEY, "A red dress on a hanger.")]
    with FakeOpenAIServer(rules, logprobs=logprobs) as server:
        llm = OpenAIChatModel("qwen-0.5b", base_url=server.base_url, api_key=None, retry_wait=(0.01, 0.02))
        config = preset("small-model+rerank", rerank_depth=4, k=4, rerank_weight=0.8, w_reference=0.0,
                        w_modification=1.0)  # the toy gallery's retrieval order, whatever the preset's weights
        retriever = world.retriever(config, models=(llm, None))
        res = await retriever.asearch(world.path("blue-dress"), "make it red", caption="a blue dress on a hanger")
        checks = [r for r in server.chat_requests if CHECK_KEY in r.text]
    assert len(checks) == 4 and all(r.body["max_tokens"] == 1 for r in checks)
    assert all((r.body.get("logprobs"), r.body.get("top_logprobs")) == (True, 10) for r in checks)
    verdicts = {h.id: h.verdict for h in res.hits}
    if logprobs == "yes":  # continuous scores: the green dress (0.9) overtakes the red one (0.35)
        assert verdicts["green-dress"] == pytest.approx(0.9) and verdicts["red-dress"] == pytest.approx(0.35)
        assert res.ids[0] == "green-dress"
        assert res.verdicts["green-dress"]["source"] == "logprobs"
    else:  # the sampled answers only: yes for the green dress, no for the others
        assert verdicts["green-dress"] == 1.0 and verdicts["red-dress"] == 0.0
        assert res.verdicts["green-dress"]["source"] == "text"
    assert set(verdicts) <= set(TOY_ITEMS)


def test_small_model_presets_read_like_the_ladder() -> None:
    small, reranked = preset("small-model"), preset("small-model+rerank")
    assert (small.recompose_prompt, small.caption_prompt, small.n_descriptions, small.rerank) == (
        "small", "small", 1, False)
    assert (reranked.rerank, reranked.rerank_prompt, reranked.reflect) == (True, "small", False)
    assert json.dumps(small.to_dict())  # records take it as it is


async def test_reflect_revises_in_one_sentence_when_the_checks_fail(world) -> None:
    rules = [(CHECK_KEY, "no"), (SMALL_KEY, "A red dress on a hanger."),
             ("You rewrite image search queries", "Revised: a bright red dress.\nbecause...")]
    llm = ScriptedChatModel(rules, name="small-llm")
    config = preset("small-model+rerank", reflect=True, reflect_prompt="small", rerank_depth=2, max_rounds=2)
    res = await world.retriever(config, models=(llm, None)).asearch(world.path("blue-dress"), "make it red",
                                                                    caption="a blue dress on a hanger")
    assert res.rounds == 2 and res.descriptions == ["Revised: a bright red dress."]
    assert res.reflections[0]["decision"] == "revise" and res.reflections[0]["confidence"] == 0.0
    assert res.prompts["reflect"]["template"] == "reflect/small"


async def test_decompose_small_lists_phrases_and_writes_the_questions(world) -> None:
    rules = [("You list what a wanted photo must show",
              {"show": ["a red dress", "a hanger", "a wooden table"], "avoid": ["a blue dress", " "]}),
             (SMALL_KEY, "A red dress on a hanger.")]
    llm = ScriptedChatModel(rules, name="small-llm")
    config = preset("small-model", decompose=True, decompose_prompt="small")
    res = await world.retriever(config, models=(llm, None)).asearch(world.path("blue-dress"), "make it red",
                                                                    caption="a blue dress on a hanger")
    assert res.propositions == [
        {"text": "a red dress", "polarity": "must_show", "question": "Does the photo show a red dress?"},
        {"text": "a hanger", "polarity": "must_show", "question": "Does the photo show a hanger?"},
        {"text": "a blue dress", "polarity": "must_not_show", "question": "Does the photo show a blue dress?"},
    ]  # "a wooden table" is the prompt's own example, named nowhere in the query: dropped
    assert "copied from the prompt's examples" in res.degraded[0]["reason"]
