"""A fake OpenAI-compatible chat server on 127.0.0.1, for tests and benchmarks that need real HTTP.

    with FakeOpenAIServer({"Describe": "a red dress", "recompose": {"descriptions": ["a blue dress"]}}) as server:
        model = OpenAIChatModel("fake-model", base_url=server.base_url, api_key="k")
        server.inject(Fault(status=503), times=2)      # the next two requests fail
        ...
        assert server.requests[-1].body["model"] == "fake-model"

    server.stop(); ...; server.start()                    # refused meanwhile; back on the same port

Replies are chosen like ScriptedChatModel's: the first rule whose key occurs in the request's text (every message's
text joined, schema instructions included) wins, else `default`. A reply is a string, a dict or list (sent as JSON
text), TokenProbs (a one-token answer with its log-probabilities, sent when the request asks for `logprobs` and the
server gives them), a Fault (served every time the rule matches), or a callable taking the request body and
returning one of those. Queued faults (`inject`) take precedence over rules, one per request.
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from PIL.Image import Image

FaultKind = Literal["status", "delay", "invalid_json", "content", "empty_choices", "null_content", "truncated", "drop"]


@dataclass(frozen=True)
class Fault:
    """One misbehaviour of the server.

    status: reply with `status` (and `body`, and a Retry-After header when `retry_after` is set).
    delay: wait `delay_s` (e.g. longer than the client's timeout) and then answer normally.
    invalid_json: a 200 whose body is not JSON. content: a 200 whose message content is `content` verbatim (for
    instance text that does not fit the schema). empty_choices / null_content: a 200 with no usable answer.
    truncated: the scripted reply cut in half, with finish_reason "length" (max_tokens reached mid-JSON).
    drop: the connection is closed without an answer (a server that crashed mid-request).
    """

    kind: FaultKind = "status"
    status: int = 500
    body: str | None = None
    retry_after: str | None = None
    delay_s: float = 0.0
    content: str = "this is not JSON"

    @classmethod
    def rate_limited(cls, retry_after: float | str | None = None) -> Fault:
        return cls("status", 429, retry_after=None if retry_after is None else str(retry_after))

    @classmethod
    def hanging(cls, seconds: float = 3600.0) -> Fault:
        """No answer for `seconds` (stopping the server cuts the wait short)."""
        return cls("delay", delay_s=seconds)


@dataclass(frozen=True)
class TokenProbs:
    """A one-token reply and the probabilities of the tokens the model weighed for it (say {"Yes": 0.7, "No":
    0.2, "The": 0.1}); the most probable is the sampled token."""

    probabilities: dict[str, float]

    @property
    def token(self) -> str:
        return max(self.probabilities, key=self.probabilities.__getitem__)

    def logprobs(self) -> dict:
        """The OpenAI protocol's `logprobs` of the reply's one token."""
        import math

        top = [{"token": t, "logprob": math.log(p), "bytes": list(t.encode())}
               for t, p in sorted(self.probabilities.items(), key=lambda kv: -kv[1]) if p > 0]
        return {"content": [{**top[0], "top_logprobs": top}]}


Reply = str | dict | list | TokenProbs | Fault | Callable[[dict], Any]


@dataclass
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The text of every message, joined by blank lines (what rules are matched against)."""
        return "\n\n".join(_message_text(m) for m in self.body.get("messages", []))

    @property
    def image_urls(self) -> list[str]:
        return [p["image_url"]["url"] if isinstance(p.get("image_url"), dict) else p["image_url"]
                for m in self.body.get("messages", []) if isinstance(m.get("content"), list)
                for p in m["content"] if p.get("type") == "image_url"]

    def images(self) -> list[Image]:
        """The images of the request, decoded from their data URLs."""
        from PIL import Image as PILImage

        return [PILImage.open(io.BytesIO(base64.b64decode(u.split(",", 1)[1]))) for u in self.image_urls]

    @property
    def response_format(self) -> str | None:
        fmt = self.body.get("response_format")
        return fmt.get("type") if isinstance(fmt, dict) else None


def _message_text(message: dict) -> str:
    content = message.get("content") or ""
    if isinstance(content, str):
        return content
    return "\n\n".join(p.get("text", "") for p in content if p.get("type") == "text")


def echo_recompose(body: dict) -> dict:
    """A recompose reply (a rule's reply function) whose one description is the request's modification, lower-cased:
    the recompose templates quote the caption, then the modification, each on a line of its own."""
    text = "\n".join(m["content"] for m in body["messages"] if isinstance(m["content"], str))
    return {"edits": [], "descriptions": [re.findall(r'^"(.*)"$', text, re.M)[1].lower()]}


class _Server(ThreadingHTTPServer):
    # A burst of parallel requests opens as many connections at once. The stdlib's listen backlog of 5 drops the
    # SYNs beyond it, and a client resends those only after a second: real servers listen with thousands.
    request_queue_size, daemon_threads, block_on_close = 4096, True, False


class FakeOpenAIServer:
    """Serves POST /v1/chat/completions and GET /v1/models from a background thread; see the module docstring.

    reject_json_schema / reject_json_object answer 400 to that response_format type (llama.cpp's server rejects
    json_schema). api_key, when set, is required as a Bearer token (401 otherwise); models, when set, lists the
    only model names served (404 otherwise). delay_s slows every reply (benchmarks). logprobs: "yes" sends
    log-probabilities when asked, "omit" ignores the request for them (some servers), "reject" answers 400.
    """

    def __init__(
        self, rules: Mapping[str, Reply] | Sequence[tuple[str, Reply]] = (), *, default: Reply = "ok",
        delay_s: float = 0.0, reject_json_schema: bool = False, reject_json_object: bool = False,
        reject_status: int = 400,
        api_key: str | None = None, models: Sequence[str] | None = None, include_usage: bool = True,
        logprobs: Literal["yes", "omit", "reject"] = "yes",
    ) -> None:
        self.logprobs = logprobs
        self.rules: list[tuple[str, Reply]] = list(rules.items() if isinstance(rules, Mapping) else rules)
        self.default, self.delay_s = default, delay_s
        self.reject_json_schema, self.reject_json_object = reject_json_schema, reject_json_object
        self.reject_status = reject_status
        self.api_key, self.include_usage = api_key, include_usage
        self.models = list(models) if models is not None else None
        self.requests: list[RecordedRequest] = []
        self.in_flight = self.max_in_flight = 0
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd: _Server | None = None
        self._port = 0
        self._connections: set = set()  # open client connections, closed by stop() as a dying server's would be

    def start(self) -> FakeOpenAIServer:
        """Listen (again): a restarted server keeps its port, so clients built with its base_url reach it."""
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = _Server(("127.0.0.1", self._port), handler)
        self._port = self._httpd.server_address[1]
        self._stop.clear()
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="fake-openai", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening and close every open connection: clients are refused until `start()`."""
        import socket

        self._stop.set()  # wakes handlers sleeping in a delay
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if not self._port:
            raise RuntimeError("FakeOpenAIServer is not started (use it as a context manager or call start())")
        return f"http://127.0.0.1:{self._port}/v1"

    def inject(self, fault: Fault, times: int = 1) -> None:
        """Queue `fault` for the next `times` chat requests."""
        with self._lock:
            self._faults.extend([fault] * times)

    def reset(self) -> None:
        """Forget recorded requests, queued faults and the in-flight maximum."""
        with self._lock:
            self.requests.clear()
            self._faults.clear()
            self.max_in_flight = 0

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def _enter(self, req: RecordedRequest, chat: bool = True) -> Fault | None:
        """Record a request; a chat request also counts as in flight and takes the next queued fault."""
        with self._lock:
            self.requests.append(req)
            if not chat:
                return None
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self._faults.popleft() if self._faults else None

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)  # stop() cuts it short

    def _reply_for(self, body: dict, text: str, plain: bool = False) -> Any:
        """The scripted reply; `plain` skips rules whose reply is a Fault (a fault is already being served)."""
        reply: Any = next((r for key, r in self.rules if key in text and not (plain and isinstance(r, Fault))),
                          self.default)
        return reply(body) if callable(reply) else reply

    def answer(self, req: RecordedRequest, fault: Fault | None) -> tuple[int, dict[str, str], bytes]:
        """The status, headers and body for one chat request."""
        body = req.body
        if self.api_key is not None and req.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        if self.models is not None and body.get("model") not in self.models:
            return _error(404, f"The model {body.get('model')!r} does not exist.", "model_not_found")
        fmt = req.response_format
        if (fmt == "json_schema" and self.reject_json_schema) or (fmt == "json_object" and self.reject_json_object):
            if self.reject_status == 500:  # llama-cpp-python's server wraps its validation error in a 500
                return _error(500, "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', "
                                   f"'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\", "
                                   f"'input': '{fmt}'}}")
            return _error(400, f'response_format type must be one of "text" or "json_object", but got: {fmt}')
        if body.get("logprobs") and self.logprobs == "reject":
            return _error(400, "logprobs is not supported by this server")
        reply = fault if fault is not None else self._reply_for(body, req.text)
        if isinstance(reply, Fault):
            if reply.kind == "drop":
                return 0, {}, b""
            if reply.kind == "status":
                headers = {"Retry-After": reply.retry_after} if reply.retry_after is not None else {}
                code, hdrs, payload = _error(reply.status, reply.body or f"fake failure {reply.status}")
                return code, {**hdrs, **headers}, payload
            if reply.kind == "delay":
                self._sleep(reply.delay_s)
                reply = self._reply_for(body, req.text, plain=True)
            elif reply.kind == "invalid_json":
                return 200, {"Content-Type": "application/json"}, b'{"id": "chatcmpl-broken", "choices": [ {'
            elif reply.kind == "content":
                reply = reply.content
            else:  # empty_choices, null_content, truncated: the answer's shape is broken, not the script
                reply = self._reply_for(body, req.text, plain=True)
        return 200, {"Content-Type": "application/json"}, json.dumps(self._completion(req, reply, fault)).encode()

    def _completion(self, req: RecordedRequest, reply: Any, fault: Fault | None) -> dict:
        logprobs = None
        if isinstance(reply, TokenProbs):
            if req.body.get("logprobs") and self.logprobs == "yes":
                logprobs = reply.logprobs()
            reply = reply.token
        content = reply if isinstance(reply, str) else json.dumps(reply)
        kind = fault.kind if fault is not None else None
        finish = "length" if kind == "truncated" else "stop"
        content = content[: len(content) // 2] if kind == "truncated" else content
        message: dict[str, Any] = {"role": "assistant", "content": None if kind == "null_content" else content}
        choice = {"index": 0, "message": message, "finish_reason": finish,
                  **({"logprobs": logprobs} if logprobs else {})}
        choices = [] if kind == "empty_choices" else [choice]
        out: dict[str, Any] = {
            "id": f"chatcmpl-fake-{len(self.requests)}", "object": "chat.completion", "created": int(time.time()),
            "model": req.body.get("model", "fake-model"), "choices": choices,
        }
        if self.include_usage:
            prompt = len(req.text.split()) + 85 * len(req.image_urls)
            completion = len(content.split())
            out["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion,
                            "total_tokens": prompt + completion}
        return out


def _error(status: int, message: str, code: str | None = None) -> tuple[int, dict[str, str], bytes]:
    payload = {"error": {"message": message, "type": "invalid_request_error" if status < 500 else "server_error",
                         "param": None, "code": code or status}}
    return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAIServer
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    disable_nagle_algorithm = True  # headers and body go out in two writes: don't let Nagle hold the second

    def log_message(self, format: str, *args: Any) -> None:  # the stdlib's signature
        pass

    def setup(self) -> None:
        super().setup()
        with self.fake._lock:
            self.fake._connections.add(self.connection)

    def finish(self) -> None:
        with self.fake._lock:
            self.fake._connections.discard(self.connection)
        super().finish()

    def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        if status == 0:  # a "drop" fault: close without a word
            self.close_connection = True
            return
        try:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (timeout); nothing to answer

    def do_GET(self) -> None:  # the stdlib's name
        self.fake._enter(RecordedRequest("GET", self.path, self._headers()), chat=False)
        if not self.path.rstrip("/").endswith("/models"):
            self._send(*_error(404, f"no route GET {self.path}"))
            return
        names = self.fake.models or ["fake-model"]
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "fake"} for n in names]
        self._send(200, {"Content-Type": "application/json"}, json.dumps({"object": "list", "data": data}).encode())

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = None
        req = RecordedRequest("POST", self.path, self._headers(), body if isinstance(body, dict) else {})
        if body is None or not self.path.rstrip("/").endswith("/chat/completions"):
            self.fake._enter(req, chat=False)
            self._send(*_error(400 if body is None else 404, f"bad request body or no route POST {self.path}"))
            return
        fault = self.fake._enter(req)
        try:
            self.fake._sleep(self.fake.delay_s)
            status, headers, payload = self.fake.answer(req, fault)
        except Exception as exc:  # a scripted reply that raised: answer like a crashed server would
            status, headers, payload = _error(500, f"fake server error: {type(exc).__name__}: {exc}")
        finally:
            self.fake._leave()
        self._send(status, headers, payload)

    def _headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}
