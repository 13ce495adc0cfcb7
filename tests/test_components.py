"""Settings -> live components: the vision model loads only when a stage calls it."""

from __future__ import annotations

import asyncio

import pytest

from cirgraph.components import LazyChatModel
from cirgraph.errors import ModelNotFoundError
from cirgraph.testing.fake_chat import ScriptedChatModel
from cirgraph.tools.messages import Message


def test_lazy_model_builds_once_on_first_call() -> None:
    built: list[ScriptedChatModel] = []

    def build() -> ScriptedChatModel:
        built.append(ScriptedChatModel(default="a red dress", name="vlm-x"))
        return built[-1]

    model = LazyChatModel(build, "vlm-x")
    assert built == [] and model.name == "vlm-x"

    async def twice() -> list[str]:
        return list(await asyncio.gather(*(model.complete([Message.user("Describe")]) for _ in range(4))))

    assert asyncio.run(twice()) == ["a red dress"] * 4
    assert len(built) == 1 and built[0].calls == 4


def test_lazy_model_load_failure_surfaces_at_the_call() -> None:
    def build() -> ScriptedChatModel:
        raise ModelNotFoundError("HuggingFaceTB/SmolVLM-256M-Instruct", "offline and not in the local cache")

    model = LazyChatModel(build, None)
    assert model.name == "vision-model"
    with pytest.raises(ModelNotFoundError, match="SmolVLM"):
        asyncio.run(model.complete([Message.user("Describe")]))
