"""ChatModel on an in-process transformers model: a text LLM, or a vision LLM (image-text-to-text) for image parts.

The model family is read from the config. Generation runs in a worker thread, one at a time per model. Structured
output is asked for with the JSON schema in the system prompt; the first JSON object of the reply is validated with
pydantic, and a failed attempt is retried (greedy first, then sampling, with the error fed back) before
ModelOutputError. torch and transformers load only when a model is built.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from cirgraph.errors import InputError, ModelError, ModelOutputError
from cirgraph.tools.hf_loading import load_config, load_pretrained, resolve_model, torch_dtype
from cirgraph.tools.images import downscale
from cirgraph.tools.messages import Message
from cirgraph.tools.structured import extract_json_object, parse_json_reply, schema_instructions
from cirgraph.tools.usage import CallRecord, record

T = TypeVar("T", bound=BaseModel)

RETRY_TEMPERATURE = 0.7  # retries sample, so a deterministic bad answer is not repeated


def is_vision_language(config: Any) -> bool:
    """True when the config is an image-text-to-text model with a vision tower (LLaVA, Idefics3/SmolVLM, Qwen-VL)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES and \
        getattr(config, "vision_config", None) is not None


def parse_structured(text: str, schema: type[T]) -> T:
    """A reply validated by tools.structured.parse_json_reply; a ValueError that says what is wrong otherwise (the
    retry prompt shows it to the model)."""
    try:
        return parse_json_reply(text, schema)
    except ValidationError as exc:
        extract_json_object(text)  # ValueError when the reply holds no JSON object at all
        raise ValueError(f"the JSON object does not match {schema.__name__}: {exc}") from None


def with_schema_instructions(messages: list[Message], schema: type[BaseModel]) -> list[Message]:
    """Add the schema instructions (tools.structured, as every chat client words them) to the system message (or put
    a system message first)."""
    note = schema_instructions(schema)
    if messages and messages[0].role == "system":
        return [Message.system(f"{messages[0].text}\n\n{note}"), *messages[1:]]
    return [Message.system(note), *messages]


def _fold_system(chat: list[dict]) -> list[dict]:
    """The system turn prepended to the first user turn, for templates without a system role (e.g. Gemma)."""
    system, first, rest = chat[0]["content"], chat[1], chat[2:]
    if isinstance(first["content"], str):
        return [{"role": first["role"], "content": f"{system}\n\n{first['content']}"}, *rest]
    return [{"role": first["role"], "content": [*system, *first["content"]]}, *rest]


class TransformersChatModel:
    """ChatModel on a local transformers checkpoint (hub id or folder), text-only or vision-language."""

    def __init__(self, model: str, *, device: str = "cpu", offline: bool = False, max_new_tokens: int = 512,
                 image_max_side: int = 768, structured_attempts: int = 3, dtype: Any = None) -> None:
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        if max_new_tokens < 1 or structured_attempts < 1 or image_max_side < 1:
            raise InputError("TransformersChatModel", "max_new_tokens, structured_attempts and image_max_side "
                                                      "must be positive")
        self.name = model
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.image_max_side = image_max_side
        self.structured_attempts = structured_attempts
        self._lock = threading.Lock()  # one generate at a time, whichever event loop or thread calls
        source = resolve_model(model, offline=offline)
        config = load_config(source)
        extra = {"dtype": torch_dtype(dtype)} if dtype is not None else {}
        self.sees_images = is_vision_language(config)
        if self.sees_images:
            self._processor = load_pretrained(source, AutoProcessor.from_pretrained, what="processor")
            self._tokenizer = self._processor.tokenizer
            loader = AutoModelForImageTextToText.from_pretrained
        elif config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            self._processor = None
            self._tokenizer = load_pretrained(source, AutoTokenizer.from_pretrained, what="tokenizer")
            loader = AutoModelForCausalLM.from_pretrained
        else:
            raise InputError(model, f"model_type {config.model_type!r} is neither a causal LM nor an "
                                    "image-text-to-text model")
        if not getattr(self._processor or self._tokenizer, "chat_template", None):
            raise ModelError(model, "has no chat template (use an instruction-tuned checkpoint)")
        self._model = load_pretrained(source, loader, what="weights", **extra).to(device).eval()

    # -- the ChatModel protocol ---------------------------------------------------------------------------------

    async def complete(self, messages: Sequence[Message], *, schema: type[T] | None = None,
                       temperature: float = 0.0, max_tokens: int | None = None) -> str | T:
        """Answer the conversation: plain text, or an instance of `schema` (see the module docstring)."""
        if temperature < 0:
            raise InputError("temperature", f"must be >= 0, got {temperature}")
        budget = max_tokens or self.max_new_tokens
        conversation = list(messages)
        if not conversation:
            raise InputError("messages", "the conversation is empty")
        self._check_images(conversation)
        started = time.perf_counter()
        usage = {"prompt": 0, "completion": 0, "attempts": 0}
        try:
            if schema is None:
                result: Any = await self._generate(conversation, temperature, budget, usage)
            else:
                result = await self._complete_structured(conversation, schema, temperature, budget, usage)
        except ModelError as exc:
            self._record(started, usage, schema, error=str(exc))
            raise
        self._record(started, usage, schema)
        return result

    async def _complete_structured(self, messages: list[Message], schema: type[T], temperature: float,
                                   budget: int, usage: dict) -> T:
        base = with_schema_instructions(messages, schema)
        conversation, raw, problem = base, "", ""
        for attempt in range(self.structured_attempts):
            temp = temperature if attempt == 0 else max(temperature, RETRY_TEMPERATURE)
            raw = await self._generate(conversation, temp, budget, usage)
            try:
                return parse_structured(raw, schema)
            except ValueError as exc:
                problem = str(exc)
            # Show the model its reply and what was wrong with it; the next attempt also samples.
            conversation = [*base, Message.assistant(raw[:2000]),
                            Message.user(f"That reply was not valid: {problem[:500]}. Reply again with only the "
                                         "JSON object.")]
        raise ModelOutputError(self.name, f"no valid {schema.__name__} after {self.structured_attempts} "
                                          f"attempts: {problem[:300]}", raw=raw)

    def _record(self, started: float, usage: dict, schema: type | None, error: str | None = None) -> None:
        record(CallRecord(
            model=self.name, kind="chat", latency_s=time.perf_counter() - started,
            prompt_tokens=usage["prompt"], completion_tokens=usage["completion"], attempts=max(usage["attempts"], 1),
            mode="text" if schema is None else "instructions", ok=error is None, error=error,
        ))

    # -- generation --------------------------------------------------------------------------------------------

    def _check_images(self, messages: list[Message]) -> None:
        if self.sees_images:
            return
        for i, message in enumerate(messages):
            if message.images:
                raise InputError(f"model {self.name!r}", f"is a text-only model and cannot see images (message "
                                 f"{i} holds {len(message.images)}); use a vision-language (image-text-to-text) "
                                 "model for messages with images")

    async def _generate(self, messages: list[Message], temperature: float, budget: int, usage: dict) -> str:
        text, prompt_tokens, completion_tokens = await asyncio.to_thread(
            self._generate_sync, messages, temperature, budget
        )
        usage["prompt"] += prompt_tokens
        usage["completion"] += completion_tokens
        usage["attempts"] += 1
        return text

    def _chat(self, messages: list[Message]) -> tuple[list[dict], list]:
        """Messages in the chat-template layout, and the (downscaled) images in the order they appear."""
        chat, images = [], []
        for message in messages:
            if not self.sees_images:
                chat.append({"role": message.role, "content": message.text})
                continue
            content = []
            for part in message.parts:
                if isinstance(part, str):
                    content.append({"type": "text", "text": part})
                else:
                    content.append({"type": "image"})
                    images.append(downscale(part, self.image_max_side))
            chat.append({"role": message.role, "content": content})
        return chat, images

    def _render(self, chat: list[dict]) -> str:
        """The prompt text; templates that refuse a system role get it folded into the first user turn."""
        from jinja2 import TemplateError

        owner = self._processor or self._tokenizer
        try:
            try:
                return owner.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
            except TemplateError:
                if len(chat) < 2 or chat[0]["role"] != "system":
                    raise
                return owner.apply_chat_template(_fold_system(chat), tokenize=False, add_generation_prompt=True)
        except TemplateError as exc:
            raise ModelError(self.name, f"its chat template rejected the conversation: {exc}") from None

    def _encode(self, messages: list[Message]) -> dict:
        chat, images = self._chat(messages)
        prompt = self._render(chat)
        if self._processor is not None:
            enc = self._processor(text=prompt, images=images or None, return_tensors="pt")
        else:
            # The template already holds the special tokens (BOS and the like): add none twice.
            enc = self._tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
        dtype = self._model.dtype
        return {k: v.to(self.device, dtype=dtype) if v.is_floating_point() else v.to(self.device)
                for k, v in enc.items()}

    def _generate_sync(self, messages: list[Message], temperature: float, budget: int) -> tuple[str, int, int]:
        """One generate call: (reply text, prompt tokens, completion tokens)."""
        import torch

        inputs = self._encode(messages)
        options: dict[str, Any] = {"max_new_tokens": budget, "do_sample": temperature > 0}
        if temperature > 0:
            options["temperature"] = temperature
        else:  # greedy: drop the checkpoint's sampling defaults so they neither apply nor warn
            options.update(temperature=None, top_p=None, top_k=None)
        if self._tokenizer.pad_token_id is not None:
            options["pad_token_id"] = self._tokenizer.pad_token_id
        prompt_len = int(inputs["input_ids"].shape[1])
        try:
            with self._lock, torch.inference_mode():
                output = self._model.generate(**inputs, **options)
        except (RuntimeError, ValueError, IndexError) as exc:
            raise ModelError(self.name, f"generation failed: {str(exc).splitlines()[0][:300]}") from exc
        new_tokens = output[0, prompt_len:]
        text = self._tokenizer.decode(new_tokens, skip_special_tokens=True)
        return text.strip(), prompt_len, int(new_tokens.shape[0])
