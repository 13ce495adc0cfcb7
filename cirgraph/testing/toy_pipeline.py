"""Scripted models for the whole pipeline over the toy gallery (cirgraph.testing.memory_gallery), so tests of
the SDK, the CLI, the chat assistant and the eval runner can run real searches without a model.

    gallery, embedder, text_embedder = build_toy_gallery(tmp_path)
    llm, vlm = toy_models(gallery, embedder, good={"red-dress"})
    retriever = Retriever(gallery=gallery, llm=llm, vlm=vlm, embedder=embedder, text_embedder=text_embedder)

Each stage's prompt is recognised by the JSON shape it asks for; rerank answers make every proposition hold for
the candidates in `good` and fail for the others (identified by image fingerprint, or by caption text).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from cirgraph.testing.fake_chat import ScriptedChatModel
from cirgraph.tools.images import image_fingerprint

CAPTION_KEY = "describing a photograph"
CAPTION_BRIEF_KEY = "Describe this image in one sentence"
RECOMPOSE_KEY = '{"edits"'
DECOMPOSE_KEY = '{"propositions"'
RERANK_KEY = '{"answers"'
REFLECT_KEY = '{"diagnosis"'

DEFAULT_PROPOSITIONS = (
    ("the dress is red", "must_show", "Is the dress red?"),
    ("a blue dress", "must_not_show", "Is the dress blue?"),
)


def propositions_reply(props: Sequence[tuple[str, str, str]] = DEFAULT_PROPOSITIONS) -> dict:
    return {"propositions": [{"text": t, "polarity": p, "question": q} for t, p, q in props]}


def recompose_reply(descriptions: Sequence[str], edits: Sequence[str] = ()) -> dict:
    return {"edits": list(edits), "descriptions": list(descriptions)}


def verdict_rule(gallery: Any, embedder: Any, good: Collection[str], polarities: Sequence[str],
                 confidence: float = 0.9) -> Any:
    """A rerank reply: all propositions hold for candidates in `good`, all fail for the others. The candidate is
    the last image of the request (matched by fingerprint) or, without one, the caption quoted in the prompt."""
    fp_to_id = {fp: item_id for item_id, caps in gallery.captions.items() for fp, words in
                embedder.image_words.items() if caps and words == caps[0]}

    def reply(messages: Sequence[Any], schema: Any) -> dict:
        images = [img for m in messages for img in m.images]
        text = "\n".join(m.text for m in messages)
        if images:
            item = fp_to_id.get(image_fingerprint(images[-1]))
        else:
            item = next((i for i, caps in gallery.captions.items() if caps and f'"{caps[0]}"' in text), None)
        ok = item in good
        answers = [{"index": n, "answer": "yes" if (pol == "must_show") == ok else "no", "confidence": confidence}
                   for n, pol in enumerate(polarities, 1)]
        return {"answers": answers}

    return reply


def toy_models(gallery: Any, embedder: Any, *, good: Collection[str] = ("red-dress",),
               caption: str = "a blue dress on a hanger",
               descriptions: Sequence[str] = ("a red dress", "a red dress on a hanger"),
               propositions: Sequence[tuple[str, str, str]] = DEFAULT_PROPOSITIONS,
               revision: Sequence[str] = ("a bright red dress",), delay_s: float = 0.0,
               overrides: dict[str, Any] | None = None) -> tuple[ScriptedChatModel, ScriptedChatModel]:
    """(llm, vlm) answering every stage of the pipeline. `overrides` replaces a stage's reply by key (e.g.
    {RECOMPOSE_KEY: ModelOutputError(...)}) in both models."""
    rerank = verdict_rule(gallery, embedder, good, [p for _, p, _ in propositions] or ["must_show"])
    rules: dict[str, Any] = {
        RECOMPOSE_KEY: recompose_reply(descriptions, ["blue -> red"]),
        DECOMPOSE_KEY: propositions_reply(propositions),
        RERANK_KEY: rerank,
        REFLECT_KEY: {"diagnosis": "the colour was stated too weakly", "descriptions": list(revision)},
        CAPTION_KEY: caption,
        CAPTION_BRIEF_KEY: caption,
    }
    rules.update(overrides or {})
    llm = ScriptedChatModel(dict(rules), name="toy-llm", delay_s=delay_s)
    vlm = ScriptedChatModel(dict(rules), name="toy-vlm", delay_s=delay_s)
    return llm, vlm
