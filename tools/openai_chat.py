"""ChatModel over any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp's server, Ollama...).

Structured output tries what servers differ on, best first: `json_schema` response_format (OpenAI, vLLM), then
`json_object` with a `schema` (llama.cpp's server), then the schema as instructions; the first mode a server accepts
is remembered per instance. Retries (tenacity, backoff with jitter, Retry-After honoured) cover timeouts, connection
errors, 408/409/429/5xx and invalid output; other 4xx fail at once with the server's answer in the message.
An endpoint that cannot be reached, or gives no answer within the timeout on every attempt, is marked down in the
client's EndpointHealth (cirgraph.tools.health), shared with the other clients of a retriever or eval run: calls to
it then fail at once for a while, so one search waits out the timeouts once, not once per stage.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ValidationError
from tenacity import (AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential,
                      wait_random)

from cirgraph.errors import ConfigError, InputError, ModelError, ModelOutputError
from cirgraph.tools.choices import Choice, choice_from_logprobs, choice_from_text
from cirgraph.tools.health import EndpointDown, EndpointHealth
from cirgraph.tools.image_urls import DataUrls
from cirgraph.tools.messages import Message
from cirgraph.tools.structured import json_schema, parse_json_reply, schema_instructions, validation_summary
from cirgraph.tools.usage import CallRecord, record

if TYPE_CHECKING:
    from openai import AsyncOpenAI

StructuredMode = Literal["auto", "json_schema", "json_object", "instructions"]
_MODES = ("json_schema", "json_object", "instructions")
# Words a server's 400/422 uses when it does not support the response_format we sent (llama.cpp, vLLM, FastAPI).
_FORMAT_WORDS = ("response_format", "json_schema", "json_object", "schema", "guided", "structured", "grammar",
                 "not supported", "unsupported")


TOP_LOGPROBS = 10  # alternatives per reply token that classify reads (vLLM's default cap is 20, OpenAI's 20)


class _FormatRejected(Exception):
    """The server refused the response_format of one structured-output mode."""


def _retry_after(exc: BaseException | None) -> float | None:
    """Seconds the server asked us to wait (retry-after-ms, or Retry-After in seconds), if it said."""
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            return max(0.0, float(headers[name]) * scale)
        except (KeyError, TypeError, ValueError):  # absent, or an HTTP date: use our own backoff
            continue
    return None


def _unreachable(exc: BaseException) -> bool:
    """A refused or dropped connection, or no answer within the timeout (APITimeoutError is a connection error)."""
    import openai

    return isinstance(exc, openai.APIConnectionError)


def _retryable(exc: BaseException) -> bool:
    import openai

    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return isinstance(exc, (ModelOutputError, openai.APIConnectionError))  # connection errors include timeouts


class OpenAIChatModel:
    """Implements cirgraph.tools.protocols.ChatModel for an OpenAI-compatible chat completions endpoint.

    `max_retries` is the number of attempts per call; `retry_wait` the (initial, max) backoff in seconds;
    `max_retry_after` caps a server's Retry-After. `max_concurrency` bounds requests in flight per event loop, and
    sizes that loop's connection pool, so every request in flight keeps its connection alive. `health` is the
    reachability state this client shares with others (one of its own when not given).
    """

    def __init__(
        self, model: str, *, base_url: str | None, api_key: str | None, timeout: float = 60,
        max_retries: int = 4, max_concurrency: int = 8, image_max_side: int = 768,
        structured_mode: StructuredMode = "auto", name: str | None = None, extra_body: dict | None = None,
        retry_wait: tuple[float, float] = (0.5, 8.0), max_retry_after: float = 60.0,
        default_max_tokens: int | None = 1024, health: EndpointHealth | None = None,
    ) -> None:
        if not model or structured_mode not in ("auto", *_MODES) or min(max_retries, max_concurrency) < 1:
            raise ConfigError(f"OpenAIChatModel({model!r}): needs a model name, structured_mode in auto/"
                              f"{'/'.join(_MODES)} (got {structured_mode!r}), max_retries and max_concurrency >= 1")
        self.model = model
        self.name = name or model
        self.base_url = base_url
        # A local server must never receive the user's OpenAI key from the environment: send a placeholder.
        self._api_key = api_key if api_key is not None or base_url is None else "EMPTY"
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.max_concurrency = max_concurrency
        self.image_max_side = image_max_side
        self._data_urls = DataUrls(max_side=image_max_side)
        self.structured_mode = structured_mode
        self.extra_body = dict(extra_body or {})
        self.max_retry_after = max_retry_after
        # A reply cap when the caller sets none: a small model that rambles would otherwise generate up to the
        # server's context limit, holding a one-request-at-a-time server for minutes past our timeout.
        self.default_max_tokens = default_max_tokens
        self._where = base_url or "the OpenAI API"
        self.health = health if health is not None else EndpointHealth()
        self.endpoint = f"{base_url or 'https://api.openai.com/v1'}#{model}"  # the key of its health state
        self._backoff = wait_exponential(multiplier=retry_wait[0], max=retry_wait[1]) + wait_random(0, retry_wait[0])
        self._modes = list(_MODES) if structured_mode == "auto" else [structured_mode]
        self._logprobs = True  # until the server refuses them
        self._lock = threading.Lock()
        # A client and a semaphore per event loop: both are bound to the loop they were first used on.
        self._per_loop: weakref.WeakKeyDictionary[Any, tuple[AsyncOpenAI, asyncio.Semaphore]]
        self._per_loop = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"OpenAIChatModel({self.model!r}, base_url={self.base_url!r}, name={self.name!r})"

    def _loop_state(self) -> tuple[AsyncOpenAI, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._per_loop.get(loop)
            if state is None:
                import httpx2
                from openai import AsyncOpenAI, DefaultAsyncHttpxClient

                size = self.max_concurrency
                pool = DefaultAsyncHttpxClient(timeout=self.timeout, limits=httpx2.Limits(
                    max_connections=size, max_keepalive_connections=size))
                client = AsyncOpenAI(api_key=self._api_key, base_url=self.base_url, timeout=self.timeout,
                                     max_retries=0, http_client=pool)  # we retry ourselves, with tenacity
                state = self._per_loop[loop] = (client, asyncio.Semaphore(size))
            return state

    async def aclose(self) -> None:
        """Close the HTTP client of the running event loop."""
        with self._lock:
            state = self._per_loop.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state[0].close()

    async def complete(
        self, messages: Sequence[Message], *, schema: type[BaseModel] | None = None, temperature: float = 0.0,
        max_tokens: int | None = None,
    ) -> Any:
        """Answer the conversation as text, or as a validated `schema` instance; see the module docstring."""
        if not messages:
            raise InputError("messages", "the conversation is empty")
        tally = CallRecord(self.name, "chat", latency_s=0.0, attempts=0, mode="text" if schema is None else "")

        async def ask(wire: list[dict]) -> Any:
            if schema is None:
                return await self._retrying(wire, None, "text", temperature, max_tokens, tally)
            return await self._structured(wire, schema, temperature, max_tokens, tally)

        return await self._recorded(messages, tally, ask)

    async def classify(self, messages: Sequence[Message], options: Sequence[str]) -> Choice:
        """Answer a closed question with one token; each option's probability comes from that token's
        log-probabilities (cirgraph.tools.choices), or from the sampled text where the server gives none."""
        if not messages or len(options) < 2:
            raise InputError("classify", "needs messages and at least two options")
        tally = CallRecord(self.name, "chat", latency_s=0.0, attempts=0, mode="logprobs")

        async def ask(wire: list[dict]) -> Choice:
            return await self._retrying(wire, None, "text", 0.0, 1, tally, options=tuple(options))

        return await self._recorded(messages, tally, ask)

    async def _recorded(self, messages: Sequence[Message], tally: CallRecord, ask: Any) -> Any:
        """`ask(wire messages)`, timed and recorded in `tally` whether it succeeds or not."""
        started = time.perf_counter()
        try:
            return await ask(await self._to_wire(messages))
        except BaseException as exc:  # cancellation included: the record says the call did not finish
            tally.ok, tally.error = False, str(exc) or type(exc).__name__
            raise
        finally:
            tally.latency_s = time.perf_counter() - started
            record(tally)

    async def _to_wire(self, messages: Sequence[Message]) -> list[dict]:
        """Our messages in the chat completions format; images become downscaled base64 data URLs (each image
        encoded once: a query sends its reference with every rerank check)."""
        def part(p: Any) -> dict:
            if isinstance(p, str):
                return {"type": "text", "text": p}
            return {"type": "image_url", "image_url": {"url": self._data_urls(p)}}

        def convert() -> list[dict]:
            return [{"role": m.role, "content": [part(p) for p in m.parts] if m.images else m.text} for m in messages]

        # JPEG encoding is CPU work: keep it off the event loop, unless every image is encoded already.
        fresh = any(self._data_urls.cached(img) is None for m in messages for img in m.images)
        return await asyncio.to_thread(convert) if fresh else convert()

    async def _structured(
        self, wire: list[dict], schema: type[BaseModel], temperature: float, max_tokens: int | None, tally: CallRecord,
    ) -> BaseModel:
        """Try the remembered modes in order; a mode the server rejects is dropped for later calls."""
        with self._lock:
            modes = list(self._modes)
        rejected: list[str] = []
        for mode in modes:
            tally.mode = mode
            try:
                return await self._retrying(wire, schema, mode, temperature, max_tokens, tally)
            except _FormatRejected as exc:
                rejected.append(f"{mode}: {exc}")
                with self._lock:
                    if self.structured_mode == "auto" and mode in self._modes and len(self._modes) > 1:
                        self._modes.remove(mode)
        raise ModelError(self.name, f"{self._where} rejected structured output ({'; '.join(rejected)})")

    def _wait(self, state: RetryCallState) -> float:
        asked = _retry_after(state.outcome.exception() if state.outcome else None)
        return min(asked, self.max_retry_after) if asked is not None else self._backoff(state)

    async def _retrying(
        self, wire: list[dict], schema: type[BaseModel] | None, mode: str, temperature: float,
        max_tokens: int | None, tally: CallRecord, options: tuple[str, ...] = (),
    ) -> Any:
        """One request with retries; the last failure becomes a ModelError naming the server's answer."""
        request = self._request_args(wire, schema, mode, temperature, max_tokens)
        if options and self._logprobs:
            request |= {"logprobs": True, "top_logprobs": TOP_LOGPROBS}
        feedback: list[dict] = []  # after invalid output: the bad reply and what was wrong with it
        retrying = AsyncRetrying(stop=stop_after_attempt(self.max_retries), wait=self._wait,
                                 retry=retry_if_exception(_retryable), reraise=True)
        try:
            async for attempt in retrying:
                with attempt:
                    self.health.check(self.endpoint, self.name)  # a sibling call may have found it down meanwhile
                    tally.attempts += 1
                    try:
                        result = await self._attempt(request, feedback, schema, tally, options)
                    except Exception as exc:
                        if _unreachable(exc):
                            self.health.attempt_failed(self.endpoint, self._reason(exc), limit=self.max_retries)
                        raise
        except (_FormatRejected, EndpointDown):
            raise
        except Exception as exc:
            error = self._final_error(exc, tally.attempts)
            if _unreachable(exc):  # a call that gave up on the endpoint: it is down, whatever others saw
                self.health.failed(self.endpoint, self._reason(exc))
            raise error from exc
        self.health.succeeded(self.endpoint)
        return result

    async def probe(self) -> None:
        """One cheap request (a one-token reply, no retries, whatever the health state says); ModelError when the
        endpoint cannot be reached or does not answer within the timeout. Any HTTP answer means it is up."""
        import openai

        client, _ = self._loop_state()
        body = {"model": self.model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1,
                **self.extra_body}
        try:
            await client.post("/chat/completions", body=body, cast_to=object)
        except openai.APIStatusError:
            return
        except Exception as exc:
            raise self._final_error(exc, 1) from exc

    def _request_args(
        self, wire: list[dict], schema: type[BaseModel] | None, mode: str, temperature: float, max_tokens: int | None,
    ) -> dict[str, Any]:
        messages = list(wire)
        if schema is not None and mode in ("json_object", "instructions"):
            # One leading system message: several chat templates refuse a second one.
            text = schema_instructions(schema)
            if messages and messages[0]["role"] == "system" and isinstance(messages[0]["content"], str):
                text = f"{messages.pop(0)['content']}\n\n{text}"
            messages.insert(0, {"role": "system", "content": text})
        args: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": temperature,
                                **({"max_tokens": cap} if (cap := max_tokens or self.default_max_tokens) else {})}
        if schema is not None and mode == "json_schema":
            name = re.sub(r"[^a-zA-Z0-9_-]", "_", schema.__name__)[:64]
            args["response_format"] = {"type": "json_schema", "json_schema": {
                "name": name, "schema": json_schema(schema), "strict": False}}
        elif schema is not None and mode == "json_object":  # llama.cpp's form: the schema beside the type
            args["response_format"] = {"type": "json_object", "schema": json_schema(schema)}
        return {**args, **self.extra_body}

    async def _attempt(
        self, request: dict[str, Any], feedback: list[dict], schema: type[BaseModel] | None, tally: CallRecord,
        options: tuple[str, ...] = (),
    ) -> Any:
        import openai

        client, semaphore = self._loop_state()
        body = {**request, "messages": request["messages"] + feedback}
        async with semaphore:
            self.health.check(self.endpoint, self.name)  # it may have been found down while this call queued
            try:
                # The body is already wire JSON: a plain POST skips the SDK's recursive transform of the request
                # and its model of the reply, which cost more CPU than the rest of the call (see bench_pipeline).
                data = await client.post("/chat/completions", body=body, cast_to=object)
            except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
                if "logprobs" in body and "logprob" in exc.response.text.lower():
                    # a server without log-probabilities: ask for the sampled answer, now and from now on
                    self._logprobs = False
                    del request["logprobs"], request["top_logprobs"]
                    raise ModelOutputError(self.name, "the server does not return log-probabilities") from exc
                if "response_format" in body and any(w in exc.response.text.lower() for w in _FORMAT_WORDS):
                    raise _FormatRejected(f"HTTP {exc.status_code}: {exc.response.text[:300]}") from exc
                raise
            except openai.InternalServerError as exc:
                # llama-cpp-python's server answers an unsupported response_format with a 500 wrapping its request
                # validation error; retrying the same body cannot help, the next mode can.
                text = exc.response.text.lower()
                if "response_format" in body and "response_format" in text and "validation error" in text:
                    raise _FormatRejected(f"HTTP {exc.status_code}: {exc.response.text[:300]}") from exc
                raise
            except ValueError as exc:  # the body was not JSON (the SDK lets json errors through)
                raise ModelOutputError(self.name, f"the response body is not valid JSON ({exc})") from exc
        if options:
            return self._choice(data, options, tally)
        content, finish_reason = self._reply(data, tally)
        if schema is None:
            return content
        try:
            return parse_json_reply(content, schema)
        except ValidationError as exc:
            reason = f"not a valid {schema.__name__}: {validation_summary(exc)}"
            if finish_reason == "length":
                reason += " (cut off: finish_reason='length', raise max_tokens)"
            feedback[:] = [{"role": "assistant", "content": content[:4000]}, {"role": "user", "content": (
                f"That reply was invalid ({reason}). Answer again with only a JSON object that fits the schema.")}]
            raise ModelOutputError(self.name, reason, content) from None

    def _choice(self, data: Any, options: tuple[str, ...], tally: CallRecord) -> Choice:
        """The option probabilities of a one-token reply: from its top log-probabilities when the server sent
        them and they name an option, else from the sampled text."""
        content, _ = self._reply(data, tally, allow_empty=True)
        choice = data["choices"][0]
        logprobs = choice.get("logprobs") if isinstance(choice.get("logprobs"), Mapping) else {}
        first = (logprobs.get("content") or [None])[0]
        if isinstance(first, Mapping):
            top = first.get("top_logprobs") or [first]
            found = choice_from_logprobs(top if isinstance(top, list) else [first], options)
            if found is not None:
                return found
        if not content.strip():
            raise ModelOutputError(self.name, f"the reply is empty (finish_reason={choice.get('finish_reason')!r})")
        tally.mode = "text"
        return choice_from_text(content, options, model=self.name)

    def _reply(self, data: Any, tally: CallRecord, allow_empty: bool = False) -> tuple[str, str | None]:
        """The first choice's text and finish_reason from a completion body; token usage goes into `tally`."""
        if not isinstance(data, Mapping):  # the SDK hands over the text of a body that is not labelled JSON
            raise ModelOutputError(self.name, f"the response body is not a JSON object: {str(data)[:200]!r}")
        usage = data.get("usage") if isinstance(data.get("usage"), Mapping) else {}  # absent on some servers
        tally.prompt_tokens += usage.get("prompt_tokens") or 0
        tally.completion_tokens += usage.get("completion_tokens") or 0
        choices = data.get("choices")
        if not choices or not isinstance(choices, list) or not isinstance(choices[0], Mapping):
            raise ModelOutputError(self.name, "the response has no choices")
        choice = choices[0]
        content = (choice.get("message") or {}).get("content")
        if allow_empty and isinstance(content, str):
            return content, choice.get("finish_reason")
        if not isinstance(content, str) or not content.strip():
            raise ModelOutputError(self.name, f"the reply is empty (finish_reason={choice.get('finish_reason')!r})",
                                   content if isinstance(content, str) else None)
        return content, choice.get("finish_reason")

    def _final_error(self, exc: BaseException, attempts: int) -> ModelError:
        tries = f"after {attempts} attempt{'s' if attempts != 1 else ''}"
        if isinstance(exc, ModelOutputError):
            shown = f"; the reply began {exc.raw[:300]!r}" if exc.raw else ""
            return ModelOutputError(self.name, f"invalid output {tries}: {exc.reason}{shown}", raw=exc.raw)
        return ModelError(self.name, f"{self._reason(exc)} ({tries})")

    def _reason(self, exc: BaseException) -> str:
        """What went wrong with one request, naming the endpoint."""
        import openai

        if isinstance(exc, openai.APITimeoutError):
            return f"no answer from {self._where} within {self.timeout:g} s"
        if isinstance(exc, openai.APIConnectionError):
            return f"cannot reach {self._where}: {exc.__cause__ or exc}"
        if isinstance(exc, openai.APIStatusError):
            return f"HTTP {exc.status_code} from {self._where}: {exc.response.text[:500]}"
        return f"request to {self._where} failed: {type(exc).__name__}: {exc}"

