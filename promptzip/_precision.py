"""Reduced-precision copies of CPU models: int8 linear layers or bfloat16 weights, made once per model object.

* ``"int8"``: the linear layers quantized to int8 weights with dynamic activations (torch dynamic quantization).
  About twice the tokens/s of float32 for a BERT-sized encoder, at a visible cost in fidelity (keep-probabilities of
  the distilled classifier correlate ≈ .97 with float32; all-MiniLM-L6-v2 sentence embeddings keep a cosine of only
  ≈ .94 to their float32 selves).
* ``"bfloat16"``: the weights and activations in bfloat16. On a CPU with native bfloat16 arithmetic (AVX-512 BF16 or
  AMX) about 1.8x float32 and practically lossless (embeddings keep a cosine ≈ .9999, rankings a Spearman ≈ .9998);
  on other CPUs it is emulated and slower than float32, so ``"auto"`` only picks it where it is native.
* ``"auto"``: ``"bfloat16"`` where the CPU has native bfloat16, else ``"float32"``.

Models on a GPU, and torch builds without the needed kernels, are returned unchanged.
"""

from __future__ import annotations

import functools
import threading
import warnings
from typing import Any, Final

from promptzip._errors import ConfigError

__all__ = ["PRECISIONS", "int8_model", "native_bf16", "precision_tag", "resolve_precision", "with_precision"]

PRECISIONS: Final = ("auto", "float32", "bfloat16", "int8")

_copies: dict[tuple[int, str], tuple[Any, Any]] = {}
_lock = threading.Lock()


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX-512 BF16 or AMX). Read from the CPU flags the kernel
    reports where it can, so that building a stack never imports torch; else asked of torch."""
    flags = _cpu_flags()
    if flags is not None:
        return bool({"avx512_bf16", "amx_tile"} & flags)
    try:
        import torch

        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (ImportError, AttributeError, RuntimeError):  # an older torch, or one built without these checks
        return False


def _cpu_flags() -> set[str] | None:
    """The first CPU's flags from /proc/cpuinfo (Linux), None where there is no such file."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        return None
    return None


def resolve_precision(precision: str) -> str:
    """``precision`` checked, with ``"auto"`` decided for this machine."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "auto":
        return "bfloat16" if native_bf16() else "float32"
    return precision


def precision_tag(precision: str) -> str:
    """The fingerprint suffix of a resolved precision (``""`` for float32), so cached outputs of one precision
    never stand in for another's."""
    return {"float32": "", "bfloat16": ":bf16", "int8": ":int8"}[resolve_precision(precision)]


def with_precision(model: Any, precision: str) -> Any:
    """``model`` in ``precision`` (a copy, made once per model object and precision; float32 returns ``model``)."""
    precision = resolve_precision(precision)
    if precision == "float32" or next(model.parameters()).device.type != "cpu":
        return model
    key = (id(model), precision)
    with _lock:
        entry = _copies.get(key)
        if entry is None or entry[0] is not model:  # the original is held, so its id is never reused meanwhile
            entry = (model, _convert(model, precision))
            _copies[key] = entry
    return entry[1]


def int8_model(model: Any) -> Any:
    """``model`` with int8 linear layers (see the module docstring); once per model object."""
    return with_precision(model, "int8")


def _convert(model: Any, precision: str) -> Any:
    import copy

    import torch

    if precision == "bfloat16":
        return copy.deepcopy(model).to(torch.bfloat16)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch deprecates the quantized tensor types, not the speed-up
            return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)  # type: ignore[no-untyped-call]
    except (AttributeError, RuntimeError):  # no quantized engine in this torch build
        return model
