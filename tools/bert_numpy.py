"""A BERT sentence encoder on numpy alone: the caption embedder of a search without torch or transformers.

Importing torch and transformers' model stack costs several seconds, more than a whole search on a caption gallery
takes. For the checkpoints that qualify (a BERT folder with model.safetensors and tokenizer.json, as
all-MiniLM-L6-v2 ships), this module computes the same forward pass (post-LayerNorm encoder, erf GELU, mean
pooling over the attention mask, L2 normalisation) with numpy, and matches transformers within float32 rounding
(about 1e-6). Products run on BLAS limited to one thread (threadpoolctl): on a query's few tokens a threaded BLAS
spends more time waking its threads than multiplying, many times more on a busy machine, and numpy's own einsum
loops are 2-3x slower than one BLAS thread (10 against 27 ms a CIRR modification text here, 14-20 against 40-43 ms
with both cores kept busy). Large batches (indexing) go to the transformers model, loaded on first need, which is
faster on many texts.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from cirgraph.errors import InputError

# Above this many texts in one call the transformers model takes over (loaded once, on first need).
BULK_TEXTS = 64
_NO_LIMIT = 100_000


def qualifies(folder: str | Path) -> bool:
    """True when `folder` holds a BERT encoder this module computes exactly: safetensors weights, a fast tokenizer
    file, absolute positions, erf GELU, and mean pooling (when a sentence-transformers pooling config says)."""
    path = Path(folder)
    if not ((path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()):
        return False
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        pooling = path / "1_Pooling" / "config.json"
        mean = json.loads(pooling.read_text(encoding="utf-8")).get("pooling_mode_mean_tokens", True) \
            if pooling.is_file() else True
    except (OSError, ValueError):
        return False
    return (config.get("model_type") == "bert" and config.get("hidden_act", "gelu") == "gelu"
            and config.get("position_embedding_type", "absolute") == "absolute" and bool(mean))


_blas: Any = None
_blas_lock = threading.Lock()


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """BLAS limited to one thread for the block (the process's BLAS libraries are looked up once)."""
    global _blas
    with _blas_lock:
        if _blas is None:
            try:
                from threadpoolctl import ThreadpoolController
            except ImportError:  # an environment installed before the dependency: same results, BLAS's own threads
                _blas = False
            else:
                _blas = ThreadpoolController()
    if _blas is False:
        yield
        return
    with _blas.limit(limits=1, user_api="blas"):
        yield


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to within 1.5e-7 (Abramowitz and Stegun 7.1.26), below float32 rounding of the GELU output."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


class NumpyBertEmbedder:
    """TextEmbedder on a BERT sentence encoder folder, computed with numpy; `name` is the reference it was asked by.

    `bulk` builds the equivalent transformers embedder for calls of more than BULK_TEXTS texts."""

    def __init__(self, name: str, folder: str | Path, *, bulk: Callable[[], Any] | None = None) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        path = Path(folder)
        self.name, self.folder, self._bulk_factory, self._bulk = name, path, bulk, None
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        self.dim, self._heads = int(config["hidden_size"]), int(config["num_attention_heads"])
        self._layers, self._eps = int(config["num_hidden_layers"]), float(config.get("layer_norm_eps", 1e-12))
        weights = load_file(str(path / "model.safetensors"))
        self._w = {k.removeprefix("bert."): v.astype(np.float32, copy=False) for k, v in weights.items()}
        for key in [k for k in self._w if k.startswith("encoder.") and k.endswith(".weight") and self._w[k].ndim == 2]:
            self._w[key] = np.ascontiguousarray(self._w[key].T)  # dense layers as (in, out): x @ w
        self.max_length = self._max_length(path, int(config.get("max_position_embeddings", 512)))
        self._tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.max_length)

    @staticmethod
    def _max_length(path: Path, positions: int) -> int:
        """The smallest of the model's positions, the tokenizer's model_max_length and sentence-transformers'
        max_seq_length, as the transformers embedder truncates."""
        limits = [positions]
        for file, key in (("tokenizer_config.json", "model_max_length"), ("sentence_bert_config.json",
                                                                            "max_seq_length")):
            try:
                value = json.loads((path / file).read_text(encoding="utf-8")).get(key)
            except (OSError, ValueError):
                continue
            if isinstance(value, int) and 0 < value < _NO_LIMIT:
                limits.append(value)
        return min(limits)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) L2-normalised float32 embeddings; texts longer than the model's limit are truncated."""
        if isinstance(texts, str):
            raise InputError("texts", "expected a sequence of strings, got a single string")
        items = list(texts)
        for i, text in enumerate(items):
            if not isinstance(text, str):
                raise InputError(f"texts[{i}]", f"expected a string, got {type(text).__name__}")
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(items) > BULK_TEXTS and self._bulk_factory is not None:
            if self._bulk is None:
                self._bulk = self._bulk_factory()
            return self._bulk.embed_texts(items)
        with _one_blas_thread():
            return np.concatenate([self._embed_one(text) for text in items])

    def _embed_one(self, text: str) -> np.ndarray:
        """One text at a time: no padding, so no masked positions to carry through the layers."""
        ids = np.asarray(self._tokenizer.encode(text).ids, dtype=np.int64)
        w, n = self._w, len(ids)
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self._eps)
        for i in range(self._layers):
            x = self._layer(x, f"encoder.layer.{i}.")
        pooled = x.mean(0, keepdims=True)
        return (pooled / max(float(np.linalg.norm(pooled)), 1e-12)).astype(np.float32)

    def _layer(self, x: np.ndarray, p: str) -> np.ndarray:
        w, heads = self._w, self._heads
        n, size = x.shape[0], self.dim // heads

        def dense(v: np.ndarray, name: str) -> np.ndarray:
            return v @ w[f"{p}{name}.weight"] + w[f"{p}{name}.bias"]

        q, k, v = (dense(x, f"attention.self.{t}").reshape(n, heads, size) for t in ("query", "key", "value"))
        scores = np.einsum("qhd,khd->hqk", q, k) / np.float32(np.sqrt(size))
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        context = np.einsum("hqk,khd->qhd", scores / scores.sum(-1, keepdims=True), v).reshape(n, self.dim)
        x = _layer_norm(dense(context, "attention.output.dense") + x, w[f"{p}attention.output.LayerNorm.weight"],
                        w[f"{p}attention.output.LayerNorm.bias"], self._eps)
        hidden = dense(x, "intermediate.dense")
        hidden = 0.5 * hidden * (1.0 + _erf(hidden / np.float32(np.sqrt(2.0))))
        return _layer_norm(dense(hidden, "output.dense") + x, w[f"{p}output.LayerNorm.weight"],
                           w[f"{p}output.LayerNorm.bias"], self._eps)
