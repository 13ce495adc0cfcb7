"""PipelineConfig validation and the named presets."""

from __future__ import annotations

import dataclasses

import pytest

from cirgraph.agents.context import PipelineConfig
from cirgraph.agents.presets import PRESETS, preset
from cirgraph.errors import ConfigError, InputError


def test_config_is_frozen_and_keyword_only() -> None:
    cfg = PipelineConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.k = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        PipelineConfig(5)  # type: ignore[misc]
    assert all(f.metadata.get("description") for f in dataclasses.fields(PipelineConfig))


@pytest.mark.parametrize(("changes", "message"), [
    ({"k": 0}, "k=0"),
    ({"n_descriptions": 9}, "n_descriptions=9"),
    ({"w_reference": -0.1}, "w_reference"),
    ({"w_text_image": 0, "w_text_caption": 0, "w_modification": 0, "w_reference": 0,
      "w_propositions": 0}, "at least one fusion weight"),
    ({"stop_threshold": 1.5}, "stop_threshold"),
    ({"rerank": False}, "reflect=True needs rerank"),
    ({"recompose": False, "review": True, "reflect": False}, "review=True needs recompose"),
    ({"recompose_prompt": "poetic"}, "recompose_prompt='poetic'"),
    ({"baseline_text": "both"}, "baseline_text"),
    ({"fallback_text": "nothing"}, "fallback_text"),
])
def test_bad_settings_name_the_setting(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        PipelineConfig(**changes)


def test_with_rejects_unknown_settings() -> None:
    with pytest.raises(ConfigError, match="unknown setting"):
        PipelineConfig().with_(kk=3)
    assert PipelineConfig().with_(k=3).k == 3


def test_every_requested_preset_exists_and_names_itself() -> None:
    assert set(PRESETS) == {"modification-only", "caption-only", "caption+modification", "modification+reference",
                            "cirevl", "anchored",
                            "multi-description", "propositions", "rerank", "reflect", "small-model",
                            "small-model+rerank"}
    assert all(cfg.preset == name for name, cfg in PRESETS.items())


def test_presets_switch_stages_on_one_at_a_time() -> None:
    stages = ("caption", "recompose", "decompose", "rerank", "reflect")
    on = {name: tuple(s for s in stages if getattr(PRESETS[name], s)) for name in PRESETS}
    assert on["modification-only"] == on["modification+reference"] == ()
    assert on["caption-only"] == on["caption+modification"] == ("caption",)
    assert on["cirevl"] == on["anchored"] == on["multi-description"] == ("caption", "recompose")
    assert on["propositions"] == ("caption", "recompose", "decompose")
    assert on["rerank"] == ("caption", "recompose", "decompose", "rerank")
    assert on["reflect"] == stages
    assert on["small-model"] == ("caption", "recompose")
    assert on["small-model+rerank"] == ("caption", "recompose", "rerank")


def test_cirevl_is_text_to_image_with_one_plain_description() -> None:
    c = PRESETS["cirevl"]
    assert (c.n_descriptions, c.recompose_prompt) == (1, "plain")
    assert c.weights == {"text_image": 1.0, "text_caption": 0.0, "modification": 0.0, "reference": 0.0,
                         "propositions": 0.0}


def test_anchored_is_cirevl_plus_the_modification_text_and_nothing_else() -> None:
    cirevl, anchored = PRESETS["cirevl"], PRESETS["anchored"]
    assert anchored.w_modification > 0
    assert anchored.with_(w_modification=0.0, preset="cirevl") == cirevl
    assert all(PRESETS[n].w_modification == 0 for n in ("modification-only", "caption-only", "caption+modification"))


def test_preset_lookup_and_overrides() -> None:
    assert preset("rerank", k=3).k == 3
    with pytest.raises(InputError, match="unknown; choose one of"):
        preset("everything")
