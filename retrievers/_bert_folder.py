"""What the built-in BERT networks read of a Hugging Face folder, shared by the token classifier
(:mod:`promptzip.compressors._torch_classifier`) and the cross-encoder (:mod:`promptzip.retrievers._torch_cross`).

Each check answers one question, "would transformers build exactly what the built-in network computes from this
folder?", and says no to anything it does not know, so such a folder loads through transformers instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from promptzip.retrievers._light import BertShape

__all__ = [
    "VERY_LARGE",
    "ClassifierConfig",
    "ClassifierOutput",
    "bert_fits",
    "classifier_folder_fits",
    "config_shape",
    "max_length_of",
    "read_json",
    "special_token",
    "tokenizer_fits",
]

VERY_LARGE = int(1e30)  # transformers' model_max_length of a tokenizer that names none
# tokenizer classes whose fast tokenizer is tokenizer.json as written (BertTokenizer re-applies its config's
# normalizer flags, checked against the file in tokenizer_fits)
_TOKENIZER_CLASSES = (None, "BertTokenizer", "BertTokenizerFast", "PreTrainedTokenizerFast", "TokenizersBackend")


@dataclass(frozen=True, slots=True)
class ClassifierConfig:
    """What callers read of a classification model's config (the fields of the transformers config they use, under
    its names)."""

    num_labels: int
    max_position_embeddings: int
    pad_token_id: int | None
    model_type: str = "bert"


@dataclass(frozen=True, slots=True)
class ClassifierOutput:
    """A forward pass's result under the name transformers gives it."""

    logits: torch.Tensor


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or ``None`` where it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def special_token(value: Any) -> str | None:
    """A special token as a tokenizer config writes it: a string, or an ``AddedToken`` dict with its ``content``."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def max_length_of(config: Mapping[str, Any]) -> int:
    """A tokenizer config's ``model_max_length`` as transformers reads it (:data:`VERY_LARGE` where it names none)."""
    limit = config.get("model_max_length")
    return int(limit) if isinstance(limit, int | float) and limit < VERY_LARGE else VERY_LARGE


def bert_fits(config: Any) -> bool:
    """Whether a model ``config.json`` is an encoder-only, absolute-position, GELU BERT run by SDPA or eager
    attention: the network :class:`~promptzip.retrievers._torch_bert.TorchBert` computes."""
    return (
        isinstance(config, dict)
        and config.get("model_type") == "bert"
        and config.get("hidden_act") == "gelu"
        and config.get("position_embedding_type", "absolute") == "absolute"
        and not config.get("is_decoder", False)
        and not config.get("add_cross_attention", False)
        and config.get("_attn_implementation", config.get("attn_implementation")) in (None, "sdpa")
    )


def tokenizer_fits(folder: Path) -> bool:
    """Whether transformers' fast tokenizer of ``folder`` is its ``tokenizer.json`` as written: a known class, and
    for ``BertTokenizer`` (which rebuilds the normalizer from its config) flags that agree with the file's."""
    spec = read_json(folder / "tokenizer.json")
    config = read_json(folder / "tokenizer_config.json") or {}
    if not isinstance(spec, dict) or not isinstance(config, dict):
        return False
    kind = config.get("tokenizer_class")
    if kind not in _TOKENIZER_CLASSES:
        return False
    if kind in ("BertTokenizer", "BertTokenizerFast"):
        norm = spec.get("normalizer") or {}
        return (
            norm.get("type") == "BertNormalizer"
            and norm.get("lowercase") == config.get("do_lower_case", True)
            and norm.get("handle_chinese_chars") == config.get("tokenize_chinese_chars", True)
            and norm.get("strip_accents") == config.get("strip_accents")
        )
    return True


def classifier_folder_fits(folder: Path, *, architecture: str = "BertForTokenClassification", labels: int = 2) -> bool:
    """Whether ``folder`` is a ``BertForTokenClassification`` (or another BERT ``architecture``) with at least
    ``labels`` labels, safetensors weights and a ``tokenizer.json``, that the built-in network computes exactly."""
    config = read_json(folder / "config.json")
    return (
        bert_fits(config)
        and config.get("architectures") == [architecture]
        and len(config.get("id2label") or {0: "", 1: ""}) >= labels
        and int(config.get("num_labels", 2)) >= labels
        and (folder / "model.safetensors").is_file()
        and tokenizer_fits(folder)
    )


def config_shape(config: Mapping[str, Any]) -> BertShape:
    """The :class:`~promptzip.retrievers._light.BertShape` a model ``config.json`` describes."""
    return BertShape(
        layers=int(config["num_hidden_layers"]),
        heads=int(config["num_attention_heads"]),
        hidden=int(config["hidden_size"]),
        eps=float(config.get("layer_norm_eps", 1e-12)),
        max_length=int(config.get("max_position_embeddings", 512)),
    )
