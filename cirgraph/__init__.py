"""cirgraph: training-free composed image retrieval (reference image + modification text -> ranked images).

Heavy modules (torch, transformers, chromadb, langgraph) load lazily, so `import cirgraph` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it; resolved on first attribute access
_LAZY = {
    "Settings": "cirgraph.settings",
    "CirgraphError": "cirgraph.errors",
    "ConfigError": "cirgraph.errors",
    "InputError": "cirgraph.errors",
    "ImageError": "cirgraph.errors",
    "ModelError": "cirgraph.errors",
    "ModelOutputError": "cirgraph.errors",
    "ModelNotFoundError": "cirgraph.errors",
    "GalleryError": "cirgraph.errors",
    "Message": "cirgraph.tools.messages",
    "Gallery": "cirgraph.stores.gallery",
    "Retriever": "cirgraph.retriever",
    "Query": "cirgraph.retriever",
    "GalleryRef": "cirgraph.agents.query",
    "PipelineConfig": "cirgraph.agents.context",
    "SearchResult": "cirgraph.agents.results",
    "ChatSession": "cirgraph.chat.session",
    "Turn": "cirgraph.chat.turns",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cirgraph' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
