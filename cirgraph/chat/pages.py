"""The HTML pages beside the chat: the login page (when the server has an access token) and the API docs.

The docs (Swagger UI at /docs, ReDoc at /redoc) load their scripts from this server, out of the `fastapi-offline`
package, so they work without a network; without that package they fall back to FastAPI's CDN pages.
"""

from __future__ import annotations

import html
from importlib.resources import files
from importlib.util import find_spec
from typing import TYPE_CHECKING

from fastapi import Form, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from cirgraph.chat.guard import COOKIE, cookie_value, token_matches

if TYPE_CHECKING:
    from fastapi import FastAPI

    from cirgraph.chat.limits import RateLimiter

DOCS_ASSETS = "/static-docs"
# The login page has no script; its form posts to this server only. Its referrer policy is same-origin: under
# no-referrer a browser sends "Origin: null" with the form post, which the origin check refuses.
LOGIN_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; form-action 'self'; "
                                           "frame-ancestors 'none'",
                 "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}
LOGIN_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>cirgraph chat: log in</title><link rel="icon" href="data:,"><link rel="stylesheet" href="/static/style.css">
</head>
<body class="login">
  <form id="login" method="post" action="/login">
    <h1>cirgraph</h1>
    <p>This chat needs the access token that the server printed when it started
       (<code>cirgraph ui --token</code> or <code>CIRGRAPH_UI_TOKEN</code>).</p>
    <div id="error" role="alert"{hidden}>{error}</div>
    <label>access token <input id="token" name="token" type="password" autocomplete="current-password" autofocus
      required></label>
    <button id="login-button" type="submit">Log in</button>
  </form>
</body>
</html>
"""


def login_page(error: str = "", status: int = 200) -> HTMLResponse:
    page = LOGIN_PAGE.replace("{hidden}", "" if error else " hidden").replace("{error}", html.escape(error))
    return HTMLResponse(page, status_code=status, headers=LOGIN_HEADERS)


def add_login(app: FastAPI, token: str, limiter: RateLimiter | None) -> None:
    """GET /login asks for the token; POST /login checks it and sets the login cookie; POST /logout clears it."""

    @app.get("/login", include_in_schema=False)
    async def ask() -> HTMLResponse:
        return login_page()

    @app.post("/login", include_in_schema=False)
    async def check(request: Request, token_field: str = Form("", alias="token", max_length=1000)) -> Response:
        if limiter is not None:
            limiter.take(request.client.host if request.client else "unknown", ("logins", "log-in attempts"))
        if not token_matches(token_field.strip(), token):
            return login_page("Wrong token: that is not the access token of this server.", status=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, cookie_value(token), httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https")
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout() -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response


def add_docs(app: FastAPI) -> None:
    """/docs and /redoc with their assets served by this app (the FastAPI app is made with docs_url=None)."""
    if find_spec("fastapi_offline") is None:
        js, css, redoc, icon = (None,) * 4
    else:
        app.mount(DOCS_ASSETS, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-assets")
        js, css, redoc, icon = (f"{DOCS_ASSETS}/{name}" for name in
                                ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"))

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        assets = {"swagger_js_url": js, "swagger_css_url": css, "swagger_favicon_url": icon} if js else {}
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title}: API", **assets)

    @app.get("/redoc", include_in_schema=False)
    async def redoc_page() -> HTMLResponse:
        assets = {"redoc_js_url": redoc, "redoc_favicon_url": icon, "with_google_fonts": False} if js else {}
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title}: API", **assets)
