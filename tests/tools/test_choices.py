"""Closed-choice answers: option probabilities from log-probabilities over real HTTP, the sampled-text fallback
where a server gives none, the cache, and clients without a classify method."""

from __future__ import annotations

import math

import pytest

from cirgraph.errors import ModelError, ModelOutputError
from cirgraph.testing.fake_chat import ScriptedChatModel
from cirgraph.testing.fake_openai import FakeOpenAIServer, TokenProbs
from cirgraph.tools.cache import CachedChatModel, CallCache
from cirgraph.tools.choices import YES_NO, Choice, choice_from_logprobs, choice_from_text, classify
from cirgraph.tools.messages import Message
from cirgraph.tools.openai_chat import OpenAIChatModel
from cirgraph.tools.usage import collect_calls

ASK = [Message.system("Answer yes or no."), Message.user("Is the dress red?")]


def model_for(server: FakeOpenAIServer, **kwargs) -> OpenAIChatModel:
    return OpenAIChatModel("fake-model", base_url=server.base_url, api_key="k", retry_wait=(0.01, 0.02), **kwargs)


def test_probabilities_come_from_the_tokens_that_start_each_option() -> None:
    top = [{"token": "Yes", "logprob": math.log(0.6)}, {"token": " yes", "logprob": math.log(0.1)},
           {"token": "No", "logprob": math.log(0.1)}, {"token": "The", "logprob": math.log(0.2)}]
    choice = choice_from_logprobs(top, YES_NO)
    assert choice.answer == "yes" and choice.source == "logprobs"
    assert choice.p("yes") == pytest.approx(0.7 / 0.8) and choice.p("no") == pytest.approx(0.1 / 0.8)
    assert choice_from_logprobs([{"token": "Maybe", "logprob": -0.1}], YES_NO) is None
    assert choice_from_logprobs([{"token": "n", "logprob": -0.1}], YES_NO) is None  # one letter is no word


def test_sampled_text_names_the_option_or_fails_naming_the_reply() -> None:
    assert choice_from_text(" Yes, it is.", YES_NO) == Choice({"yes": 1.0, "no": 0.0}, "yes", "text")
    assert choice_from_text("no", YES_NO).p("no") == 1.0
    with pytest.raises(ModelOutputError, match="expected one of yes, no; the reply was 'Perhaps'"):
        choice_from_text("Perhaps", YES_NO)


async def test_classify_reads_logprobs_over_http() -> None:
    with FakeOpenAIServer({"red": TokenProbs({"Yes": 0.3, "No": 0.6, "Maybe": 0.1})}) as server:
        with collect_calls() as log:
            choice = await classify(model_for(server), ASK)
        body = server.chat_requests[0].body
    assert (body["logprobs"], body["top_logprobs"], body["max_tokens"], body["temperature"]) == (True, 10, 1, 0.0)
    assert choice.source == "logprobs" and choice.answer == "no"
    assert choice.p("yes") == pytest.approx(0.3 / 0.9)
    assert log.records[0].mode == "logprobs" and log.records[0].ok


async def test_a_server_without_logprobs_gives_the_sampled_answer() -> None:
    with FakeOpenAIServer({"red": TokenProbs({"Yes": 0.3, "No": 0.6})}, logprobs="omit") as server:
        choice = await classify(model_for(server), ASK)
    assert choice == Choice({"yes": 0.0, "no": 1.0}, "no", "text")


async def test_a_server_that_refuses_logprobs_is_asked_without_them_from_then_on() -> None:
    with FakeOpenAIServer({"red": TokenProbs({"Yes": 0.8, "No": 0.2})}, logprobs="reject") as server:
        model = model_for(server)
        first = await classify(model, ASK)
        second = await classify(model, ASK)
        sent = [r.body.get("logprobs") for r in server.chat_requests]
    assert first == second == Choice({"yes": 1.0, "no": 0.0}, "yes", "text")
    assert sent == [True, None, None]


async def test_an_answer_that_is_no_option_is_invalid_output() -> None:
    with FakeOpenAIServer({"red": TokenProbs({"Perhaps": 0.9, "So": 0.1})}) as server:
        with pytest.raises(ModelError, match="expected one of yes, no"):
            await classify(model_for(server, max_retries=2), ASK)
        assert len(server.chat_requests) == 2


async def test_clients_without_classify_answer_in_text() -> None:
    scripted = ScriptedChatModel({"red": "Yes."})
    assert (await classify(scripted, ASK)).p("yes") == 1.0
    assert scripted.requests[0][0] == ASK


async def test_cached_choices_keep_their_probabilities_and_cost(tmp_path) -> None:
    rules = {"colour": TokenProbs({"Red": 0.9, "Blue": 0.1}), "red": TokenProbs({"Yes": 0.25, "No": 0.75})}
    with FakeOpenAIServer(rules) as server:
        model = CachedChatModel(model_for(server), CallCache(tmp_path / "calls.sqlite"))
        with collect_calls() as log:
            first = await classify(model, ASK)
            again = await classify(model, ASK)
            colour = await classify(model, [Message.user("Which colour is the dress?")], ("red", "blue"))
        assert first == again and first.p("yes") == pytest.approx(0.25) and len(server.chat_requests) == 2
        assert colour.answer == "red" and colour.p("red") == pytest.approx(0.9)
    hit = log.records[1]
    assert hit.cached and hit.prompt_tokens == log.records[0].prompt_tokens and hit.cost_s > 0
