"""One query through a sentence-transformers model, with its transformer traced once.

A new question on a warm request is the one text the encoder must read, and for a text of a dozen word pieces
the eager model spends much of its time in Python: sentence-transformers' dispatch and the Hugging Face modules'
forward calls. So the first time a float32 model embeds a query, its transformer is traced (TorchScript), frozen
and optimized for inference, and later queries run the traced graph, then the model's own pooling and
normalization modules. The traced graph computes the same operations; before it is used it is checked against
the eager pipeline on texts of several lengths (within :data:`TOLERANCE`, the float32 rounding the light NumPy
encoder is held to as well), and a model that fails to trace or to match keeps the eager path for good.
"""

from __future__ import annotations

import logging
import threading
import warnings
import weakref
from typing import Any

import numpy as np

__all__ = ["TOLERANCE", "forward_one", "plain_forward_one"]

logger = logging.getLogger("promptzip")

TOLERANCE = 1e-5
_CHECKS = ("What?", "How tall is the tower that was finished in 1889 for the fair?", " ".join(["word"] * 300))
# model → its traced transformer, or None (the eager path); weak, so an id reused by a later model never matches
_traced: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def plain_forward_one(model: Any, text: str) -> np.ndarray:
    """``text`` through the model's own modules (tokenize, transformer, pooling, normalize), without ``encode``'s
    batching machinery: what ``encode`` computes for a batch of one (no padding)."""
    import torch

    with torch.inference_mode():
        features = model.preprocess([text]) if hasattr(model, "preprocess") else model.tokenize([text])
        vector = model(features)["sentence_embedding"][0].float().numpy()
    return np.asarray(vector, dtype=np.float32)


def forward_one(model: Any, text: str) -> np.ndarray:
    """The embedding of ``text`` by ``model`` (a float32 sentence-transformers model), through its traced
    transformer where that was built and checked (module docstring), else :func:`plain_forward_one`."""
    traced = _traced.get(model, False)
    if traced is False:
        with _lock:
            traced = _traced.get(model, False)
            if traced is False:
                traced = _trace(model)
                _traced[model] = traced
    if traced is None:
        return plain_forward_one(model, text)
    return _run(model, traced, text)


def _inputs(model: Any, text: str) -> tuple[dict[str, Any], tuple[Any, ...]]:
    features = model.preprocess([text]) if hasattr(model, "preprocess") else model.tokenize([text])
    args = (features["input_ids"], features["attention_mask"], features["token_type_ids"])
    return features, args


def _run(model: Any, traced: Any, text: str) -> np.ndarray:
    import torch

    with torch.inference_mode():
        features, args = _inputs(model, text)
        out = traced(*args)
        hidden = out["last_hidden_state"] if isinstance(out, dict) else out[0]
        state = {"token_embeddings": hidden, "attention_mask": features["attention_mask"]}
        for module in list(model)[1:]:
            state = module(state)
        vector = state["sentence_embedding"][0].float().numpy()
    return np.asarray(vector, dtype=np.float32)


def _trace(model: Any) -> Any:
    """The frozen traced transformer of ``model``, or None when the model is not one this applies to or the
    traced pipeline does not match the eager one."""
    import torch

    modules = list(model)
    first = modules[0] if modules else None
    auto = getattr(first, "auto_model", None)
    if type(first).__name__ != "Transformer" or auto is None or auto.training:
        return None
    quantized = any("quantized" in type(m).__module__ for m in auto.modules())
    if quantized or any(p.dtype != torch.float32 for p in auto.parameters()):
        return None  # quantized or half-precision copies keep their own eager path
    try:
        _, example = _inputs(model, _CHECKS[1])
        if any(not isinstance(a, torch.Tensor) for a in example):
            return None
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about Python values the checks below cover
            traced = torch.jit.trace(auto, example, strict=False, check_trace=False)  # type: ignore[no-untyped-call]
            traced = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
        for text in _CHECKS:
            gap = float(np.abs(_run(model, traced, text) - plain_forward_one(model, text)).max())
            if not gap <= TOLERANCE:
                logger.debug("traced query path off for this model: %.2g from the eager one", gap)
                return None
    except Exception as exc:  # any tracing failure leaves the eager path, which is always correct
        logger.debug("traced query path off for this model: %s", exc)
        return None
    return traced
