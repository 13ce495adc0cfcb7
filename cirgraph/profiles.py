"""Profiles: the configuration measured to be best for the models a user has, used when no preset is asked for.

`cirgraph eval calibrate` runs candidate presets on a slice of a benchmark with the configured models and writes
the winner (by the benchmark's main score) as a profile under CIRGRAPH_HOME/profiles/, keyed by those models: the
LLM (endpoint and name), the vision model and the embedders. `search`, `chat`, `ui`, the SDK's `from_settings` and
`eval` then use it unless told otherwise; the profile says what it was measured on. Without one the default is
cirgraph.agents.presets.default_preset.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cirgraph.errors import ConfigError

if TYPE_CHECKING:
    from cirgraph.agents.context import PipelineConfig
    from cirgraph.settings import Settings

PROFILE_VERSION = 1


class Profile(BaseModel):
    """A measured choice of configuration for one set of models."""

    model_config = ConfigDict(extra="forbid")

    version: int = PROFILE_VERSION
    preset: str = Field(description="The chosen preset.")
    overrides: dict[str, Any] = Field(default_factory=dict, description="PipelineConfig settings on top of it.")
    models: dict[str, str | None] = Field(description="The models it was measured with (the profile's key).")
    measured_on: dict[str, Any] = Field(description="Benchmark, split, mode, queries (offset, limit, count).")
    criterion: str = Field(description="The metric the candidates were ranked by (the benchmark's main score).")
    candidates: list[dict[str, Any]] = Field(description="Every candidate's label, metrics and cost per query.")
    created: str = Field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))

    def config(self) -> PipelineConfig:
        from cirgraph.agents.presets import preset

        return preset(self.preset, **self.overrides, preset=self.label) if self.overrides else preset(self.preset)

    @property
    def label(self) -> str:
        return "+".join([self.preset, *(f"{k}={v}" for k, v in sorted(self.overrides.items()))])

    def reason(self, path: Path) -> str:
        m = self.measured_on
        return (f"profile {path.name}: best {self.criterion} of {len(self.candidates)} candidates on "
                f"{m.get('benchmark')} {m.get('split')} ({m.get('queries')} queries)")


def model_key(settings: Settings) -> dict[str, str | None]:
    """The models a profile belongs to, as the settings name them."""
    return {"llm": settings.llm_model or (settings.llm_base_url and "endpoint-default"),
            "llm_base_url": settings.llm_base_url, "vlm": settings.vlm_model, "embedder": settings.embedder,
            "text_embedder": settings.text_embedder}


def profile_path(settings: Settings) -> Path:
    """CIRGRAPH_HOME/profiles/<llm>-<hash of every model>.json."""
    from cirgraph.tools.cache import hash_key

    key = model_key(settings)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", (key["llm"] or "no-llm").rsplit("/", 1)[-1])[:60]
    return settings.home / "profiles" / f"{stem}-{hash_key(key)[:10]}.json"


def load_profile(settings: Settings) -> tuple[Profile, Path] | None:
    """The profile of the configured models, if calibrate wrote one; ConfigError for an unreadable one."""
    path = profile_path(settings)
    if not path.is_file():
        return None
    try:
        profile = Profile.model_validate_json(path.read_text(encoding="utf-8"))
        profile.config()  # a preset or setting this version no longer knows fails here, naming the file
    except (ValidationError, ValueError, ConfigError) as exc:
        raise ConfigError(f"profile {path}: unusable ({str(exc).splitlines()[0]}); run `cirgraph eval calibrate` "
                          "again or delete it") from None
    return profile, path


def save_profile(settings: Settings, profile: Profile) -> Path:
    from cirgraph.evals.records import write_atomic

    return write_atomic(profile_path(settings), json.dumps(profile.model_dump(), indent=2) + "\n")
