"""What the HTTP API may say about the server's disk: nothing. Answers name gallery items by id and file name.

Every JSON answer and error message passes through `public` on its way out: a hit's `uri` (the server's absolute
path of the image) becomes its file `name`, and any absolute path inside a text (a degraded stage's reason, an
error naming a store or an image file) is cut to its last component. The terminal tools and the SDK keep full
paths: their caller owns the disk.
"""

from __future__ import annotations

import re
from typing import Any

# An absolute POSIX path (two components at least) or a file:// URL, starting a text or after a space, quote,
# bracket, "=" or ":" — where a message quotes a path. URL paths of our own routes (/api/...) are added afterwards.
_PATH = re.compile(r"(?<![\w./~-])(?:file://)?(?:~|/[^\s/'\"()\[\]<>,;]+)(?:/[^\s/'\"()\[\]<>,;]+)+/?")


def _tail(match: re.Match[str]) -> str:
    tail = match.group(0).rstrip("/").rsplit("/", 1)[-1]
    return f"…/{tail}"


def redact_text(text: str) -> str:
    """`text` with every absolute path cut to `…/<last component>`."""
    return _PATH.sub(_tail, text) if "/" in text else text


def file_name(uri: str | None) -> str | None:
    """The last component of a stored uri (a path or a file:// URL), None for none."""
    if not uri:
        return None
    return uri.rstrip("/").rsplit("/", 1)[-1] or None


def public(value: Any) -> Any:
    """A JSON-ready value with the server's paths taken out (see the module docstring); the input is not changed."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        out = {key: public(item) for key, item in value.items() if key != "uri"}
        if "uri" in value:
            out.setdefault("name", file_name(value["uri"]) if isinstance(value["uri"], str) else None)
        return out
    if isinstance(value, (list, tuple)):
        return [public(item) for item in value]
    return value
