"""Embedders on in-process transformers models: CLIP/SigLIP image-text spaces and sentence-transformers text encoders.

Both return L2-normalised float32 arrays of shape (n, dim), batch by batch under torch.inference_mode; while the
model runs one batch, a background thread prepares the next (PIL resizing and fast tokenizers release the GIL).
They keep cumulative `timings` (preprocessing vs model seconds) so a benchmark can tell where the time goes. The
image tower can run in bf16 or int8 (see hf_precision); the text towers stay float32 unless asked. torch and
transformers are imported only when an embedder is built.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from cirgraph.errors import InputError
from cirgraph.tools.hf_loading import load_config, load_pretrained, read_json_file, resolve_model, torch_dtype
from cirgraph.tools.hf_precision import apply_precision, compute_context, resolve_precision

if TYPE_CHECKING:
    from PIL.Image import Image

# Families trained with texts padded to a fixed length; they must be fed the same way.
_PAD_TO_MAX_LENGTH = ("siglip", "siglip2")
_NO_LIMIT = 100_000  # tokenizers without a model_max_length report a huge sentinel
DUAL_ENCODER_TYPES = frozenset({"clip", "siglip", "siglip2"})
IMAGE_TOWERS = ("vision_model", "visual_projection")  # the image side of CLIP, SigLIP and SigLIP2


@dataclass(frozen=True, slots=True)
class PreparedImages:
    """Images turned into model inputs (resized, normalised tensors), ready for `embed_prepared`."""

    inputs: dict[str, Any]

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def take(self, rows: Sequence[int]) -> PreparedImages:
        """The given rows, in that order."""
        import torch

        index = torch.as_tensor(list(rows), dtype=torch.long)
        return PreparedImages({k: v.index_select(0, index) for k, v in self.inputs.items()})


@dataclass(slots=True)
class EmbedTimings:
    """Cumulative seconds spent turning inputs into tensors (tokenise, resize) vs running the model."""

    preprocess_s: float = 0.0
    model_s: float = 0.0
    items: int = 0
    batches: int = 0
    last_preprocess_s: float = 0.0  # of the latest embed_* call
    last_model_s: float = 0.0

    def reset(self) -> None:
        self.preprocess_s = self.model_s = self.last_preprocess_s = self.last_model_s = 0.0
        self.items = self.batches = 0

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def is_dual_encoder(config: Any) -> bool:
    """True for the image-text dual encoders this module runs (CLIP, SigLIP, SigLIP2)."""
    return getattr(config, "model_type", None) in DUAL_ENCODER_TYPES


def _check_batch_size(batch_size: int) -> int:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError("batch_size", f"must be a positive integer, got {batch_size!r}")
    return batch_size


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise InputError("texts", "expected a sequence of strings, got a single string")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"texts[{i}]", f"expected a string, got {type(text).__name__}")
    return list(texts)


def _text_max_length(tokenizer: Any, *limits: int | None) -> int:
    """The truncation length: the smallest of the tokenizer's and the model's limits."""
    values = [v for v in (getattr(tokenizer, "model_max_length", None), *limits) if isinstance(v, int) and v > 0]
    return min([v for v in values if v < _NO_LIMIT] or [512])


def _features(output: Any) -> Any:
    """get_*_features returns a tensor (transformers 4) or an output whose pooler_output is projected (5)."""
    import torch

    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _embed_batches(items: list, batch_size: int, dim: int, order: list[int], timings: EmbedTimings,
                   prepare: Callable[[list], dict], forward: Callable[[dict], Any],
                   context: Callable[[], Any] | None = None) -> np.ndarray:
    """Run `items` in batches (in `order`), L2-normalise, and return rows in the input order.

    With more than one batch, batch k + 1 is prepared in a background thread while the model runs batch k.
    """
    import contextlib

    import torch

    def timed_prepare(idx: list[int]) -> tuple[dict, float]:
        started = time.perf_counter()
        return prepare([items[i] for i in idx]), time.perf_counter() - started

    out = np.zeros((len(items), dim), dtype=np.float32)
    batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    pre_s = model_s = 0.0
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=1)) if len(batches) > 1 else None
        pending = pool.submit(timed_prepare, batches[0]) if pool and batches else None
        for k, idx in enumerate(batches):
            if pending is not None:
                inputs, spent = pending.result()
                pending = pool.submit(timed_prepare, batches[k + 1]) if k + 1 < len(batches) else None
            else:
                inputs, spent = timed_prepare(idx)
            t1 = time.perf_counter()
            with torch.inference_mode(), context() if context else contextlib.nullcontext():
                vectors = torch.nn.functional.normalize(forward(inputs).float(), dim=-1).cpu().numpy()
            out[idx] = vectors
            pre_s, model_s = pre_s + spent, model_s + time.perf_counter() - t1
            timings.batches += 1
    timings.preprocess_s += pre_s
    timings.model_s += model_s
    timings.last_preprocess_s, timings.last_model_s = pre_s, model_s
    timings.items += len(items)
    return out


def _check_images(images: Sequence[Image]) -> list[Image]:
    """The images as RGB PIL images; anything else is an InputError naming the item."""
    from PIL.Image import Image as PILImage

    items = list(images)
    for i, img in enumerate(items):
        if not isinstance(img, PILImage):
            raise InputError(f"images[{i}]", f"expected a PIL image (see cirgraph.tools.images.load_image), "
                                             f"got {type(img).__name__}")
    return [img if img.mode == "RGB" else img.convert("RGB") for img in items]


def _image_precision(precision: str, dtype: Any, device: str) -> str:
    """The image tower's precision; a model loaded in an explicit dtype runs as loaded."""
    if dtype is None:
        return resolve_precision(precision, device)
    if precision not in ("auto", "float32"):
        raise InputError("precision", f"give dtype ({dtype!r}) or precision ({precision!r}), not both")
    return "float32"


def _by_length(tokenizer: Any, texts: list[str], batch_size: int, max_length: int) -> list[int]:
    """Longest first in tokens, so each batch pads to similar lengths (results do not depend on the order).

    Counting tokens takes one extra pass of the (fast, batched) tokenizer; sorting by characters instead leaves
    ~20% of a batch's positions as padding on CIRR's captions, by tokens under 1%. One batch needs no order.
    """
    if len(texts) <= batch_size:
        return list(range(len(texts)))
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    return sorted(range(len(texts)), key=lambda i: -len(ids[i]))


class HFImageTextEmbedder:
    """ImageTextEmbedder on a CLIP, SigLIP or SigLIP2 checkpoint (a hub id or a local folder).

    `precision` applies to the image tower ("auto": bf16 where the processor computes it natively, else float32;
    "int8": dynamic quantization); texts are embedded in float32. `dtype` loads the whole model in that dtype
    instead (then the image tower runs as loaded).
    """

    def __init__(self, model: str, *, device: str = "cpu", batch_size: int = 32, offline: bool = False,
                 dtype: Any = None, precision: str = "auto") -> None:
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        self.name = model
        self.device = device
        self.batch_size = _check_batch_size(batch_size)
        source = resolve_model(model, offline=offline)
        config = load_config(source)
        if not is_dual_encoder(config):
            raise InputError(model, f"model_type {config.model_type!r} is not an image-text dual encoder "
                                    "(CLIP, SigLIP, SigLIP2)")
        extra = {"dtype": torch_dtype(dtype)} if dtype is not None else {}
        self._model = load_pretrained(source, AutoModel.from_pretrained, what="weights", **extra).to(device).eval()
        self._image_processor = load_pretrained(source, AutoImageProcessor.from_pretrained, what="image processor")
        self._tokenizer = load_pretrained(source, AutoTokenizer.from_pretrained, what="tokenizer")
        self.model_type: str = config.model_type
        self._pad_to_max = config.model_type in _PAD_TO_MAX_LENGTH
        self.max_length = _text_max_length(self._tokenizer, config.text_config.max_position_embeddings)
        self.dim = self._infer_dim(config)
        self.timings = EmbedTimings()
        self.precision = _image_precision(precision, dtype, device)
        apply_precision(self._model, self.precision, IMAGE_TOWERS)

    def _infer_dim(self, config: Any) -> int:
        for value in (getattr(config, "projection_dim", None), getattr(config.text_config, "projection_size", None)):
            if isinstance(value, int) and value > 0:
                return value
        return int(_features(self._model.get_text_features(**self._tokenize(["a"]))).shape[-1])

    def _tokenize(self, texts: list[str]) -> dict:
        padding = "max_length" if self._pad_to_max else "longest"
        enc = self._tokenizer(texts, padding=padding, truncation=True, max_length=self.max_length,
                              return_tensors="pt")
        # Only what the tokenizer declares: SigLIP was trained without an attention mask and gets none.
        keep = set(getattr(self._tokenizer, "model_input_names", ["input_ids", "attention_mask"]))
        keep.discard("token_type_ids")
        return {k: v.to(self.device) for k, v in enc.items() if k in keep}

    def _pixels(self, images: list[Image]) -> dict:
        enc = self._image_processor(images=images, return_tensors="pt")
        dtype = self._model.dtype
        return {k: v.to(self.device, dtype=dtype) if v.is_floating_point() else v.to(self.device)
                for k, v in enc.items()}

    def _image_forward(self, inputs: dict) -> Any:
        return _features(self._model.get_image_features(**inputs))

    def _image_context(self) -> Any:
        return compute_context(self.precision, self.device)

    def prepare_images(self, images: Sequence[Image]) -> PreparedImages:
        """Resize and normalise decoded PIL images into model inputs (no model call: safe in a background thread)."""
        started = time.perf_counter()
        prepared = PreparedImages(self._pixels(_check_images(images)))
        self.timings.preprocess_s += time.perf_counter() - started
        return prepared

    def embed_prepared(self, prepared: PreparedImages) -> np.ndarray:
        """(n, dim) L2-normalised float32 embeddings of images prepared by `prepare_images`."""
        return _embed_batches(list(range(len(prepared))), self.batch_size, self.dim, list(range(len(prepared))),
                              self.timings, lambda rows: prepared.take(rows).inputs, self._image_forward,
                              self._image_context)

    def embed_images(self, images: Sequence[Image]) -> np.ndarray:
        """(n, dim) L2-normalised float32 image embeddings; images are decoded PIL images (see load_image)."""
        items = _check_images(images)
        return _embed_batches(items, self.batch_size, self.dim, list(range(len(items))), self.timings,
                              self._pixels, self._image_forward, self._image_context)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) L2-normalised float32 text embeddings in the image space; long texts are truncated."""
        items = _check_texts(texts)
        order = _by_length(self._tokenizer, items, self.batch_size, self.max_length)
        return _embed_batches(items, self.batch_size, self.dim, order, self.timings,
                              self._tokenize, lambda inputs: _features(self._model.get_text_features(**inputs)))


class HFTextEmbedder:
    """TextEmbedder on a sentence-transformers-style encoder (mean or CLS pooling), or a CLIP/SigLIP text tower.

    `precision` ("float32" by default, so stored caption vectors and rankings do not move; "auto", "bfloat16",
    "int8": see hf_precision) applies to a sentence encoder; a CLIP/SigLIP text tower runs in float32.
    """

    def __init__(self, model: str, *, device: str = "cpu", batch_size: int = 64, offline: bool = False,
                 pooling: Literal["mean", "cls"] = "mean", precision: str = "float32") -> None:
        from transformers import AutoModel, AutoTokenizer

        if pooling not in ("mean", "cls"):
            raise InputError("pooling", f"expected 'mean' or 'cls', got {pooling!r}")
        self.name = model
        self.device = device
        self.pooling = pooling
        self.batch_size = _check_batch_size(batch_size)
        self.precision = resolve_precision(precision, device)
        source = resolve_model(model, offline=offline)
        config = load_config(source)
        self._dual: HFImageTextEmbedder | None = None
        if is_dual_encoder(config):
            # A joint image-text checkpoint: captions go into its (projected) text space.
            self._dual = HFImageTextEmbedder(model, device=device, batch_size=batch_size, offline=offline,
                                             precision="float32")
            self.dim, self.timings, self.max_length = self._dual.dim, self._dual.timings, self._dual.max_length
            self.precision = "float32"
            return
        self._model = load_pretrained(source, AutoModel.from_pretrained, what="weights").to(device).eval()
        self._tokenizer = load_pretrained(source, AutoTokenizer.from_pretrained, what="tokenizer")
        st_config = read_json_file(source, "sentence_bert_config.json") or {}
        self.max_length = _text_max_length(self._tokenizer, getattr(config, "max_position_embeddings", None),
                                           st_config.get("max_seq_length"))
        self.dim = int(config.hidden_size)
        self.timings = EmbedTimings()
        apply_precision(self._model, self.precision)

    def _tokenize(self, texts: list[str]) -> dict:
        enc = self._tokenizer(texts, padding="longest", truncation=True, max_length=self.max_length,
                              return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items()}

    def _forward(self, inputs: dict) -> Any:
        hidden = self._model(**inputs).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) L2-normalised float32 embeddings; texts longer than the model's limit are truncated."""
        if self._dual is not None:
            return self._dual.embed_texts(texts)
        items = _check_texts(texts)
        return _embed_batches(items, self.batch_size, self.dim,
                              _by_length(self._tokenizer, items, self.batch_size, self.max_length), self.timings,
                              self._tokenize, self._forward, lambda: compute_context(self.precision, self.device))
