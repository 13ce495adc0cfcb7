"""Settings, read from the environment (prefix CIRGRAPH_) and an optional .env file.

Read only at the edges (CLI, SDK constructors); pipeline code receives plain values and live clients.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_EMBEDDER = "openai/clip-vit-base-patch32"
DEFAULT_TEXT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_LOCAL_LLM = "Qwen/Qwen2.5-0.5B-Instruct"
DEFAULT_LOCAL_VLM = "HuggingFaceTB/SmolVLM-256M-Instruct"


def default_home() -> Path:
    """The user's data dir for cirgraph (e.g. ~/.local/share/cirgraph on Linux)."""
    from platformdirs import user_data_path

    return user_data_path("cirgraph", appauthor=False)


class Settings(BaseSettings):
    """Every knob that comes from the environment. Unset LLM endpoint = in-process transformers model."""

    model_config = SettingsConfigDict(
        env_prefix="CIRGRAPH_", env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    home: Path = Field(default_factory=default_home, description="Where galleries, caches and checkpoints live.")
    embedder: str | None = Field(
        DEFAULT_EMBEDDER,
        description="Image-text embedder (CLIP/SigLIP): a Hugging Face id or a local folder. Empty = caption-only.",
    )
    text_embedder: str = Field(
        DEFAULT_TEXT_EMBEDDER, description="Caption text embedder: a Hugging Face id or a local folder."
    )
    llm_base_url: str | None = Field(None, description="OpenAI-compatible endpoint of the text LLM.")
    llm_api_key: SecretStr | None = Field(None, description="API key of the text LLM endpoint.")
    llm_model: str | None = Field(
        None, description="Model name at the endpoint, or an HF id/local folder for the in-process model."
    )
    vlm_base_url: str | None = Field(None, description="OpenAI-compatible endpoint of the vision model.")
    vlm_api_key: SecretStr | None = Field(None, description="API key of the vision endpoint.")
    vlm_model: str | None = Field(None, description="Vision model name; defaults to the LLM's.")
    chroma_host: str | None = Field(None, description="Chroma server host; unset = embedded store under home.")
    chroma_port: int = Field(8000, ge=1, le=65535, description="Chroma server port.")
    device: str = Field("cpu", description="torch device for in-process models.")
    offline: bool = Field(False, description="Never contact the model hub (also implied by HF_HUB_OFFLINE=1).")
    max_image_pixels: int = Field(
        64_000_000, ge=1, description="Images with more pixels are rejected (decompression-bomb guard)."
    )
    image_max_side: int = Field(768, ge=32, description="Images sent to a vision model are downscaled to this side.")
    request_timeout: float = Field(60.0, gt=0, description="Seconds per model request.")
    max_retries: int = Field(4, ge=1, description="Attempts per model request before giving up.")
    max_concurrency: int = Field(8, ge=1, description="Concurrent requests per model endpoint.")

    @field_validator("embedder", "llm_base_url", "llm_model", "vlm_base_url", "vlm_model", "chroma_host", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @model_validator(mode="after")
    def _vision_defaults_to_llm(self) -> Settings:
        # The vision model defaults to the LLM's endpoint and model: one multimodal server serves both.
        if self.vlm_base_url is None and self.llm_base_url is not None:
            object.__setattr__(self, "vlm_base_url", self.llm_base_url)
            if self.vlm_api_key is None:
                object.__setattr__(self, "vlm_api_key", self.llm_api_key)
            if self.vlm_model is None:
                object.__setattr__(self, "vlm_model", self.llm_model)
        return self

    @property
    def galleries_dir(self) -> Path:
        return self.home / "galleries"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def checkpoints_path(self) -> Path:
        return self.home / "checkpoints.sqlite"

    @property
    def uses_chroma_server(self) -> bool:
        return self.chroma_host is not None

    @property
    def has_llm(self) -> bool:
        """An LLM is configured: an endpoint, or a model (a local folder) to run in process. Without one, the
        default preset is one that calls no LLM (cirgraph.agents.presets.default_preset)."""
        return self.llm_base_url is not None or self.llm_model is not None

    def default_preset(self) -> tuple[Any, str]:
        """The configuration used when none is asked for, and why: the configured models' profile (written by
        `cirgraph eval calibrate`) as a PipelineConfig, else the name of the default preset for them."""
        from cirgraph.agents.presets import default_preset
        from cirgraph.profiles import load_profile

        found = load_profile(self)
        if found is not None:
            profile, path = found
            return profile.config(), profile.reason(path)
        return default_preset(has_llm=self.has_llm)
