"""`cirgraph ui`: the web chat and its HTTP API (FastAPI + uvicorn), on 127.0.0.1 unless told otherwise.

The page is static HTML/JS served by the same process (no build step); the API's OpenAPI schema is at /docs.
Conversations are stored under CIRGRAPH_HOME like `cirgraph chat`'s, so a thread can move between the two.
On loopback the chat is open to local pages of its own origin; on any other address it needs an access token
(given, or generated and printed), so it can be shared on a network.
"""

from __future__ import annotations

import ipaddress
import secrets
from typing import TYPE_CHECKING, Any, Optional

import typer

from cirgraph.cli import app
from cirgraph.cli._presets import chosen_preset, preset_option

if TYPE_CHECKING:
    from cirgraph.retriever import Retriever


# Host headers a loopback server answers to (a DNS name rebound to 127.0.0.1 is refused).
LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]


def open_retriever(gallery: str, preset: str) -> Retriever:
    """The retriever for `gallery` with the named preset, from Settings (tests replace this function)."""
    from cirgraph.retriever import Retriever

    return Retriever.from_settings(gallery=gallery, preset=preset)


def serve(web_app: Any, host: str, port: int) -> None:
    """Run the app until interrupted (tests replace this function)."""
    import uvicorn

    uvicorn.run(web_app, host=host, port=port, log_level="warning")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _require_web_extras() -> None:
    from importlib.util import find_spec

    from cirgraph.errors import ConfigError

    found = {"fastapi": find_spec("fastapi"), "uvicorn": find_spec("uvicorn"),
             "python-multipart": find_spec("python_multipart") or find_spec("multipart")}
    missing = [name for name, spec in found.items() if spec is None]
    if missing:
        raise ConfigError(f"cirgraph ui needs {', '.join(missing)}: pip install 'cirgraph[ui]'")


@app.command("ui")
def ui(
    gallery: Optional[list[str]] = typer.Option(
        None, "--gallery", "-g", help="Gallery to serve (repeat for several; the first is the default). "
                                      "Default: 'default'."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind. Anything but loopback exposes the "
                                                        "chat to the network, behind an access token."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to bind."),
    preset: Optional[str] = preset_option(),
    max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", min=0.01, help="Largest accepted upload."),
    allow_remote_images: bool = typer.Option(False, "--allow-remote-images",
                                             help="Accept http(s) image URLs as references (the server fetches "
                                                  "them; off: refused)."),
    token: Optional[str] = typer.Option(
        None, "--token", envvar="CIRGRAPH_UI_TOKEN", show_default=False,
        help="Access token the API and the page require (a bearer header, or a login). Default: none on loopback; "
             "generated and printed when binding any other address."),
    allow_origin: Optional[list[str]] = typer.Option(
        None, "--allow-origin", envvar="CIRGRAPH_UI_ALLOW_ORIGINS",
        help="Another origin (https://host:port) whose pages may post to the API (repeat for several); the app's "
             "own pages always may."),
    turns_per_minute: float = typer.Option(30.0, "--turns-per-minute", min=0,
                                           help="Turns and searches a client address may send a minute (0: no "
                                                "limit)."),
    uploads_per_minute: float = typer.Option(12.0, "--uploads-per-minute", min=0,
                                             help="Image uploads a client address may send a minute (0: no limit)."),
) -> None:
    """Serve the web chat: image upload, results as thumbnails, explanations, thread history."""
    from cirgraph.chat.api import create_app
    from cirgraph.chat.guard import normalise_origin
    from cirgraph.chat.limits import RateLimiter
    from cirgraph.chat.store import ChatStore
    from cirgraph.chat.threads import Conversations
    from cirgraph.settings import Settings

    _require_web_extras()
    origins = [o for value in allow_origin or [] for o in value.split()]
    for origin in origins:
        if normalise_origin(origin) is None:
            raise typer.BadParameter(f"{origin!r} is not an http(s) origin like https://host:8000",
                                     param_hint="--allow-origin")
    token = (token or "").strip() or None  # an empty CIRGRAPH_UI_TOKEN is no token
    generated = token is None and not is_loopback(host)
    token = secrets.token_urlsafe(24) if generated else token
    names = list(dict.fromkeys(gallery or ["default"]))
    preset = chosen_preset(preset)
    retrievers = {name: open_retriever(name, preset) for name in names}
    store = ChatStore.from_settings(Settings())
    conversations = Conversations(store, retrievers, max_upload_bytes=int(max_upload_mb * 1024 * 1024),
                                  allow_remote=allow_remote_images)
    rates = RateLimiter({"turns": turns_per_minute, "uploads": uploads_per_minute, "logins": 10})
    web_app = create_app(conversations, allowed_hosts=LOOPBACK_NAMES if is_loopback(host) else None, token=token,
                         allowed_origins=origins, rate_limits=rates)
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"cirgraph web chat on http://{shown}:{port}/ (galleries: {', '.join(names)}; API docs at /docs)")
    if generated:
        typer.echo(f"access token: {token}\n  open http://{shown}:{port}/ and enter it, or send "
                   "'Authorization: Bearer TOKEN' (set --token or CIRGRAPH_UI_TOKEN to choose your own)")
    elif token:
        typer.echo("access token required (the one given with --token or CIRGRAPH_UI_TOKEN)")
    try:
        serve(web_app, host, port)
    finally:
        for retriever in retrievers.values():
            retriever.close()
        store.close()
