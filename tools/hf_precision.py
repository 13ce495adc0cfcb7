"""Reduced-precision inference for the embedders: bf16 where the processor computes it natively, int8 on request.

On CPU, bf16 matrix products run at about twice the float32 rate on processors with bf16 instructions
(AVX512_BF16, AMX) and slower than float32 elsewhere, so "auto" picks bf16 only where those instructions exist. bf16
here means Linear and Conv weights stored in bf16 and the forward run under autocast: layer norms, softmax and
residual sums stay in float32, so embeddings stay within ~1e-4 of float32 (cosine). int8 is dynamic quantization
of the Linear layers (int8 weights, activations quantized per call): faster again, and further from float32.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterable
from typing import Any

from cirgraph.errors import InputError

PRECISIONS = ("auto", "float32", "bfloat16", "int8")
# CPU flags (as /proc/cpuinfo names them) that make bf16 matrix products faster than float32 ones.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux reports them; empty where /proc/cpuinfo is not readable."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def native_bf16(device: str) -> bool:
    """True when bf16 compute is native on `device` (bf16 CPU instructions, or a CUDA device that supports it)."""
    if device == "cpu":
        return bool(cpu_flags() & BF16_FLAGS)
    if device.startswith("cuda"):
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return False


def resolve_precision(precision: str, device: str) -> str:
    """"auto" -> "bfloat16" where it is native, else "float32"; other values are checked and returned."""
    if precision not in PRECISIONS:
        raise InputError("precision", f"expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "int8" and device != "cpu":
        raise InputError("precision", f"int8 (dynamic quantization) runs on the CPU only, not on {device!r}")
    if precision == "auto":
        return "bfloat16" if native_bf16(device) else "float32"
    return precision


def apply_precision(model: Any, precision: str, towers: Iterable[str] | None = None) -> None:
    """Convert `model` (or only its submodules named in `towers`) in place: bf16 Linear/Conv weights, or int8
    dynamic Linear layers; float32 leaves it as it is."""
    import torch

    if towers is None:
        modules = [("", model)]
    else:
        modules = [(name, getattr(model, name)) for name in towers if getattr(model, name, None) is not None]
    if precision == "bfloat16":
        for _, module in modules:
            for layer in module.modules():
                if isinstance(layer, (torch.nn.Linear, torch.nn.Conv2d)):
                    layer.to(torch.bfloat16)
    elif precision == "int8":
        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():  # the eager API warns that it is moving to torchao; it still works
            warnings.simplefilter("ignore")
            for name, module in modules:
                quantized = quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8, inplace=bool(not name))
                if name:  # a tower that is itself a Linear layer is replaced, not changed in place
                    setattr(model, name, quantized)


def compute_context(precision: str, device: str) -> contextlib.AbstractContextManager:
    """Autocast to bf16 for the bf16 precision (matrix products in bf16, reductions in float32); else nothing."""
    if precision != "bfloat16":
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
