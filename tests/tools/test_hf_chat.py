"""The in-process transformers chat model, on tiny random-weight LLM and VLM checkpoints saved to folders."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import BaseModel, Field

from cirgraph.errors import InputError, ModelError, ModelNotFoundError, ModelOutputError
from cirgraph.testing.tiny_models import (block_network, build_tiny_clip, build_tiny_llm, build_tiny_text_encoder,
                                          build_tiny_vlm)
from cirgraph.tools.hf_chat import (TransformersChatModel, parse_structured,
                                    with_schema_instructions)
from cirgraph.tools.messages import Message
from cirgraph.tools.protocols import ChatModel
from cirgraph.tools.usage import collect_calls


class Verdict(BaseModel):
    match: bool = Field(description="Whether the candidate matches.")
    reason: str = Field(description="One sentence.")


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-chat")
    return {"llm": build_tiny_llm(root / "llm"), "vlm": build_tiny_vlm(root / "vlm"),
            "bert": build_tiny_text_encoder(root / "bert")}


@pytest.fixture(scope="module")
def llm(tiny_dirs: dict[str, Path]) -> TransformersChatModel:
    return TransformersChatModel(str(tiny_dirs["llm"]), max_new_tokens=6, structured_attempts=2)


@pytest.fixture(scope="module")
def vlm(tiny_dirs: dict[str, Path]) -> TransformersChatModel:
    return TransformersChatModel(str(tiny_dirs["vlm"]), max_new_tokens=4)


@pytest.fixture
def image() -> Image.Image:
    return Image.fromarray(np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8))


def scripted_generate(monkeypatch: pytest.MonkeyPatch, chat: TransformersChatModel, replies: list[str]) -> list[dict]:
    """Make the model 'generate' the given replies, as token ids appended to the prompt; returns the call options."""
    import torch

    calls: list[dict] = []

    def generate(**kwargs):
        calls.append(kwargs)
        reply = chat._tokenizer(replies[min(len(calls), len(replies)) - 1], add_special_tokens=False,
                                return_tensors="pt")["input_ids"]
        return torch.cat([kwargs["input_ids"], reply], dim=1)

    monkeypatch.setattr(chat._model, "generate", generate)
    return calls


# -- text generation ---------------------------------------------------------------------------------------------


async def test_the_tiny_llm_generates_text_and_records_usage(llm: TransformersChatModel) -> None:
    assert isinstance(llm, ChatModel) and not llm.sees_images
    with collect_calls() as log:
        first = await llm.complete([Message.system("Be brief."), Message.user("Describe a red dress.")])
        again = await llm.complete([Message.system("Be brief."), Message.user("Describe a red dress.")])
        short = await llm.complete([Message.user("hi")], max_tokens=2)
    assert isinstance(first, str) and first == again  # greedy decoding is deterministic
    a, _, c = log.records
    assert a.kind == "chat" and a.model == llm.name and a.mode == "text" and a.ok and a.attempts == 1
    assert a.prompt_tokens > 20 and 1 <= a.completion_tokens <= 6 and 1 <= c.completion_tokens <= 2
    assert isinstance(short, str)


async def test_sampling_runs_with_a_temperature(llm: TransformersChatModel) -> None:
    assert isinstance(await llm.complete([Message.user("hi")], temperature=0.9), str)
    with pytest.raises(InputError, match="temperature"):
        await llm.complete([Message.user("hi")], temperature=-1)


async def test_generation_runs_one_at_a_time(llm: TransformersChatModel, monkeypatch: pytest.MonkeyPatch) -> None:
    original, active, peak = llm._model.generate, [0], [0]
    guard = threading.Lock()

    def generate(**kwargs):
        with guard:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            return original(**kwargs)
        finally:
            with guard:
                active[0] -= 1

    monkeypatch.setattr(llm._model, "generate", generate)
    replies = await asyncio.gather(*(llm.complete([Message.user(f"q{i}")]) for i in range(4)))
    assert len(replies) == 4 and peak[0] == 1


async def test_an_image_sent_to_a_text_model_is_refused(llm: TransformersChatModel, image: Image.Image,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = scripted_generate(monkeypatch, llm, ["never"])
    with pytest.raises(InputError, match="text-only model and cannot see images") as info:
        await llm.complete([Message.user("What is this?", image)])
    assert llm.name in str(info.value) and calls == []


# -- structured output -------------------------------------------------------------------------------------------


async def test_random_weights_give_model_output_error_after_the_attempts(llm: TransformersChatModel) -> None:
    with collect_calls() as log, pytest.raises(ModelOutputError, match="after 2 attempts") as info:
        await llm.complete([Message.user("Does it match?")], schema=Verdict)
    assert isinstance(info.value.raw, str) and info.value.model == llm.name
    (rec,) = log.records
    assert rec.attempts == 2 and not rec.ok and rec.mode == "instructions" and rec.completion_tokens <= 12


async def test_a_valid_reply_is_parsed_and_validated(llm: TransformersChatModel,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    calls = scripted_generate(monkeypatch, llm, ['Sure:\n```json\n{"match": true, "reason": "same red"}\n```'])
    with collect_calls() as log:
        verdict = await llm.complete([Message.user("Does it match?")], schema=Verdict)
    assert verdict == Verdict(match=True, reason="same red")
    assert log.records[0].attempts == 1 and log.records[0].ok and calls[0]["do_sample"] is False


async def test_an_invalid_reply_is_retried_with_sampling_and_feedback(llm: TransformersChatModel,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    calls = scripted_generate(monkeypatch, llm, ['{"match": "perhaps"}', '{"match": false, "reason": "blue"}'])
    with collect_calls() as log:
        verdict = await llm.complete([Message.system("You judge."), Message.user("Does it match?")], schema=Verdict)
    assert verdict == Verdict(match=False, reason="blue")
    assert [c["do_sample"] for c in calls] == [False, True] and log.records[0].attempts == 2
    retry_prompt = llm._tokenizer.decode(calls[1]["input_ids"][0])
    assert "That reply was not valid" in retry_prompt and '{"match": "perhaps"}' in retry_prompt
    assert '"reason"' in retry_prompt and retry_prompt.count("You judge.") == 1  # schema in the one system turn


def test_schema_instructions_join_the_system_message() -> None:
    merged = with_schema_instructions([Message.system("Judge."), Message.user("x")], Verdict)
    assert len(merged) == 2 and merged[0].text.startswith("Judge.") and '"match"' in merged[0].text
    added = with_schema_instructions([Message.user("x")], Verdict)
    assert added[0].role == "system" and added[1] == Message.user("x")


def test_replies_without_a_valid_object_are_value_errors() -> None:
    with pytest.raises(ValueError, match="no JSON object"):
        parse_structured("[1, 2] and no object", Verdict)
    with pytest.raises(ValueError, match="does not match Verdict"):
        parse_structured('{"match": true}', Verdict)


# -- vision-language models --------------------------------------------------------------------------------------


async def test_the_tiny_vlm_sees_images(vlm: TransformersChatModel, image: Image.Image) -> None:
    assert vlm.sees_images
    with collect_calls() as log:
        replies = [await vlm.complete([Message.user(*parts)]) for parts in
                   (("What is this?",), (image, "What is this?"), (image, "What is this?", image))]
    assert all(isinstance(r, str) for r in replies)
    plain, one, two = (r.prompt_tokens for r in log.records)
    # Each image becomes (32 / 8) ** 2 = 16 placeholder tokens, fed with its pixels to the vision tower.
    assert one - plain == 16 and two - one == 16


async def test_a_vlm_takes_a_system_turn_and_a_large_image(vlm: TransformersChatModel) -> None:
    big = Image.new("RGB", (2000, 1000), (200, 10, 10))
    assert isinstance(await vlm.complete([Message.system("Look closely."), Message.user(big, "colour?")]), str)


# -- loading -----------------------------------------------------------------------------------------------------


def test_a_local_folder_loads_without_network(tiny_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with block_network() as attempts:
        TransformersChatModel(str(tiny_dirs["llm"]))
        TransformersChatModel(str(tiny_dirs["vlm"]))
    assert attempts == []


def test_missing_models_raise_model_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no such folder"):
        TransformersChatModel(str(tmp_path / "absent"))
    with block_network(), pytest.raises(ModelNotFoundError) as info:
        TransformersChatModel("nobody-here/no-such-llm", offline=True)
    assert info.value.model == "nobody-here/no-such-llm"


def test_a_model_that_cannot_chat_is_refused(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(InputError, match="neither a causal LM nor an image-text-to-text model"):
        TransformersChatModel(str(build_tiny_clip(tmp_path / "clip")))
    with pytest.raises(ModelError, match="no chat template"):
        TransformersChatModel(str(tiny_dirs["bert"]))  # BERT has an LM head, but no chat template


NO_SYSTEM_TEMPLATE = (
    "{%- for m in messages -%}{%- if m['role'] == 'system' -%}{{ raise_exception('System role not supported') }}"
    "{%- endif -%}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{%- endfor -%}"
    "{{ '<|im_start|>assistant\n' }}"
)


async def test_a_template_without_system_role_gets_it_in_the_first_user_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = build_tiny_llm(tmp_path / "no-system")
    (folder / "chat_template.jinja").write_text(NO_SYSTEM_TEMPLATE)
    chat = TransformersChatModel(str(folder), max_new_tokens=2)
    calls = scripted_generate(monkeypatch, chat, ["ok"])
    assert await chat.complete([Message.system("Be terse."), Message.user("Hello")]) == "ok"
    assert "user\nBe terse.\n\nHello" in chat._tokenizer.decode(calls[0]["input_ids"][0])
    (folder / "chat_template.jinja").write_text("{{ raise_exception('no chat here') }}")
    with pytest.raises(ModelError, match="chat template rejected the conversation: no chat here"):
        await TransformersChatModel(str(folder)).complete([Message.user("Hello")])


async def test_an_empty_conversation_is_an_input_error(llm: TransformersChatModel) -> None:
    with pytest.raises(InputError, match="messages: the conversation is empty"):
        await llm.complete([])
