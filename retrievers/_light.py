"""A light BERT sentence encoder: NumPy and the Rust ``tokenizers``, neither torch nor transformers.

Importing sentence-transformers pulls in torch, transformers' modeling code, peft and more: seconds of a new
process, spent to embed one question whose sentences' vectors are all in the cache. Even torch alone is about a
second. This module computes the same embedding from the same files with NumPy: the model folder's
``tokenizer.json`` (truncated to the folder's ``max_seq_length``, [CLS] ... [SEP] as the folder's post-processor
adds them), its weights (``model.safetensors`` mapped read-only, so starting costs a header parse and the pages are
the OS file cache's; ``pytorch_model.bin`` only through torch), word + position + token-type embeddings, the
encoder layers (softmax attention within each text, exact GELU, LayerNorm with the config's eps), mean pooling and
L2 normalization. ``minilm-qa`` resolves to the folder its LoRA deltas were merged into
(:mod:`promptzip.retrievers.qa_encoder`), so this reads exactly the weights sentence-transformers loads.

Texts are packed, not padded: every position-wise step (embeddings, projections, the feed-forward block,
LayerNorm) runs once over all tokens of the batch laid end to end, and attention runs per text. Computing in
float32, embeddings match sentence-transformers' within ~1e-6 (``tests/test_light_encoder.py``).

Only folders this module computes exactly are accepted (:func:`light_encoder` returns ``None`` for the rest): a
sentence-transformers ``Transformer → Pooling(mean) [→ Normalize]`` pipeline over an absolute-position, encoder-only
BERT with exact GELU, without lowercasing done by sentence-transformers itself. The torch encoder of
:mod:`promptzip.retrievers._torch_bert` reads the same folders through :func:`bert_shape` and :func:`bert_parts`
(:func:`bert_weights`, :func:`bert_tokenizer`).
"""

from __future__ import annotations

import itertools
import json
import math
import mmap
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from promptzip._errors import ModelNotAvailable

__all__ = [
    "BertShape",
    "LightEncoder",
    "bert_parts",
    "bert_shape",
    "bert_tokenizer",
    "bert_weights",
    "light_encoder",
    "missing_weights",
    "read_safetensors",
]

_OTHER_POOLING = ("cls_token", "max_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens", "lasttoken")
_FLOATS: dict[str, np.dtype[Any]] = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "F64": np.dtype("<f8"),
    "BF16": np.dtype("<u2"),
}
# erfc(z) = t·exp(P(t) - z²), t = 1 / (1 + z/2), P's coefficients highest first (Numerical Recipes' erfcc, relative
# error < 1.2e-7). NumPy has no erf, and importing scipy for one would undo a light start-up.
_ERFC = (
    0.17087277,
    -0.82215223,
    1.48851587,
    -1.13520398,
    0.27886807,
    -0.18628806,
    0.09678418,
    0.37409196,
    1.00002368,
    -1.26551223,
)
_QKV = ("query", "key", "value")


@dataclass(frozen=True, slots=True)
class BertShape:
    """What the forward pass needs from a folder's ``config.json`` and ``sentence_bert_config.json``."""

    layers: int
    heads: int
    hidden: int
    eps: float
    max_length: int


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def bert_shape(folder: Path) -> BertShape | None:
    """The shape of a sentence-transformers mean-pooling BERT folder, or ``None`` if this module cannot compute it
    exactly (another architecture or pooling, an unreadable config, no ``tokenizer.json``)."""
    try:
        modules = _read_json(folder / "modules.json")
        kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
        config = _read_json(folder / "config.json")
        st_config = _read_json(folder / "sentence_bert_config.json")
        pooling = _read_json(folder / str(modules[1].get("path", "")) / "config.json") if len(modules) > 1 else {}
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    fits = (
        kinds[:2] == ["Transformer", "Pooling"]
        and all(kind == "Normalize" for kind in kinds[2:])
        and config.get("model_type") == "bert"
        and config.get("hidden_act") == "gelu"
        and config.get("position_embedding_type", "absolute") == "absolute"
        and not config.get("is_decoder", False)
        and not st_config.get("do_lower_case", False)
        and isinstance(st_config.get("max_seq_length"), int)
        and pooling.get("pooling_mode_mean_tokens") is True
        and not any(pooling.get(f"pooling_mode_{mode}") for mode in _OTHER_POOLING)
        and (folder / "tokenizer.json").is_file()
    )
    if not fits:
        return None
    return BertShape(
        layers=int(config["num_hidden_layers"]),
        heads=int(config["num_attention_heads"]),
        hidden=int(config["hidden_size"]),
        eps=float(config.get("layer_norm_eps", 1e-12)),
        max_length=min(int(st_config["max_seq_length"]), int(config.get("max_position_embeddings", 512))),
    )


def read_safetensors(path: Path, *, writable: bool = False) -> dict[str, np.ndarray]:
    """The floating-point tensors of a ``.safetensors`` file as float32 arrays. float32 tensors are views of a memory
    map of the file (no copy; nothing is read until used), others are converted. The views are read-only, or with
    ``writable`` views of a private (copy-on-write) mapping: a write copies the page it touches, never the file
    (what ``torch.from_numpy`` asks of an array)."""
    with path.open("rb") as fh:
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY if writable else mmap.ACCESS_READ)
    size = int.from_bytes(mapped[:8], "little")
    header = json.loads(mapped[8 : 8 + size])
    start = 8 + size
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        dtype = _FLOATS.get(info.get("dtype", "")) if isinstance(info, dict) else None
        if dtype is None:  # "__metadata__", and integer buffers (position_ids) the forward pass does not read
            continue
        begin, end = (int(x) for x in info["data_offsets"])
        shape = tuple(int(x) for x in info["shape"])
        raw = np.frombuffer(mapped, dtype=dtype, count=(end - begin) // dtype.itemsize, offset=start + begin)
        if info["dtype"] == "BF16":  # bfloat16 is the upper half of a float32
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        out[name] = raw.reshape(shape).astype(np.float32, copy=False)
    return out


def bert_weights(folder: Path, *, writable: bool = False) -> dict[str, np.ndarray]:
    """The float32 weights of a BERT folder under the ``BertModel``'s own names (``embeddings...``,
    ``encoder.layer...``): ``model.safetensors`` through :func:`read_safetensors` (``writable`` as there), else
    ``pytorch_model.bin`` through torch. Errors are the readers' own (see :meth:`LightEncoder.from_folder`)."""
    if (folder / "model.safetensors").is_file():
        raw = read_safetensors(folder / "model.safetensors", writable=writable)
    else:  # an old checkpoint: only torch reads its pickle (safely, weights only)
        import torch

        state = torch.load(str(folder / "pytorch_model.bin"), map_location="cpu", weights_only=True)
        raw = {k: v.float().numpy() for k, v in state.items() if v.is_floating_point()}
    # Some checkpoints name the encoder's weights under the task model's prefix ("bert.encoder...").
    return {k.removeprefix("bert."): v for k, v in raw.items()}


def bert_tokenizer(folder: Path, shape: BertShape) -> Any:
    """The folder's ``tokenizer.json`` as a ``tokenizers.Tokenizer`` set up as sentence-transformers calls its fast
    tokenizer: truncated to ``max_seq_length``, not padded, [CLS] ... [SEP] from the folder's post-processor."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    # tokenizer.json may carry the training-time settings (all-MiniLM-L6-v2's: truncate and pad to 128);
    # sentence-transformers truncates to max_seq_length and pads only to the longest text of a batch.
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=shape.max_length)
    return tokenizer


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, ``x/2 · (1 + erf(x/√2))``, through erfc (see ``_ERFC``): within ~4e-7 of the exact value
    (float32 rounding of an input near 9 is ~1e-6). Computed in blocks of ~64k values, which stay in the CPU's
    cache through the twenty-odd passes (twice as fast as whole-array passes)."""
    out = np.empty_like(x)
    rows = max(1, (1 << 16) // max(1, x.shape[-1]))
    for a in range(0, len(x), rows):
        out[a : a + rows] = _gelu_block(x[a : a + rows])
    return out


def _gelu_block(x: np.ndarray) -> np.ndarray:
    z = np.abs(x)
    z *= np.float32(1.0 / math.sqrt(2.0))
    t = z * np.float32(0.5)
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    erfc = np.full_like(t, np.float32(_ERFC[0]))
    for c in _ERFC[1:]:
        erfc *= t
        erfc += np.float32(c)
    z *= z
    erfc -= z
    np.exp(erfc, out=erfc)
    erfc *= t
    # 1 + erf(x/√2) is 2 - erfc(|x|/√2) for x ≥ 0 and erfc(|x|/√2) below: no cancellation for negative x
    out: np.ndarray = np.where(x >= 0, np.float32(2.0) - erfc, erfc)
    out *= x
    out *= np.float32(0.5)
    return out


class LightEncoder:
    """Unit-normalized float32 sentence embeddings from a BERT folder (see the module docstring)."""

    def __init__(self, weights: dict[str, np.ndarray], shape: BertShape, tokenizer: Any) -> None:
        self.shape = shape
        self._w = weights
        self._tokenizer = tokenizer
        self._lock = threading.Lock()  # the Rust tokenizer's settings are shared state: encode under one lock
        # q, k and v in one projection per layer (a [tokens, 3·hidden] product instead of three), fused once
        self._qkv = [
            tuple(
                np.concatenate([weights[f"encoder.layer.{i}.attention.self.{n}.{kind}"] for n in _QKV])
                for kind in ("weight", "bias")
            )
            for i in range(shape.layers)
        ]

    @classmethod
    def from_folder(cls, folder: Path, shape: BertShape) -> LightEncoder:
        """Load the weights and the tokenizer of ``folder``; an unusable folder is :class:`ModelNotAvailable`."""
        weights, tokenizer = bert_parts(folder, shape, what="a light encoder")
        return cls(weights, shape, tokenizer)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One unit-normalized float32 row per text."""
        return self.encode_states(texts, states=False)[0]

    def encode_states(
        self, texts: Sequence[str], *, states: bool = True
    ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """Unit rows of ``texts`` and, with ``states``, each text's token vectors (float16, special tokens included)
        and their character offsets (``(0, 0)`` for special tokens): the shapes of the dense scorer's packed pass."""
        if not texts:
            return np.zeros((0, self.shape.hidden), dtype=np.float32), [], []
        with self._lock:
            encodings = self._tokenizer.encode_batch([str(t) for t in texts])
        lengths = [len(e.ids) for e in encodings]
        bounds = np.cumsum([0, *lengths])
        ids = np.fromiter((i for e in encodings for i in e.ids), dtype=np.intp, count=int(bounds[-1]))
        types = np.fromiter((i for e in encodings for i in e.type_ids), dtype=np.intp, count=int(bounds[-1]))
        positions = np.concatenate([np.arange(n, dtype=np.intp) for n in lengths])
        hidden = self._forward(ids, types, positions, bounds)
        pooled = np.add.reduceat(hidden, bounds[:-1], axis=0) / np.asarray(lengths, dtype=np.float32)[:, None]
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        unit = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        if not states:
            return unit, [], []
        tokens = [hidden[a:b].astype(np.float16) for a, b in itertools.pairwise(bounds.tolist())]
        offsets = [np.asarray(e.offsets, dtype=np.int32).reshape(-1, 2) for e in encodings]
        return unit, tokens, offsets

    def _forward(self, ids: np.ndarray, types: np.ndarray, positions: np.ndarray, bounds: np.ndarray) -> np.ndarray:
        """The last hidden state of every token of the packed texts, ``[tokens, hidden]``."""
        w = self._w
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][positions]
            + w["embeddings.token_type_embeddings.weight"][types]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        for layer in range(self.shape.layers):
            x = self._layer(x, bounds, layer)
        return x

    def _layer(self, x: np.ndarray, bounds: np.ndarray, layer: int) -> np.ndarray:
        heads, hidden = self.shape.heads, self.shape.hidden
        size = hidden // heads
        prefix = f"encoder.layer.{layer}."
        qkv_w, qkv_b = self._qkv[layer]
        qkv = (x @ qkv_w.T + qkv_b).reshape(len(x), 3, heads, size).transpose(1, 2, 0, 3)  # [3, heads, tokens, size]
        scale = np.float32(1.0 / math.sqrt(size))
        attended = np.empty((heads, len(x), size), dtype=np.float32)
        for a, b in itertools.pairwise(bounds.tolist()):  # attention stays within a text
            q, k, v = qkv[0, :, a:b], qkv[1, :, a:b], qkv[2, :, a:b]
            scores = (q @ k.transpose(0, 2, 1)) * scale
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
            attended[:, a:b] = scores @ v
        merged = attended.transpose(1, 0, 2).reshape(len(x), hidden)
        x = self._norm(
            self._linear(merged, prefix + "attention.output.dense") + x, prefix + "attention.output.LayerNorm"
        )
        inner = _gelu(self._linear(x, prefix + "intermediate.dense"))
        return self._norm(self._linear(inner, prefix + "output.dense") + x, prefix + "output.LayerNorm")

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        out: np.ndarray = x @ self._w[name + ".weight"].T
        out += self._w[name + ".bias"]
        return out

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        mean = x.mean(axis=-1, keepdims=True)
        centred = x - mean
        var = np.mean(centred * centred, axis=-1, keepdims=True)
        out: np.ndarray = centred / np.sqrt(var + np.float32(self.shape.eps))
        out *= self._w[name + ".weight"]
        out += self._w[name + ".bias"]
        return out


def bert_parts(
    folder: Path, shape: BertShape, *, writable: bool = False, what: str = "a BERT encoder"
) -> tuple[dict[str, np.ndarray], Any]:
    """The weights (:func:`bert_weights`) and tokenizer of ``folder``, every weight ``shape`` needs among them; an
    unusable folder is :class:`ModelNotAvailable` (``what`` names the encoder in its message)."""
    try:
        weights = bert_weights(folder, writable=writable)
        tokenizer = bert_tokenizer(folder, shape)
    except Exception as exc:  # mmap, JSON, torch and tokenizers each raise their own types for a bad file
        raise ModelNotAvailable(f"could not load {what} from {folder}: {exc}", model=str(folder)) from exc
    missing = missing_weights(weights, shape)
    if missing:
        raise ModelNotAvailable(f"{folder} lacks BERT weights such as {missing[0]}", model=str(folder))
    return weights, tokenizer


def missing_weights(weights: Mapping[str, np.ndarray], shape: BertShape) -> list[str]:
    """The names of the BERT weights ``shape`` needs that ``weights`` lacks (empty when it has them all)."""
    names = ["embeddings.word_embeddings", "embeddings.position_embeddings", "embeddings.token_type_embeddings"]
    params = [n + ".weight" for n in names] + ["embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"]
    for layer in range(shape.layers):
        for part in (
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
            "attention.output.LayerNorm",
            "intermediate.dense",
            "output.dense",
            "output.LayerNorm",
        ):
            params += [f"encoder.layer.{layer}.{part}.weight", f"encoder.layer.{layer}.{part}.bias"]
    return [name for name in params if name not in weights]


_encoders: dict[str, LightEncoder | None] = {}
_encoders_lock = threading.Lock()


def light_encoder(folder: Path) -> LightEncoder | None:
    """A :class:`LightEncoder` for ``folder``, or ``None`` where the folder is not a model it computes exactly.
    Built once per folder and process and shared (it is thread-safe); a folder that fails to load is retried."""
    key = str(folder.resolve())
    with _encoders_lock:
        if key not in _encoders:
            shape = bert_shape(folder)
            _encoders[key] = None if shape is None else LightEncoder.from_folder(folder, shape)
        return _encoders[key]
