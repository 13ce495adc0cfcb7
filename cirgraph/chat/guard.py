"""Who may use the HTTP API: an ASGI middleware that refuses cross-origin writes and, when a token is set, anyone
without it.

- Origin: a request that changes state (any method but GET, HEAD, OPTIONS) must come from the app's own origin
  (scheme and Host of the request) or from one of `allowed_origins`. The browser's Origin header is read, or the
  origin of its Referer when there is no Origin; a request with neither is not from a web page (curl, the SDK)
  and passes. Without this, any page a user visits could post a multipart turn to a local server (a form post
  needs no preflight).
- Token: when one is set, /api routes, the OpenAPI schema and /docs answer 401 unless the request carries
  `Authorization: Bearer TOKEN` or the cookie that /login sets (HttpOnly, SameSite=Strict). The page itself sends
  a browser without the cookie to /login. Tokens are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

COOKIE = "cirgraph_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PROTECTED = ("/api/", "/openapi.json", "/docs", "/redoc")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_origin(value: str) -> str | None:
    """`scheme://host[:port]` in lower case, the scheme's default port left out; None for anything else."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != _DEFAULT_PORTS[parts.scheme] else "")


def check_origins(origins: Iterable[str]) -> list[str]:
    """The origins normalised; ConfigError naming the first that is not an http(s) origin."""
    from cirgraph.errors import ConfigError

    out = []
    for origin in origins:
        normal = normalise_origin(origin)
        if normal is None:
            raise ConfigError(f"allowed origin {origin!r}: not an http(s) origin like https://host:8000")
        out.append(normal)
    return out


def cookie_value(token: str) -> str:
    """What the login cookie holds: a digest of the token, so the token itself is not kept by the browser."""
    return hmac.new(token.encode(), b"cirgraph web chat login", hashlib.sha256).hexdigest()


def token_matches(given: str | None, token: str) -> bool:
    """Constant-time comparison of a presented token with the server's."""
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}


async def _answer(send: Send, status: int, body: dict[str, Any], extra: Iterable[tuple[bytes, bytes]] = ()) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *extra]})
    await send({"type": "http.response.body", "body": data})


class AccessGuard:
    """Wraps an ASGI app: cross-origin writes get 403; without the token (when set), protected paths get 401."""

    def __init__(self, app: Callable[..., Awaitable[None]], *, token: str | None = None,
                 allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.token = token or None
        self.allowed = set(check_origins(allowed_origins))

    def own_origin(self, scope: Scope, headers: dict[str, str]) -> str | None:
        host = headers.get("host")
        return normalise_origin(f"{scope.get('scheme', 'http')}://{host}") if host else None

    def origin_refusal(self, scope: Scope, headers: dict[str, str]) -> str | None:
        """Why a state-changing request is refused for its origin, or None when it may go on."""
        if scope.get("method", "GET") in SAFE_METHODS:
            return None
        claimed = headers.get("origin")
        source = "Origin"
        if claimed is None and headers.get("referer"):
            claimed, source = headers["referer"], "Referer"
        if claimed is None:
            return None  # not sent by a web page
        origin = normalise_origin(claimed) if claimed != "null" else None
        if origin is not None and (origin == self.own_origin(scope, headers) or origin in self.allowed):
            return None
        shown = (origin or claimed)[:100]
        return (f"{source} {shown!r}: requests that change state are accepted only from this app's own pages "
                "(start the server with --allow-origin to accept another origin)")

    def authorised(self, headers: dict[str, str]) -> bool:
        assert self.token is not None
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token_matches(given.strip(), self.token):
            return True
        cookies = SimpleCookie()
        try:
            cookies.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header is no login
            return False
        held = cookies.get(COOKIE)
        return held is not None and token_matches(held.value, cookie_value(self.token))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        refusal = self.origin_refusal(scope, headers)
        if refusal is not None:
            await _answer(send, 403, {"detail": refusal})
            return
        path = scope.get("path", "")
        if self.token is not None and not self.authorised(headers):
            if path.startswith(PROTECTED):
                await _answer(send, 401, {"detail": "this server needs an access token: send 'Authorization: "
                                                    "Bearer TOKEN', or log in at /login"},
                              [(b"www-authenticate", b'Bearer realm="cirgraph"')])
                return
            if path == "/" and scope.get("method") in ("GET", "HEAD"):
                await send({"type": "http.response.start", "status": 303,
                            "headers": [(b"location", b"/login"), (b"content-length", b"0")]})
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)
