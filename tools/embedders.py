"""Model reference -> embedder: a Hugging Face id or local folder (CLIP/SigLIP, sentence encoders), or `hash[:DIM]`
for the weightless hash embedders. Galleries and their Chroma embedding functions rebuild embedders from the
reference they recorded, through these two functions; heavy packages load only when a model is built."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cirgraph.tools.model_hints import with_hint

if TYPE_CHECKING:
    from cirgraph.tools.protocols import ImageTextEmbedder, TextEmbedder


def _is_hash(ref: str) -> bool:
    return ref == "hash" or ref.startswith(("hash:", "hash?"))


def load_image_text_embedder(ref: str, *, device: str = "cpu", batch_size: int = 32,
                             offline: bool = False) -> ImageTextEmbedder:
    """An image-text embedder (CLIP/SigLIP) from a reference; ModelNotFoundError when it cannot be loaded."""
    if _is_hash(ref):
        from cirgraph.tools.hash_embedders import hash_embedder

        return hash_embedder(ref, images=True)
    from cirgraph.tools.hf_embedders import HFImageTextEmbedder
    from cirgraph.tools.hf_loading import check_loadable

    with_hint("embedder", lambda: check_loadable(ref, offline=offline))  # before torch is imported
    return with_hint("embedder", lambda: HFImageTextEmbedder(ref, device=device, batch_size=batch_size,
                                                             offline=offline))


def load_text_embedder(ref: str, *, device: str = "cpu", batch_size: int = 64, offline: bool = False) -> TextEmbedder:
    """A caption text embedder from a reference; ModelNotFoundError when it cannot be loaded.

    On the CPU a local BERT sentence encoder (the default all-MiniLM-L6-v2 among them) runs on numpy for a few texts
    at a time, the same vectors without importing torch and transformers (seconds at every start of a search);
    large batches still go to transformers, loaded when first needed."""
    if _is_hash(ref):
        from cirgraph.tools.hash_embedders import hash_embedder

        return hash_embedder(ref, images=False)

    def transformers_embedder() -> TextEmbedder:
        from cirgraph.tools.hf_embedders import HFTextEmbedder

        return HFTextEmbedder(ref, device=device, batch_size=batch_size, offline=offline)

    def build() -> TextEmbedder:
        if device == "cpu":
            from cirgraph.tools.bert_numpy import NumpyBertEmbedder, qualifies
            from cirgraph.tools.hf_loading import check_loadable

            source = check_loadable(ref, offline=offline)
            if source.local and qualifies(source.location):
                return NumpyBertEmbedder(ref, source.location, bulk=transformers_embedder)
        return transformers_embedder()

    return with_hint("text_embedder", build)
