"""The numpy BERT encoder gives the transformers embedder's vectors, without importing torch or transformers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cirgraph.errors import InputError
from cirgraph.tools.embedders import load_text_embedder
from cirgraph.testing.tiny_models import build_tiny_text_encoder
from cirgraph.tools import bert_numpy
from cirgraph.tools.bert_numpy import NumpyBertEmbedder, qualifies
from cirgraph.tools.hf_embedders import HFTextEmbedder

TEXTS = ["a red dress", "", "the same jacket in green without the hood", " ".join(["red dress"] * 40)]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_text_encoder(tmp_path_factory.mktemp("tiny-numpy") / "bert")


def test_the_tiny_encoder_qualifies_and_a_folder_without_a_fast_tokenizer_does_not(bert_dir: Path,
                                                                                     tmp_path: Path) -> None:
    assert qualifies(bert_dir)
    copy = shutil.copytree(bert_dir, tmp_path / "copy")
    (copy / "tokenizer.json").unlink()
    assert not qualifies(copy)
    config = json.loads((bert_dir / "config.json").read_text())
    (copy / "tokenizer.json").write_text((bert_dir / "tokenizer.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "position_embedding_type": "relative_key"}))
    assert not qualifies(copy)


def test_vectors_match_the_transformers_embedder(bert_dir: Path) -> None:
    light = NumpyBertEmbedder("tiny", bert_dir).embed_texts(TEXTS)
    heavy = HFTextEmbedder(str(bert_dir)).embed_texts(TEXTS)
    assert light.shape == heavy.shape == (len(TEXTS), 32) and light.dtype == np.float32
    np.testing.assert_allclose(light, heavy, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(light, axis=1), 1.0, atol=1e-5)


def test_the_factory_uses_it_on_cpu_and_hands_large_batches_to_transformers(
    bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder = load_text_embedder(str(bert_dir))
    assert isinstance(embedder, NumpyBertEmbedder) and embedder.name == str(bert_dir) and embedder.dim == 32
    monkeypatch.setattr(bert_numpy, "BULK_TEXTS", 2)
    many = embedder.embed_texts(TEXTS)
    assert isinstance(embedder._bulk, HFTextEmbedder)
    np.testing.assert_allclose(many, NumpyBertEmbedder("tiny", bert_dir).embed_texts(TEXTS), atol=1e-5)
    assert embedder.embed_texts([]).shape == (0, 32)
    with pytest.raises(InputError, match="single string"):
        embedder.embed_texts("a red dress")


def test_embedding_a_query_imports_neither_torch_nor_transformers(bert_dir: Path) -> None:
    code = ("import sys; from cirgraph.tools.embedders import load_text_embedder; "
            f"v = load_text_embedder({str(bert_dir)!r}).embed_texts(['a red dress']); "
            "print(v.shape, sorted({'torch', 'transformers'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "(1, 32) []"


def test_products_run_on_one_blas_thread_and_without_threadpoolctl_give_the_same_vectors(
    bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from threadpoolctl import threadpool_info

    seen: list[int] = []
    real = NumpyBertEmbedder._embed_one

    def spy(self, text):  # the BLAS thread count while a text is embedded
        seen.extend(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")
        return real(self, text)

    monkeypatch.setattr(NumpyBertEmbedder, "_embed_one", spy)
    limited = NumpyBertEmbedder("tiny", bert_dir).embed_texts(TEXTS)
    assert seen and set(seen) == {1}
    # an environment installed before threadpoolctl became a dependency: BLAS keeps its own threads, same vectors
    monkeypatch.setattr(bert_numpy, "_blas", None)
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # import fails
    plain = NumpyBertEmbedder("tiny", bert_dir).embed_texts(TEXTS)
    assert bert_numpy._blas is False
    np.testing.assert_allclose(plain, limited, atol=1e-6)
