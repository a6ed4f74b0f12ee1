"""A light BERT sentence encoder for queries: plain torch and the Rust ``tokenizers``, no transformers.

Importing sentence-transformers pulls in transformers' modeling code, peft and more: on a busy 2-core machine that
is most of a warm-cache compression in a new process, spent to embed one question. This module computes the same
embedding from the same files without those imports: the model folder's ``tokenizer.json`` (truncated to the
folder's ``max_seq_length``, [CLS] ... [SEP] as the folder's post-processor adds them), its float32 weights
(``model.safetensors``, else ``pytorch_model.bin``), word + position + token-type embeddings, the encoder layers
(scaled dot-product attention over the unmasked tokens, exact GELU, LayerNorm with the config's eps), mean pooling
over the attention mask and L2 normalization. ``minilm-qa`` resolves to the folder its LoRA deltas were merged
into (:mod:`promptzip.retrievers.qa_encoder`), so this reads exactly the weights sentence-transformers loads.

Only folders this module computes exactly are accepted (:func:`light_encoder` returns ``None`` for the rest): a
sentence-transformers ``Transformer → Pooling(mean) [→ Normalize]`` pipeline over an absolute-position BERT with
GELU, without lowercasing done by sentence-transformers itself. Embeddings match sentence-transformers' within
~1e-6 in float32 (``tests/test_light_encoder.py``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from promptzip._errors import ModelNotAvailable

__all__ = ["BertShape", "LightEncoder", "light_encoder"]

_OTHER_POOLING = ("cls_token", "max_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens", "lasttoken")


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


def _load_weights(folder: Path) -> dict[str, torch.Tensor]:
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        raw = load_file(str(folder / "model.safetensors"), device="cpu")
    else:
        raw = torch.load(str(folder / "pytorch_model.bin"), map_location="cpu", weights_only=True)
    # Some checkpoints name the encoder's weights under the task model's prefix ("bert.encoder...").
    return {k.removeprefix("bert."): v.float() for k, v in raw.items()}


class LightEncoder:
    """Unit-normalized float32 sentence embeddings from a BERT folder (see the module docstring)."""

    def __init__(self, weights: dict[str, torch.Tensor], shape: BertShape, tokenizer: Any) -> None:
        self.shape = shape
        self._w = weights
        self._tokenizer = tokenizer
        self._lock = threading.Lock()  # the Rust tokenizer's settings are shared state: encode under one lock

    @classmethod
    def from_folder(cls, folder: Path, shape: BertShape) -> LightEncoder:
        """Load the weights and the tokenizer of ``folder``; an unusable folder is :class:`ModelNotAvailable`."""
        from tokenizers import Tokenizer

        try:
            weights = _load_weights(folder)
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as exc:  # safetensors, torch and tokenizers each raise their own types for a bad file
            raise ModelNotAvailable(f"could not load a light encoder from {folder}: {exc}", model=str(folder)) from exc
        # tokenizer.json may carry the training-time settings (all-MiniLM-L6-v2's: truncate and pad to 128);
        # sentence-transformers truncates to max_seq_length and pads only to the longest text of a batch.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=shape.max_length)
        missing = [k for k in _needed(shape) if k not in weights]
        if missing:
            raise ModelNotAvailable(f"{folder} lacks BERT weights such as {missing[0]}", model=str(folder))
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
        ids = torch.zeros((len(texts), max(lengths)), dtype=torch.long)
        types = torch.zeros_like(ids)
        mask = torch.zeros_like(ids)
        for i, (e, n) in enumerate(zip(encodings, lengths, strict=True)):
            ids[i, :n] = torch.tensor(e.ids)
            types[i, :n] = torch.tensor(e.type_ids)
            mask[i, :n] = 1
        with torch.inference_mode():
            hidden = self._forward(ids, types, mask)
            weights = mask[..., None].float()
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
            unit = F.normalize(pooled, p=2.0, dim=1).numpy().astype(np.float32)
            if not states:
                return unit, [], []
            tokens = [hidden[i, :n].to(torch.float16).numpy() for i, n in enumerate(lengths)]
        offsets = [np.asarray(e.offsets, dtype=np.int32).reshape(-1, 2) for e in encodings]
        return unit, tokens, offsets

    def _forward(self, ids: torch.Tensor, types: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The last hidden state, ``[texts, tokens, hidden]``."""
        w = self._w
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][: ids.shape[1]]
            + w["embeddings.token_type_embeddings.weight"][types]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        # an additive mask: padding gets the most negative float, so its softmax weight is exactly 0
        bias = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        for layer in range(self.shape.layers):
            x = self._layer(x, bias, f"encoder.layer.{layer}.")
        return x

    def _layer(self, x: torch.Tensor, bias: torch.Tensor, prefix: str) -> torch.Tensor:
        batch, length, hidden = x.shape
        heads = self.shape.heads

        def split(name: str) -> torch.Tensor:
            return self._linear(x, prefix + name).view(batch, length, heads, hidden // heads).transpose(1, 2)

        attended = F.scaled_dot_product_attention(
            split("attention.self.query"), split("attention.self.key"), split("attention.self.value"), attn_mask=bias
        )
        attended = attended.transpose(1, 2).reshape(batch, length, hidden)
        x = self._norm(
            self._linear(attended, prefix + "attention.output.dense") + x, prefix + "attention.output.LayerNorm"
        )
        inner = F.gelu(self._linear(x, prefix + "intermediate.dense"))
        return self._norm(self._linear(inner, prefix + "output.dense") + x, prefix + "output.LayerNorm")

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, self._w[name + ".weight"], self._w[name + ".bias"])

    def _norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(x, (self.shape.hidden,), self._w[name + ".weight"], self._w[name + ".bias"], self.shape.eps)


def _needed(shape: BertShape) -> list[str]:
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
    return params


def light_encoder(folder: Path) -> LightEncoder | None:
    """A :class:`LightEncoder` for ``folder``, or ``None`` where the folder is not a model it computes exactly."""
    shape = bert_shape(folder)
    return None if shape is None else LightEncoder.from_folder(folder, shape)
