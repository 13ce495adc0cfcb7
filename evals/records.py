"""Versioned result records of evaluation runs, and the per-query log a run appends to as it goes.

A run folder holds `queries.jsonl` (one line per finished query, fsync'd, so a killed run loses only the queries in
flight and a rerun resumes), `record.json` (the whole run: package, data, models, prompts, configuration, per-query
rankings and intermediate outputs, metrics, timings, usage, failures; written atomically) and the summaries that
cirgraph.evals.reports writes beside it. Records carry `schema_version`, as mteb's TaskResult does, so old records
stay readable and a newer one is refused with a clear message instead of being misread.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cirgraph.errors import InputError

SCHEMA_VERSION = 2  # 2: QueryResult.subset_tail (exact Recall_subset)
RECORD_FILE, LOG_FILE = "record.json", "queries.jsonl"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorInfo(_Record):
    """Why a query failed: the exception's type and message."""

    type: str
    message: str


class QueryResult(_Record):
    """One query's outcome: its ranking (benchmark image names, best first) and how the pipeline got there."""

    id: str
    status: Literal["ok", "failed"]
    ranking: list[str] = Field([], description="Gallery names, best first, the reference removed; [] when failed.")
    scores: list[float] = Field([], description="The score of each ranked name.")
    subset_tail: list[str] = Field([], description="CIRR: image-set members below the kept ranking, in rank order "
                                                   "(scored exactly), so Recall_subset needs no cut-off.")
    caption: str | None = None
    caption_source: str | None = None
    descriptions: list[str] = []
    description_source: str | None = None
    propositions: list[dict[str, Any]] = []
    verdicts: dict[str, dict[str, Any]] = Field({}, description="Rerank verdicts by gallery name.")
    rounds: int = 0
    stop_reason: str | None = None
    degraded: list[dict[str, Any]] = []
    prompts: dict[str, dict[str, str]] = {}
    usage: dict[str, float] = Field({}, description="Model calls, cached calls, tokens, model seconds.")
    seconds: float = Field(0.0, description="Wall time of this query.")
    notes: list[str] = []
    error: ErrorInfo | None = None

    @classmethod
    def failure(cls, query_id: str, exc: BaseException, seconds: float) -> QueryResult:
        message = str(exc) or type(exc).__name__
        return cls(id=query_id, status="failed", seconds=round(seconds, 4),
                   error=ErrorInfo(type=type(exc).__name__, message=message[:2000]))


class ModelInfo(_Record):
    """A model as the run used it; endpoints never carry keys."""

    name: str
    kind: str = Field(description="Client class, e.g. OpenAIChatModel, HFTextEmbedder.")
    endpoint: str | None = None


class DataInfo(_Record):
    """An annotation file the run read, with its hash and whether it is the known revision."""

    role: str
    name: str
    sha256: str
    known_sha256: str | None = None
    category: str | None = None


class RunRecord(_Record):
    """Everything about one evaluation run. `metrics` maps the protocol's names ("R@1", "Rs@1", "mAP@5", ...) to
    percentages; failed queries count as misses there and are listed in `failures`."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    fingerprint: str = Field(description="Hash of what determines the results: data, space, models, prompts, config.")
    created: str = Field(description="When this record was written (UTC, ISO 8601).")
    package_version: str
    git_revision: str | None = None
    benchmark: str
    split: str
    categories: list[str | None] = [None]
    revision: str = Field(description="The annotation release the benchmark declaration describes.")
    main_score: str
    data: list[DataInfo] = []
    notes: list[str] = Field([], description="Where the data or the space differ from the declaration.")
    mode: Literal["images", "captions"]
    spaces: list[dict[str, Any]] = Field([], description="The gallery of each part: name, kind, count, reuse.")
    models: dict[str, ModelInfo | None] = {}
    prompts: dict[str, dict[str, str]] = Field({}, description="stage -> {template, sha} of the prompts used.")
    preset: str | None = None
    config: dict[str, Any] = Field(description="The PipelineConfig as a dict.")
    limit: int | None = None
    offset: int = Field(0, description="Queries skipped at the start of each part (--offset).")
    metrics: dict[str, float] = {}
    main_value: float | None = None
    counts: dict[str, int] = Field({}, description="queries, ok, failed, degraded, resumed.")
    timings: dict[str, float] = Field({}, description="wall_s of this invocation and per-query statistics.")
    usage: dict[str, float] = Field({}, description="Model calls, cached calls, tokens, summed over queries.")
    failures: list[dict[str, str]] = Field([], description="{id, type, message} of every failed query.")
    missing_captions: dict[str, list[str]] = Field({}, description="Query ids whose reference / target has no "
                                                                   "caption (caption-space runs).")
    submissions: list[str] = Field([], description="Test-server files written for this run.")
    submission_error: str | None = None
    queries: list[QueryResult] = []

    def per_query(self, key: str) -> float:
        """A usage total (calls, prompt_tokens...) or seconds, divided by the number of queries."""
        total = self.timings.get("query_s_total", 0.0) if key == "seconds" else self.usage.get(key, 0.0)
        return total / max(1, self.counts.get("queries", 0))


def _read_umask() -> int:
    mask = os.umask(0o022)  # os.umask only sets it: read it by setting and restoring, once, at import
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def write_atomic(path: Path, text: str) -> Path:
    """Write `text` to `path` through a temporary file in the same folder and os.replace: readers see the old file
    or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a record is as readable as the rest of the run
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_record(record: RunRecord, path: Path | str) -> Path:
    """Write a record as indented JSON, atomically."""
    return write_atomic(Path(path), record.model_dump_json(indent=1) + "\n")


def load_record(path: Path | str) -> RunRecord:
    """Read a record from its file or its run folder; InputError naming the file for anything unreadable."""
    path = Path(path)
    if path.is_dir():
        path = path / RECORD_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(str(path), "no run record here (is the run finished?)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(str(path), f"not a readable run record ({exc})") from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise InputError(str(path), f"record schema_version {version!r} is not readable by this cirgraph "
                                    f"(reads up to {SCHEMA_VERSION}); upgrade cirgraph")
    try:
        return RunRecord.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise InputError(str(path), f"invalid run record at {'.'.join(map(str, error['loc']))}: "
                                    f"{error['msg']}") from None


class QueryLog:
    """The append-only per-query log of a run folder: a header line naming the run, then one QueryResult per line.

    Each append is flushed and fsync'd, so what was logged survives a kill. A line cut short by a kill is dropped on
    open. The last line of a query wins, so a failed query retried by a rerun is replaced by its new result.
    """

    def __init__(self, path: Path | str, *, run_id: str, fingerprint: str, fresh: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        if fresh:
            self.path.unlink(missing_ok=True)
        self.results = self._read(fingerprint) if self.path.exists() else {}
        if not self.path.exists() or self.path.stat().st_size == 0:
            header = {"kind": "header", "run_id": run_id, "fingerprint": fingerprint,
                      "schema_version": SCHEMA_VERSION}
            self._write_line(header)

    def _read(self, fingerprint: str) -> dict[str, QueryResult]:
        raw = self.path.read_bytes()
        if raw and not raw.endswith(b"\n"):  # a line cut short by a kill: drop it
            raw = raw[: raw.rfind(b"\n") + 1]
            with self.path.open("r+b") as handle:
                handle.truncate(len(raw))
        lines = raw.decode("utf-8").splitlines()
        if not lines:
            return {}
        header = json.loads(lines[0])
        if header.get("kind") != "header" or header.get("fingerprint") != fingerprint:
            raise InputError(str(self.path), "holds a run with other settings (data, models, prompts or "
                                             "configuration); pass --fresh to start over, or another --out")
        results: dict[str, QueryResult] = {}
        for number, line in enumerate(lines[1:], 2):
            try:
                result = QueryResult.model_validate_json(line)
            except ValidationError as exc:
                raise InputError(f"{self.path}, line {number}",
                                 f"not a query result ({exc.errors()[0]['msg']})") from exc
            results[result.id] = result
        return results

    def _write_line(self, obj: dict[str, Any] | str) -> None:
        line = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)
        with self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def append(self, result: QueryResult) -> None:
        """Log a finished query durably."""
        self._write_line(result.model_dump_json())
        self.results[result.id] = result


# --- assembling a record from a finished run -------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def git_revision() -> str | None:
    """The commit the package runs from, when it runs from a git checkout; None otherwise."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def describe_model(model: Any) -> ModelInfo | None:
    """Name, client class and endpoint of a model (the endpoint without credentials or query)."""
    if model is None:
        return None
    inner = getattr(model, "inner", model)
    endpoint = getattr(inner, "base_url", None)
    if endpoint:
        parts = urlsplit(str(endpoint))
        host = parts.hostname or ""
        endpoint = urlunsplit(parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host, query=""))
    return ModelInfo(name=str(model.name), kind=type(inner).__name__, endpoint=endpoint)
