"""Tiny random-weight models saved as real checkpoint folders, so tests load them through the real loading code.

Each builder writes config, weights, tokenizer and (where the family has one) image processor into `directory` with
`save_pretrained`, exactly as a downloaded checkpoint is laid out, and returns the folder. Weights come from a fixed
seed, so two builds give the same model. Tokenizers are built in memory: byte-level vocabularies without merges
(CLIP, LLMs) and word-level vocabularies (SigLIP, BERT), so nothing is downloaded. `block_network()` proves that
loading them makes no network call.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

# Special tokens of the tiny chat models (ChatML, as Qwen2 uses).
IM_START, IM_END, END_OF_TEXT, IMAGE_TOKEN = "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<image>"

# ChatML; content is a string or a list of {"type": "text"|"image"} parts (the layout processors pass).
CHATML_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{ '<image>' }}"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<|im_end|>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
)

_WORDS = (
    "a an the of with and in on to is red blue green black white yellow dress shirt dog cat car photo picture "
    "same but short long sleeveless striped bigger smaller two one man woman"
).split()


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Fixed weights without disturbing the caller's random state."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _prepare(directory: str | Path) -> Path:
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _clip_image_processor(size: int):
    """A CLIP image processor that works without torchvision (the PIL backend where transformers has one).

    Saved under the canonical name `CLIPImageProcessor`, as published checkpoints are, so loading exercises the
    fallback to the PIL backend when torchvision is absent.
    """
    import transformers

    cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    return cls(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def _byte_level_chat_tokenizer(specials: list[str], max_length: int = 2048):
    """A byte-level BPE tokenizer without merges (one token per byte) plus ChatML special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token=IM_END, pad_token=END_OF_TEXT, model_max_length=max_length,
        additional_special_tokens=[t for t in specials if t not in (IM_END, END_OF_TEXT)],
    )
    tok.add_special_tokens({"eos_token": IM_END, "pad_token": END_OF_TEXT})
    tok.chat_template = CHATML_TEMPLATE
    return tok


def _clip_tokenizer(path: Path):
    """CLIP's byte-level BPE with no merges: every byte is a token, with and without the end-of-word mark."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = ["<|startoftext|>", "<|endoftext|>", *alphabet, *(ch + "</w>" for ch in alphabet)]
    (path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (path / "merges.txt").write_text("#version: 0.2\n")
    # The constructor's arguments differ between transformers 4 and 5; loading from these files does not.
    tok = CLIPTokenizer.from_pretrained(path, model_max_length=77)
    return tok, len(tokens)


def build_tiny_clip(directory: str | Path, *, seed: int = 0) -> Path:
    """A CLIP checkpoint: 2-layer text and vision towers (hidden 32), 32x32 images, patch 8, projection dim 16."""
    from transformers import CLIPConfig, CLIPModel

    path = _prepare(directory)
    tok, vocab_size = _clip_tokenizer(path)
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                vocab_size=vocab_size, max_position_embeddings=77, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  image_size=32, patch_size=8)
    with _seeded(seed):
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    _clip_image_processor(32).save_pretrained(path)
    return path


def _word_level_tokenizer(specials: dict[str, str], post: str, max_length: int, input_names: list[str]):
    """A lower-casing word-level tokenizer over a small vocabulary; unknown words map to the unk token."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tokens = [*dict.fromkeys(specials.values()), *_WORDS]
    vocab = {t: i for i, t in enumerate(tokens)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=specials["unk_token"]))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    special_ids = [(t, vocab[t]) for t in dict.fromkeys(specials.values()) if t in post]
    backend.post_processor = processors.TemplateProcessing(single=post, special_tokens=special_ids)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, model_max_length=max_length, model_input_names=input_names, **specials
    )
    return tok, len(tokens)


def _tiny_siglip_towers(tok, vocab_size: int) -> tuple[dict, dict]:
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                vocab_size=vocab_size, max_position_embeddings=16, pad_token_id=tok.pad_token_id,
                bos_token_id=None, eos_token_id=tok.eos_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, patch_size=8)
    return text, vision


def build_tiny_siglip(directory: str | Path, *, seed: int = 0) -> Path:
    """A SigLIP checkpoint: 2-layer towers (hidden 32), 32x32 images, patch 8, 16-token texts padded to max length."""
    import transformers
    from transformers import SiglipConfig, SiglipModel

    path = _prepare(directory)
    # SigLIP's own tokenizer is SentencePiece; a word-level one with the same specials and inputs keeps this offline.
    tok, vocab_size = _word_level_tokenizer(
        {"unk_token": "<unk>", "eos_token": "</s>", "pad_token": "</s>"}, "$A </s>", 16, ["input_ids"]
    )
    text, vision = _tiny_siglip_towers(tok, vocab_size)
    with _seeded(seed):
        model = SiglipModel(SiglipConfig(text_config=text, vision_config={**vision, "image_size": 32}))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    processor_cls = getattr(transformers, "SiglipImageProcessorPil", None) or transformers.SiglipImageProcessor
    processor_cls(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def build_tiny_siglip2(directory: str | Path, *, seed: int = 0) -> Path:
    """A SigLIP2 (NaFlex) checkpoint: 2-layer towers (hidden 32), patch 8, at most 16 patches per image."""
    import transformers
    from transformers import Siglip2Config, Siglip2Model

    path = _prepare(directory)
    # SigLIP2 uses the Gemma tokenizer, which returns an attention mask; a word-level stand-in does the same.
    tok, vocab_size = _word_level_tokenizer(
        {"unk_token": "<unk>", "eos_token": "<eos>", "pad_token": "<pad>"}, "$A <eos>", 16,
        ["input_ids", "attention_mask"],
    )
    text, vision = _tiny_siglip_towers(tok, vocab_size)
    with _seeded(seed):
        model = Siglip2Model(Siglip2Config(text_config=text, vision_config={**vision, "num_patches": 16}))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    processor_cls = getattr(transformers, "Siglip2ImageProcessorPil", None) or transformers.Siglip2ImageProcessor
    processor_cls(patch_size=8, max_num_patches=16).save_pretrained(path)
    return path


def build_tiny_text_encoder(directory: str | Path, *, seed: int = 0) -> Path:
    """A sentence-transformers-style BERT checkpoint: 2 layers, hidden 32, a WordPiece vocabulary of whole words."""
    from transformers import BertConfig, BertModel, BertTokenizer

    path = _prepare(directory)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_WORDS]
    (path / "vocab.txt").write_text("\n".join(tokens) + "\n")
    tok = BertTokenizer.from_pretrained(path, model_max_length=64)
    config = BertConfig(vocab_size=len(tokens), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=64, pad_token_id=0)
    with _seeded(seed):
        model = BertModel(config)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 32, "do_lower_case": False}))
    return path


def _tiny_decoder_config(vocab_size: int, tok) -> dict:
    return dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                tie_word_embeddings=True)


def build_tiny_llm(directory: str | Path, *, seed: int = 0) -> Path:
    """A Qwen2 causal LM (2 layers, hidden 32) with a byte-level tokenizer and a ChatML chat template."""
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    path = _prepare(directory)
    tok = _byte_level_chat_tokenizer([IM_START, IM_END, END_OF_TEXT])
    with _seeded(seed):
        model = Qwen2ForCausalLM(Qwen2Config(**_tiny_decoder_config(len(tok), tok)))
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def build_tiny_vlm(directory: str | Path, *, seed: int = 0) -> Path:
    """A LLaVA image-text-to-text model: tiny CLIP vision tower (32x32, patch 8 -> 16 image tokens) + tiny Qwen2."""
    from transformers import (CLIPVisionConfig, GenerationConfig, LlavaConfig, LlavaForConditionalGeneration,
                              LlavaProcessor, Qwen2Config)

    path = _prepare(directory)
    tok = _byte_level_chat_tokenizer([IM_START, IM_END, END_OF_TEXT, IMAGE_TOKEN])
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              image_size=32, patch_size=8)
    config = LlavaConfig(vision_config=vision, text_config=Qwen2Config(**_tiny_decoder_config(len(tok), tok)),
                         image_token_id=tok.convert_tokens_to_ids(IMAGE_TOKEN), projector_hidden_act="gelu",
                         vision_feature_select_strategy="default", vision_feature_layer=-1, image_seq_length=16)
    with _seeded(seed):
        model = LlavaForConditionalGeneration(config)
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(path)
    processor = LlavaProcessor(image_processor=_clip_image_processor(32), tokenizer=tok, patch_size=8,
                               vision_feature_select_strategy="default", chat_template=CHATML_TEMPLATE,
                               image_token=IMAGE_TOKEN, num_additional_image_tokens=1)
    processor.save_pretrained(path)
    return path


_HUB_DOWNLOADERS = (
    ("huggingface_hub", "hf_hub_download"), ("huggingface_hub", "snapshot_download"),
    ("huggingface_hub.file_download", "hf_hub_download"), ("huggingface_hub._snapshot_download", "snapshot_download"),
    ("transformers.utils.hub", "hf_hub_download"), ("transformers.utils.hub", "snapshot_download"),
)


@contextlib.contextmanager
def block_network() -> Iterator[list[str]]:
    """Inside the block every socket connection fails, and so does any hub download that may go online.

    Cache lookups (local_files_only=True) still run. Yields the list of refused attempts.
    """
    import importlib

    attempts: list[str] = []

    def refuse(what: str, original=None):
        def _refuse(*args, **kwargs):
            if original is not None and kwargs.get("local_files_only") is True:
                return original(*args, **kwargs)
            attempts.append(f"{what}{args[:2]!r}")
            raise OSError(f"network access refused in this test: {what}")
        return _refuse

    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(socket.socket, "connect", refuse("socket.connect")))
        stack.enter_context(mock.patch.object(socket, "create_connection", refuse("socket.create_connection")))
        stack.enter_context(mock.patch.object(socket, "getaddrinfo", refuse("socket.getaddrinfo")))
        for module_name, attr in _HUB_DOWNLOADERS:
            try:
                module = importlib.import_module(module_name)
            except ImportError:  # a private module another huggingface_hub version lacks
                continue
            original = getattr(module, attr, None)
            if original is not None:
                stack.enter_context(mock.patch.object(module, attr, refuse(f"{module_name}.{attr}", original)))
        yield attempts
