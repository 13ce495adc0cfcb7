"""Model reference -> embedder: the weightless `hash:` embedders (a model kind galleries record by name)."""

from __future__ import annotations

import pytest

from cirgraph.errors import InputError
from cirgraph.tools.embedders import load_image_text_embedder, load_text_embedder


def test_hash_references_build_the_test_embedders() -> None:
    image = load_image_text_embedder("hash:12")
    assert (image.name, image.dim, image.embed_images([]).shape) == ("hash:12", 12, (0, 12))
    slow = load_text_embedder("hash:8?delay=0.01")
    assert (slow.name, slow.dim, slow.delay_s) == ("hash:8?delay=0.01", 8, 0.01)
    with pytest.raises(InputError, match=r"model reference 'hash:x'"):
        load_text_embedder("hash:x")
