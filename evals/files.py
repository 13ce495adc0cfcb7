"""Reading annotation and submission files: JSON with the file and line of a syntax error, lists of entries
validated one by one (naming the entry and the bad field), and the sha256 a run record compares with the known one."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from cirgraph.errors import InputError

_Model = TypeVar("_Model", bound=BaseModel)


def read_json(path: Path, **options: Any) -> Any:
    """Parse a JSON file (`options` go to json.loads), naming the file and the line of a syntax error."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(str(path), f"cannot be read ({exc.strerror or exc})") from exc
    try:
        return json.loads(text, **options)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}, line {exc.lineno}", f"not valid JSON: {exc.msg}") from exc


def parse_entries(model: type[_Model], records: Any, source: Path, label: Callable[[object], str]) -> list[_Model]:
    """Validate every record of an annotation list, naming the file, the entry and the bad field on failure."""
    if not isinstance(records, list):
        raise InputError(str(source), f"expected a JSON list of entries, found {type(records).__name__}")
    entries = []
    for index, record in enumerate(records):
        try:
            entries.append(model.model_validate(record))
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(p) for p in error["loc"]) or "entry"
            subject = f"{source}, entry {index} ({label(record)})"
            raise InputError(subject, f"field {field!r}: {error['msg']}") from exc
    return entries


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
