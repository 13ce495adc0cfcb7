"""Prompt templates: addressed by stage and variant, rendered strictly, reporting name and content hash."""

from __future__ import annotations

import hashlib

import pytest

from cirgraph.errors import InputError
from cirgraph.prompts import loader


def test_stages_and_variants_ship_as_package_data() -> None:
    assert {"caption", "recompose", "decompose", "rerank", "reflect"} <= set(loader.stages())
    assert {"plain", "structural", "multi"} <= set(loader.variants("recompose"))


def test_render_reports_name_and_hash_of_the_template_source() -> None:
    out = loader.render("recompose", "plain", caption="a blue dress", modification="make it red", n=1)
    assert out.name == "recompose/plain"
    assert out.sha == hashlib.sha256(loader.source("recompose", "plain").encode()).hexdigest()[:12]
    assert out.ref() == {"template": "recompose/plain", "sha": out.sha}
    assert '"a blue dress"' in out.text and '"make it red"' in out.text
    assert "{{" not in out.text and "{#" not in out.text


def test_variants_differ_and_so_do_their_hashes() -> None:
    shas = {loader.template_sha("recompose", v) for v in ("plain", "structural", "multi")}
    assert len(shas) == 3


def test_n_changes_the_request() -> None:
    one = loader.render("recompose", "multi", caption="c", modification="m", n=1).text
    four = loader.render("recompose", "multi", caption="c", modification="m", n=4).text
    assert "Write 4 different captions" in four and one != four


def test_a_missing_variable_fails_loudly_naming_the_template() -> None:
    with pytest.raises(InputError, match=r"prompt recompose/plain.*missing template variable"):
        loader.render("recompose", "plain", caption="a blue dress", n=1)


def test_unknown_variant_and_stage_name_the_known_ones() -> None:
    with pytest.raises(InputError, match=r"recompose/poetic.*plain"):
        loader.render("recompose", "poetic", caption="c", modification="m", n=1)
    with pytest.raises(InputError, match="no such stage"):
        loader.variants("summarise")
    with pytest.raises(InputError, match="no such stage"):
        loader.variants("../agents")


@pytest.mark.parametrize(("stage", "variables"), [
    ("caption", {}),
    ("decompose", {"target": "a red dress", "caption": None, "modification": "make it red", "max_propositions": 4}),
    ("decompose", {"target": "a red dress", "caption": "a blue dress", "modification": "m", "max_propositions": 4}),
    ("rerank", {"mode": "image", "with_reference": True, "captions": [], "target": "a red dress",
                "questions": [{"index": 1, "question": "Is the dress red?"}]}),
    ("rerank", {"mode": "caption", "with_reference": False, "captions": ["a red dress"], "target": "t",
                "questions": [{"index": 1, "question": ""}]}),
    ("reflect", {"caption": "c", "modification": "m", "descriptions": ["d"], "checked": 3, "n": 1,
                 "failures": [{"text": "red", "polarity": "must_show", "question": "Is it red?", "failed": 2}]}),
])
def test_every_variant_renders_with_the_variables_its_stage_passes(stage: str, variables: dict) -> None:
    for variant in loader.variants(stage):
        text = loader.render(stage, variant, **variables).text
        assert text and "{{" not in text


def test_rerank_prompt_modes() -> None:
    q = [{"index": 1, "question": ""}]
    image = loader.render("rerank", "default", mode="image", with_reference=True, captions=[], target="t", questions=q)
    caption = loader.render("rerank", "default", mode="caption", with_reference=False, captions=["a red dress"],
                            target="t", questions=q)
    assert "reference image" in image.text and "a red dress" not in image.text
    assert '"a red dress"' in caption.text and "cannot see" in caption.text
    assert "1. Does the candidate match" in image.text  # an empty question falls back to the template's own


SMALL = {
    "recompose": {"caption": "A blue dress.", "modification": "make it red", "n": 1},
    "rerank": {"mode": "caption", "with_reference": False, "captions": ["a red dress", "on a hanger"],
               "target": "a red dress", "questions": []},
    "caption": {},
    "decompose": {"target": "a red dress", "modification": "make it red", "caption": "a blue dress",
                  "max_propositions": 4},
    "reflect": {"caption": "a blue dress", "modification": "make it red", "descriptions": ["a red dress"],
                "failures": [], "checked": 3, "n": 1},
}


@pytest.mark.parametrize("stage", sorted(SMALL))
def test_small_variants_are_chat_turns_that_declare_a_small_reply(stage: str) -> None:
    out = loader.render(stage, "small", **SMALL[stage])
    roles = [role for role, _ in out.turns]
    assert roles[-1] == "user" and all(text and "{{" not in text for _, text in out.turns)
    assert out.output in ("sentence", "yes_no", "checks") and out.max_tokens <= 96
    assert [m.role for m in out.messages()] == roles
    if stage == "reflect":  # one worked example
        assert roles == ["system", "user", "assistant", "user"]
    elif stage != "caption":  # worked examples as turns: system, then (user, assistant) pairs, then the query
        assert roles == ["system", "user", "assistant", "user", "assistant", "user"]


@pytest.mark.parametrize("stage", sorted(SMALL))
def test_small_variants_fail_loudly_on_a_missing_variable(stage: str) -> None:
    if not SMALL[stage]:
        pytest.skip("takes no variables")
    variables = dict(SMALL[stage])
    variables.pop("modification" if "modification" in variables else "target")
    with pytest.raises(InputError, match=f"prompt {stage}/small.*missing template variable"):
        loader.render(stage, "small", **variables)


def test_images_join_the_last_user_turn() -> None:
    out = loader.render("rerank", "small", mode="image", with_reference=True, captions=[], target="a red dress",
                        questions=[])
    image = object()
    messages = out.messages(image)
    assert messages[-1].parts[-1] is image and all(len(m.parts) == 1 for m in messages[:-1])
    assert "after the reference image" in messages[-1].text


def test_json_templates_are_one_user_turn_with_a_reply_cap() -> None:
    out = loader.render("recompose", "multi", caption="c", modification="m", n=3)
    assert out.turns == (("user", out.text),) and out.output == "json" and out.max_tokens == 384


def test_turn_markers_are_checked() -> None:
    with pytest.raises(InputError, match="text before the first"):
        loader._turns("x/y", "hello\n### user\nhi")
    with pytest.raises(InputError, match="last turn must be the user's"):
        loader._turns("x/y", "### user\nhi\n### assistant\nhello")
    assert loader._turns("x/y", "### system\nbe brief\n### user\nhi") == (("system", "be brief"), ("user", "hi"))


def test_worked_examples_are_not_benchmark_queries() -> None:
    from pathlib import Path

    data = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    if not data.is_dir():
        pytest.skip("../shared/data is not beside the checkout")
    texts = " ".join(p.read_text(encoding="utf-8").lower() for p in data.rglob("*.json"))
    for stage, variables in SMALL.items():
        for _role, text in loader.render(stage, "small", **variables).turns[1:-1]:
            for line in text.lower().splitlines():
                body = line.split(":", 1)[-1].strip()
                if len(body.split()) < 4:  # a one-word answer ("yes") is no example
                    continue
                assert body not in texts, f"{stage}/small example {body!r} occurs in a benchmark's annotations"
