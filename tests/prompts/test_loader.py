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
