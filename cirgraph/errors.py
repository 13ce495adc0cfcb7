"""Typed exceptions of the SDK. Every message names the input and the reason."""

from __future__ import annotations


class CirgraphError(Exception):
    """Base class of every error cirgraph raises on purpose."""


class ConfigError(CirgraphError):
    """A setting is missing or inconsistent."""


class InputError(CirgraphError, ValueError):
    """Bad user input: an image that cannot be read, empty or oversized text, an unknown name."""

    def __init__(self, subject: str, reason: str) -> None:
        self.subject = subject
        self.reason = reason
        super().__init__(f"{subject}: {reason}")


class ImageError(InputError):
    """An image file or buffer that cannot be used (not an image, corrupt, truncated, too many pixels)."""


class ModelError(CirgraphError):
    """A model call failed after its retries; the message says what the server returned."""

    def __init__(self, model: str, reason: str) -> None:
        self.model = model
        self.reason = reason
        super().__init__(f"model {model!r}: {reason}")


class ModelOutputError(ModelError):
    """The model answered, but not with valid structured output, after every retry and fallback."""

    def __init__(self, model: str, reason: str, raw: str | None = None) -> None:
        self.raw = raw
        super().__init__(model, reason)


class ModelNotFoundError(CirgraphError):
    """Weights or a processor could not be found locally or on the hub. `hint` says what to do for the model's role
    (the setting that points to it, what runs without it); without one the message names every model setting."""

    def __init__(self, model: str, reason: str, hint: str | None = None) -> None:
        self.model, self.reason, self.hint = model, reason, hint
        super().__init__(
            f"model {model!r} could not be loaded: {reason}. " + (hint or
            "Download it once on a machine with access to the Hugging Face hub (e.g. `huggingface-cli download "
            "MODEL --local-dir DIR`) and point cirgraph to the folder (CIRGRAPH_EMBEDDER / CIRGRAPH_TEXT_EMBEDDER / "
            "CIRGRAPH_LLM_MODEL / CIRGRAPH_VLM_MODEL=DIR).")
        )

    def with_hint(self, hint: str) -> ModelNotFoundError:
        """The same error with the advice for the model's role."""
        return ModelNotFoundError(self.model, self.reason, hint)


class GalleryError(CirgraphError):
    """The gallery store is unreachable, missing, or inconsistent with the request."""
