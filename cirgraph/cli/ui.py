"""`cirgraph ui`: the web chat and its HTTP API (FastAPI + uvicorn), on 127.0.0.1 unless told otherwise.

The page is static HTML/JS served by the same process (no build step); the API's OpenAPI schema is at /docs.
Conversations are stored under CIRGRAPH_HOME like `cirgraph chat`'s, so a thread can move between the two.
"""

from __future__ import annotations

import ipaddress
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
    gallery: Optional[list[str]] = typer.Option(  # noqa: UP007 - typer reads the annotation at runtime
        None, "--gallery", "-g", help="Gallery to serve (repeat for several; the first is the default). "
                                      "Default: 'default'."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind. Anything but loopback exposes the "
                                                        "chat, without authentication, to the network."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to bind."),
    preset: Optional[str] = preset_option(),  # noqa: UP045
    max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", min=0.01, help="Largest accepted upload."),
    allow_remote_images: bool = typer.Option(False, "--allow-remote-images",
                                             help="Accept http(s) image URLs as references (the server fetches "
                                                  "them; off: refused)."),
) -> None:
    """Serve the web chat: image upload, results as thumbnails, explanations, thread history."""
    from cirgraph.chat.api import create_app
    from cirgraph.chat.store import ChatStore
    from cirgraph.chat.threads import Conversations
    from cirgraph.settings import Settings

    _require_web_extras()
    names = list(dict.fromkeys(gallery or ["default"]))
    preset = chosen_preset(preset)
    retrievers = {name: open_retriever(name, preset) for name in names}
    store = ChatStore.from_settings(Settings())
    conversations = Conversations(store, retrievers, max_upload_bytes=int(max_upload_mb * 1024 * 1024),
                                  allow_remote=allow_remote_images)
    web_app = create_app(conversations, allowed_hosts=LOOPBACK_NAMES if is_loopback(host) else None)
    if not is_loopback(host):
        typer.echo(f"warning: binding {host}: the chat has no authentication; anyone who can reach this address "
                   "can search and upload images", err=True)
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"cirgraph web chat on http://{shown}:{port}/ (galleries: {', '.join(names)}; API docs at /docs)")
    try:
        serve(web_app, host, port)
    finally:
        for retriever in retrievers.values():
            retriever.close()
        store.close()
