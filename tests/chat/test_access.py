"""Who may use the HTTP API: cross-origin writes refused (over real HTTP too), the access token and its login page,
per-client rate limits, and the text size limit."""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cirgraph.chat.api import create_app
from cirgraph.chat.guard import COOKIE, cookie_value, normalise_origin
from cirgraph.chat.limits import RateLimited, RateLimiter
from cirgraph.chat.store import ChatStore
from cirgraph.chat.threads import Conversations
from cirgraph.errors import ConfigError

from .conftest import serve

TOKEN = "s3cret-token-for-tests"


def error(res, status: int) -> str:
    assert res.status_code == status, res.text
    assert res.headers["content-type"].startswith("application/json")
    return res.json()["detail"]


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]] = {}) -> tuple[bytes, str]:  # noqa: B006
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    for name, (filename, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@pytest.fixture
def served(world, store: ChatStore) -> Iterator[str]:
    """The app under uvicorn on 127.0.0.1 (a free port), with the loopback Host names of `cirgraph ui`; host:port."""
    from cirgraph.cli.ui import LOOPBACK_NAMES

    app = create_app(Conversations(store, world.retriever), allowed_hosts=LOOPBACK_NAMES)
    for url in serve(app):
        yield url.removeprefix("http://")


def post(host: str, path: str, body: bytes, content_type: str, **headers: str) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection(host, timeout=30)
    conn.request("POST", path, body=body, headers={"Content-Type": content_type, **headers})
    res = conn.getresponse()
    out = res.status, {k.lower(): v for k, v in res.getheaders()}, res.read()
    conn.close()
    return out


def test_a_cross_origin_multipart_turn_is_refused_over_http(served: str, world) -> None:
    """The form post a foreign page can send without a preflight: refused before it touches the thread."""
    status, _, body = post(served, "/api/threads", b"{}", "application/json")
    thread = json.loads(body)["thread_id"]
    form, kind = multipart({"text": "make it red"}, {"image": ("ref.png", world.image("blue-dress").read_bytes())})
    url = f"/api/threads/{thread}/turns"
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"},
                    {"Origin": f"http://{served}.evil.example"},
                    {"Referer": "https://evil.example/page.html"}):
        status, head, body = post(served, url, form, kind, **headers)
        assert status == 403 and head["content-type"] == "application/json", (headers, body)
        detail = json.loads(body)["detail"]
        assert "accepted only from this app's own pages" in detail and "--allow-origin" in detail
    status, _, body = post(served, "/api/threads", b"{}", "application/json", Origin="https://evil.example")
    assert status == 403
    conn = http.client.HTTPConnection(served, timeout=30)
    conn.request("GET", f"/api/threads/{thread}")
    assert json.loads(conn.getresponse().read())["turns"] == []  # nothing was done
    conn.close()
    # the app's own page (Origin, or Referer without Origin) and a client that sends neither are accepted
    for headers in ({"Origin": f"http://{served}"}, {"Referer": f"http://{served}/"}, {}):
        status, _, body = post(served, url, form, kind, **headers)
        assert status == 200, (headers, body)
        assert json.loads(body)["hits"][0]["id"] == "red-dress"


def test_allowed_origins_and_safe_methods(world, store: ChatStore) -> None:
    conv = Conversations(store, world.retriever)
    app = create_app(conv, allowed_origins=["https://Team.example:443", "http://localhost:5173"])
    with TestClient(app, base_url="http://chat.internal:8000") as client:
        for origin in ("https://team.example", "http://localhost:5173", "http://chat.internal:8000"):
            assert client.post("/api/threads", headers={"Origin": origin}).status_code == 201, origin
        for origin in ("https://team.example:8443", "http://team.example", "https://chat.internal:8000"):
            assert "Origin" in error(client.post("/api/threads", headers={"Origin": origin}), 403)
        # reads are not writes: a cross-origin GET is answered (the browser keeps the answer from the page)
        assert client.get("/api/galleries", headers={"Origin": "https://evil.example"}).status_code == 200
    with pytest.raises(ConfigError, match="'team.example': not an http"):
        create_app(conv, allowed_origins=["team.example"])
    assert normalise_origin("HTTP://[::1]:80") == "http://[::1]" and normalise_origin("ftp://x") is None


@pytest.fixture
def locked(world, store: ChatStore) -> Iterator[TestClient]:
    app = create_app(Conversations(store, world.retriever), token=TOKEN)
    with TestClient(app, base_url="http://10.1.2.3:8000") as client:
        yield client


def test_a_token_is_required_on_every_api_route(locked: TestClient) -> None:
    for method, path in (("GET", "/api/galleries"), ("POST", "/api/threads"), ("GET", "/api/threads/abc"),
                         ("POST", "/api/search"), ("GET", "/api/images/toy/red-dress"),
                         ("GET", "/api/galleries/toy/sample"), ("GET", "/openapi.json"), ("GET", "/docs")):
        res = locked.request(method, path)
        assert "access token" in error(res, 401), path
        assert res.headers["www-authenticate"].startswith("Bearer")
    for wrong in ("Bearer nope", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer "):
        assert locked.get("/api/galleries", headers={"Authorization": wrong}).status_code == 401, wrong
    locked.cookies.set(COOKIE, TOKEN)  # the cookie holds a digest, not the token itself
    assert locked.get("/api/galleries").status_code == 401
    locked.cookies.clear()
    ok = locked.get("/api/galleries", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json()[0]["name"] == "toy"
    # the page sends a browser without the cookie to the login page; static assets are public
    page = locked.get("/", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login"
    assert locked.get("/static/app.js").status_code == 200


def test_the_login_page_sets_a_strict_http_only_cookie(locked: TestClient, world) -> None:
    page = locked.get("/login")
    assert page.status_code == 200 and 'type="password"' in page.text and 'action="/login"' in page.text
    assert "form-action 'self'" in page.headers["content-security-policy"]
    wrong = locked.post("/login", data={"token": "guess"}, follow_redirects=False)
    assert wrong.status_code == 401 and "Wrong token: that is not the access token" in wrong.text
    assert "set-cookie" not in wrong.headers
    # a login form posted from another site is refused like any other write
    assert locked.post("/login", data={"token": TOKEN}, headers={"Origin": "https://evil.example"}).status_code == 403
    res = locked.post("/login", data={"token": TOKEN}, follow_redirects=False)
    assert res.status_code == 303 and res.headers["location"] == "/"
    cookie = res.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}={cookie_value(TOKEN)}") and TOKEN not in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict") and "Path=/" in cookie
    # the client now holds the cookie: the page and the API answer
    assert locked.get("/").status_code == 200
    thread = locked.post("/api/threads").json()["thread_id"]
    turn = locked.post(f"/api/threads/{thread}/turns", data={"text": "make it red", "ref_id": "blue-dress"})
    assert turn.status_code == 200 and turn.json()["hits"][0]["id"] == "red-dress"
    assert locked.get("/api/images/toy/red-dress").status_code == 200
    out = locked.post("/logout", follow_redirects=False)
    assert out.status_code == 303 and out.headers["set-cookie"].startswith(f'{COOKIE}="";')
    assert "Max-Age=0" in out.headers["set-cookie"]
    locked.cookies.clear()
    assert locked.get("/api/galleries").status_code == 401


def test_rate_limits_answer_429_with_retry_after(world, store: ChatStore) -> None:
    clock = [1000.0]
    rates = RateLimiter({"turns": 6, "uploads": 3}, burst={"turns": 2, "uploads": 1}, clock=lambda: clock[0])
    app = create_app(Conversations(store, world.retriever), rate_limits=rates)
    with TestClient(app) as client:
        thread = client.post("/api/threads").json()["thread_id"]
        url = f"/api/threads/{thread}/turns"
        png = {"image": ("ref.png", world.image("blue-dress").read_bytes(), "image/png")}
        assert client.post(url, data={"text": "make it red"}, files=png).status_code == 200
        # one upload a burst: the next upload waits 20 s (3 a minute), a plain turn may still go
        res = client.post(url, data={"text": "x"}, files=png)
        assert "image uploads from testclient" in error(res, 429) and res.headers["retry-after"] == "20"
        assert client.post(url, data={"text": "with long sleeves"}).status_code == 200
        res = client.post("/api/search", data={"text": "x", "ref_id": "red-dress"})
        assert "turns and searches from testclient: over the limit of 6 a minute" in error(res, 429)
        assert res.headers["retry-after"] == "10"
        assert len(client.get(f"/api/threads/{thread}").json()["turns"]) == 2  # refused turns left no trace
        clock[0] += 10  # one token back
        assert client.post("/api/search", data={"text": "x", "ref_id": "red-dress"}).status_code == 200
        assert client.get("/api/galleries").status_code == 200  # reads are not limited


def test_rate_limiter_buckets_are_per_client_and_refill() -> None:
    clock = [0.0]
    rates = RateLimiter({"turns": 60, "off": 0}, burst={"turns": 3}, clock=lambda: clock[0], max_clients=2)
    turn = ("turns", "turns")
    for _ in range(3):
        rates.take("a", turn)
    with pytest.raises(RateLimited) as caught:
        rates.take("a", turn)
    assert caught.value.retry_after == 1 and str(caught.value).startswith("turns from a: over the limit of 60")
    rates.take("b", turn)  # another client has its own bucket
    for _ in range(100):
        rates.take("a", ("off", "off"), ("unknown", "unknown"))  # a rate of 0, or none, is no limit
    clock[0] += 2.0
    rates.take("a", turn)
    rates.take("a", turn)
    with pytest.raises(RateLimited):
        rates.take("a", turn)


def test_text_over_the_limit_is_413(world, store: ChatStore) -> None:
    app = create_app(Conversations(store, world.retriever), max_text_chars=50)
    with TestClient(app) as client:
        thread = client.post("/api/threads").json()["thread_id"]
        long = "make it red " * 10
        res = client.post(f"/api/threads/{thread}/turns", data={"text": long, "ref_id": "blue-dress"})
        assert error(res, 413) == "text: 120 characters, over the 50-character limit"
        assert "120 characters" in error(client.post("/api/search", data={"text": long, "ref_id": "red-dress"}), 413)
        huge = "x" * 100_000  # well past the default limit: refused before any search
        default = create_app(Conversations(store, world.retriever))
        with TestClient(default) as other:
            res = other.post(f"/api/threads/{thread}/turns", data={"text": huge, "ref_id": "blue-dress"})
            assert "100000 characters, over the 2000-character limit" in error(res, 413)
        assert client.get(f"/api/threads/{thread}").json()["turns"] == []


def test_loopback_without_a_token_stays_open(world, store: ChatStore, tmp_path: Path) -> None:
    from cirgraph.cli.ui import LOOPBACK_NAMES

    app = create_app(Conversations(store, world.retriever), allowed_hosts=LOOPBACK_NAMES)
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        assert client.get("/").status_code == 200 and client.get("/login").status_code == 404
        assert client.post("/api/threads", headers={"Origin": "http://127.0.0.1:8000"}).status_code == 201
