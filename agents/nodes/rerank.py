"""rerank: a model checks the top candidates against the propositions, and the verdicts are fused with the
retrieval scores (cirgraph.agents.fusion.rerank_scores).

Each candidate is one call answering every proposition's yes/no question: the vision model looks at the candidate
image (beside the reference when configured: a pairwise judgement); a candidate without a readable image is judged
on its captions by the LLM (caption-only galleries). A "yes_no" template (the small-model variant) asks one closed
question about the whole target instead, and scores it as P(yes) from the answer's log-probabilities. Calls run
concurrently; the model client bounds how many are in flight. Verdicts are kept by (candidate, propositions), so a
later round re-checks only new candidates.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime

from cirgraph.agents.context import PipelineConfig
from cirgraph.agents.fusion import holds, rerank_scores, verdict_score
from cirgraph.agents.nodes._trace import degraded, traced
from cirgraph.agents.query import reference_image
from cirgraph.agents.schemas import Verdicts
from cirgraph.agents.services import Services
from cirgraph.agents.state import PipelineState
from cirgraph.agents.texts import target_text
from cirgraph.agents.verdicts import checks, propositions_key, verdict_key
from cirgraph.errors import CirgraphError, ModelError
from cirgraph.prompts.loader import Rendered, render
from cirgraph.tools.choices import YES_NO, classify
from cirgraph.tools.messages import Message


@traced("rerank")
async def rerank(state: PipelineState, runtime: Runtime[PipelineConfig], *, services: Services) -> dict[str, Any]:
    """Verify the head of the ranking and reorder it; on total failure keep the retrieval order."""
    ctx, hits = runtime.context, list(state.get("hits") or [])
    if not hits:
        return {}
    props, head = checks(state), hits[: ctx.rerank_depth]
    pkey, known = propositions_key(props), state.get("verdicts") or {}
    todo = [h for h in head if verdict_key(h["id"], pkey) not in known]
    reference = reference_image(state["reference"]) if ctx.rerank_with_reference else None
    target = target_text(state)
    rendered: dict[str, Rendered] = {}
    results = await asyncio.gather(*(_judge(services, ctx, h, props, target, reference, rendered) for h in todo))
    new = {verdict_key(h["id"], pkey): v for h, v in zip(todo, results, strict=True)}
    verdicts = {**known, **new}
    update: dict[str, Any] = {"verdicts": new}
    if rendered:
        update["prompts"] = {"rerank": next(iter(rendered.values())).ref()}
    failed = [v for v in new.values() if v["score"] is None]
    if failed and all(verdicts[verdict_key(h["id"], pkey)]["score"] is None for h in head):
        return {**update, "degraded": [degraded("rerank", failed[0]["error"], "retrieval order")]}
    if failed:
        update["degraded"] = [degraded("rerank", f"{len(failed)} of {len(todo)} checks failed; first: "
                                                f"{failed[0]['error']}", "neutral verdict for those candidates")]
    values = [verdicts[verdict_key(h["id"], pkey)]["score"] for h in head]
    scores = rerank_scores([h["retrieval_score"] for h in hits], values, ctx.rerank_weight)
    scored = [{**h, "score": s, "verdict": values[i] if i < len(head) else None}
              for i, (h, s) in enumerate(zip(hits, scores, strict=True))]
    ranked = sorted(scored[: len(head)], key=lambda h: -h["score"]) + scored[len(head):]
    return {**update, "hits": ranked}


async def _judge(services: Services, ctx: PipelineConfig, hit: dict, props: list[dict], target: str,
                 reference: Any, rendered: dict[str, Rendered]) -> dict[str, Any]:
    """One candidate's verdict: {"score", "mode", "model", "answers"} or {"score": None, "error"}."""
    image, why = None, ""
    if services.vlm is not None and hit.get("uri"):
        try:
            image = await asyncio.to_thread(services.image_loader, hit["uri"])
        except CirgraphError as exc:
            why = f"candidate image unreadable ({exc}); "
    model = services.vlm if image is not None else services.llm or (services.vlm if hit["captions"] else None)
    if model is None or (image is None and not hit["captions"]):
        return {"score": None, "error": f"{hit['id']}: {why}no readable image and no captions to check", "mode": None}
    mode = "image" if image is not None else "caption"
    pairwise = mode == "image" and reference is not None
    prompt = render("rerank", ctx.rerank_prompt, mode=mode, with_reference=pairwise, captions=hit["captions"],
                    target=target, questions=[{"index": i, "question": p["question"]} for i, p in enumerate(props, 1)])
    rendered[mode] = prompt
    images = [*([reference] if pairwise else []), *([image] if image is not None else [])]
    if prompt.output == "yes_no":
        return await _judge_at_once(model, prompt.messages(*images), hit, target, mode)
    try:
        out = await model.complete(prompt.messages(*images), schema=Verdicts, max_tokens=prompt.max_tokens)
    except ModelError as exc:
        return {"score": None, "error": f"{hit['id']}: {exc}", "mode": mode, "model": model.name}
    answers = {a.index: (a.answer, a.confidence) for a in out.answers if 1 <= a.index <= len(props)}
    polarities = [p["polarity"] for p in props]
    detail = [{"index": i, "text": p["text"], "polarity": p["polarity"], "answer": answers[i][0],
               "confidence": answers[i][1], "holds": round(holds(*answers[i], p["polarity"]), 4)}
              for i, p in enumerate(props, 1) if i in answers]
    return {"score": verdict_score(answers, polarities), "mode": mode, "model": model.name, "answers": detail}


async def _judge_at_once(model: Any, messages: list[Message], hit: dict, target: str, mode: str) -> dict[str, Any]:
    """One closed question for the whole target: the verdict is P(yes), read from the answer token's
    log-probabilities where the endpoint gives them (a continuous score that can reorder), else 0 or 1."""
    try:
        choice = await classify(model, messages, YES_NO)
    except ModelError as exc:
        return {"score": None, "error": f"{hit['id']}: {exc}", "mode": mode, "model": model.name}
    p = round(choice.p("yes"), 6)
    return {"score": p, "mode": mode, "model": model.name, "source": choice.source,
            "answers": [{"index": 1, "text": target, "polarity": "must_show", "answer": choice.answer,
                         "confidence": round(abs(2 * p - 1), 6), "holds": p}]}
