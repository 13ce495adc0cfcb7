"""caption_reference: the vision model describes the reference image (objects, counts, colours, attributes,
background, viewpoint). Answers are cached by (image hash, model, prompt hash), so a reference is captioned once
per model and prompt. The graph skips this node when the caller gave a caption or the gallery had one."""

from __future__ import annotations

import hashlib
from typing import Any

from langgraph.runtime import Runtime

from cirgraph.agents.context import PipelineConfig
from cirgraph.agents.nodes._trace import degraded, traced
from cirgraph.agents.query import reference_image
from cirgraph.agents.services import Services
from cirgraph.agents.state import PipelineState
from cirgraph.errors import ModelError
from cirgraph.prompts.loader import render

NAMESPACE = "caption"
FALLBACK = "no caption: the modification text alone"


def cache_key(image_hash: str, model: str, prompt_sha: str) -> str:
    return hashlib.sha256(f"{image_hash}\0{model}\0{prompt_sha}".encode()).hexdigest()


@traced("caption_reference")
async def caption_reference(state: PipelineState, runtime: Runtime[PipelineConfig], *,
                            services: Services) -> dict[str, Any]:
    """Caption the reference; on any failure, no caption (downstream then works from the modification alone)."""
    prompt = render("caption", runtime.context.caption_prompt)
    image = reference_image(state["reference"])
    if services.vlm is None or image is None:
        why = "no vision model was given" if services.vlm is None else "the reference image is not readable here"
        return {"caption": None, "caption_source": "none", "degraded": [degraded("caption_reference", why, FALLBACK)]}
    key = cache_key(state["reference"]["hash"], services.vlm.name, prompt.sha)
    update: dict[str, Any] = {"prompts": {"caption": prompt.ref()}}
    cached = services.caption_cache.get_json(NAMESPACE, key)
    if cached:
        return {**update, "caption": cached, "caption_source": "cache"}
    try:
        reply = await services.vlm.complete(prompt.messages(image), max_tokens=prompt.max_tokens)
    except ModelError as exc:
        return {**update, "caption": None, "caption_source": "none",
                "degraded": [degraded("caption_reference", exc, FALLBACK)]}
    caption = " ".join(str(reply).split())
    if not caption:
        return {**update, "caption": None, "caption_source": "none",
                "degraded": [degraded("caption_reference", "the vision model returned an empty caption", FALLBACK)]}
    services.caption_cache.put_json(NAMESPACE, key, caption)
    return {**update, "caption": caption, "caption_source": "model"}
