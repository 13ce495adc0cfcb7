"""Our Chroma embedding functions: registered, rebuilt from config without loading, images as Chroma passes them."""

from __future__ import annotations

import numpy as np
import pytest
from chromadb.utils.embedding_functions import known_embedding_functions

from cirgraph.errors import GalleryError, InputError
from cirgraph.tools.embedders import load_image_text_embedder
from cirgraph.stores.embedding_function import (ImageTextEmbeddingFunction, NoEmbeddingFunction, SafeImageLoader,
                                                TextEmbeddingFunction, array_to_image)


def test_functions_are_registered_under_their_names() -> None:
    for cls in (ImageTextEmbeddingFunction, TextEmbeddingFunction, NoEmbeddingFunction):
        assert known_embedding_functions[cls.name()] is cls


def test_config_round_trip_loads_the_model_only_when_used(monkeypatch) -> None:
    loads = []
    real = load_image_text_embedder
    monkeypatch.setattr("cirgraph.tools.embedders.load_image_text_embedder",
                        lambda ref, device="cpu": loads.append(ref) or real(ref, device=device))
    ef = ImageTextEmbeddingFunction.build_from_config({"model": "hash:24", "device": "cpu"})
    assert ef.get_config() == {"model": "hash:24", "device": "cpu"} and not ef.is_legacy()
    assert loads == []  # Chroma rebuilds the function on every configuration read: that must stay cheap
    vectors = ef(["a red dress", np.zeros((8, 8, 3), dtype=np.uint8), "a blue car"])
    assert loads == ["hash:24"] and len(vectors) == 3 and vectors[0].shape == (24,)
    np.testing.assert_allclose(vectors[2], real("hash:24").embed_texts(["a blue car"])[0], atol=1e-6)
    ef(["again"])
    assert loads == ["hash:24"]
    assert ef.default_space() == "cosine" and ef.supported_spaces() == ["cosine"]


def test_a_live_embedder_is_used_as_is() -> None:
    embedder = load_image_text_embedder("hash:16")
    ef = ImageTextEmbeddingFunction("hash:16", embedder=embedder)
    assert ef.embedder is embedder and ef.model == "hash:16"
    text = TextEmbeddingFunction("hash:16", embedder=embedder)
    np.testing.assert_allclose(text(["x y"])[0], embedder.embed_texts(["x y"])[0])
    with pytest.raises(InputError, match="texts only"):
        text([np.zeros((4, 4, 3), dtype=np.uint8)])


@pytest.mark.parametrize("array", [
    np.full((6, 5), 40000, dtype=np.uint16),  # 16-bit grey, as ImageLoader gives a 16-bit PNG
    np.zeros((6, 5, 4), dtype=np.uint8),  # RGBA
    np.ones((6, 5, 1), dtype=np.float64) * 0.5,
    np.zeros((6, 5), dtype=bool),
])
def test_numpy_images_in_any_depth_become_rgb(array) -> None:
    img = array_to_image(array)
    assert (img.mode, img.size) == ("RGB", (5, 6))


def test_bad_arrays_and_no_embedding_function_refuse() -> None:
    with pytest.raises(InputError, match=r"shape \(2, 2, 2\)"):
        array_to_image(np.zeros((2, 2, 2)))
    with pytest.raises(GalleryError, match="explicit embeddings only"):
        NoEmbeddingFunction()(["text"])
    with pytest.raises(InputError, match="model reference"):
        ImageTextEmbeddingFunction("")


def test_safe_image_loader_normalises_and_caps_pixels(tmp_path) -> None:
    from PIL import Image

    Image.new("LA", (30, 20), (128, 0)).save(tmp_path / "a.png")
    arrays = SafeImageLoader()([str(tmp_path / "a.png")])
    assert arrays[0].shape == (20, 30, 3) and int(arrays[0][0, 0, 0]) == 255  # transparent -> white
    from cirgraph.errors import ImageError

    with pytest.raises(ImageError, match="pixel cap"):
        SafeImageLoader(max_pixels=100)([str(tmp_path / "a.png")])
