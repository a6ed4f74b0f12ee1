"""BERT cross-encoders (``BertForSequenceClassification`` folders, such as ``ms-marco-minilm-l6``) without
transformers.

Importing transformers for ``AutoModelForSequenceClassification`` and its fast tokenizer costs seconds of a new
process, several times ``import torch`` itself, and :class:`~promptzip.retrievers.rerank.CrossEncoderReranker` uses
little of it: one call of the tokenizer on (query, passage) pairs (``truncation="longest_first"``, ``max_length``,
``padding=True``) and the model's padded-batch forward pass. This module builds the same two things from the same
files:

* the network is :class:`~promptzip.retrievers._torch_bert.TorchBert` fed the pairs' token types (the Hugging Face
  ``BertModel``'s operations in its order, over the mapped safetensors), then ``BertPooler`` (``nn.Linear`` on the
  first token, tanh) and the classifier ``nn.Linear``; padding is masked as transformers masks it for
  ``scaled_dot_product_attention`` (:func:`~promptzip.retrievers._torch_bert.padding_mask`);
* the tokenizer is the folder's ``tokenizer.json`` through ``tokenizers``, set up as transformers 5 sets up a
  ``BertTokenizer`` read from that file (its ``[CLS] A [SEP] B [SEP]`` template with token types 0 / 1, the pad
  token, pad type, padding and truncation sides of ``tokenizer_config.json``, else of the file) and called as
  transformers calls it: truncation and padding enabled for the call, then ``encode_batch`` of the pairs.

So the scores are the transformers model's, bit for bit in float32 and int8 (``tests/test_rerank_torch.py``; int8
copies come from the same :func:`promptzip._precision.int8_model`, which quantizes the same ``nn.Linear`` layers, and
the padded rows are the same, so the per-batch activation ranges are too). Folders this module does not compute
exactly (another architecture, activation or position type, a tokenizer class other than ``BertTokenizer``, a
WordPiece or pre-tokenizer that class would rebuild differently) return ``None`` from :func:`load_cross_encoder`
and load through transformers.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from promptzip._errors import ModelNotAvailable
from promptzip.retrievers._bert_folder import (
    ClassifierConfig,
    ClassifierOutput,
    classifier_folder_fits,
    config_shape,
    max_length_of,
    read_json,
    special_token,
    tokenizer_fits,
)
from promptzip.retrievers._light import bert_weights, missing_weights
from promptzip.retrievers._torch_bert import TorchBert, frozen_linear, padding_mask

__all__ = ["BertSettings", "PairTokens", "TorchCrossEncoder", "load_cross_encoder"]

_ARCHITECTURE = "BertForSequenceClassification"
_BERT_CLASSES = ("BertTokenizer", "BertTokenizerFast")
_BERT_INPUTS = ("input_ids", "token_type_ids", "attention_mask")  # BertTokenizer.model_input_names


class TorchCrossEncoder(nn.Module):
    """A BERT encoder (:class:`TorchBert`), its pooler and a linear head: ``BertForSequenceClassification``'s
    inference."""

    def __init__(self, bert: TorchBert, pooler: nn.Linear, head: nn.Linear, config: ClassifierConfig) -> None:
        super().__init__()
        self.bert = bert
        self.pooler = pooler
        self.classifier = head
        self.config = config
        self.eval()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> ClassifierOutput:
        """Logits ``[rows, labels]``; ``attention_mask`` 1 for tokens, 0 for padding, as transformers takes it."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
        hidden = self.bert(input_ids, positions, padding_mask(attention_mask), token_type_ids)
        pooled = torch.tanh(self.pooler(hidden[:, 0]))  # BertPooler: the first token's state, projected
        return ClassifierOutput(self.classifier(pooled))


@dataclass(frozen=True, slots=True)
class BertSettings:
    """What transformers 5's ``BertTokenizer`` of a folder takes from ``tokenizer_config.json`` (else
    ``special_tokens_map.json``, else the padding and truncation ``tokenizer.json`` carries, else its defaults)
    around the file's vocabulary, normalizer and pre-tokenizer: the special tokens of its template, how it pads and
    truncates, and whether it returns token types."""

    cls_token: str
    sep_token: str
    pad_token: str
    pad_type_id: int
    padding_side: str
    truncation_side: str
    token_types: bool
    split_special_tokens: bool
    model_max_length: int

    @classmethod
    def from_folder(cls, folder: Path) -> BertSettings | None:
        """The settings of a ``BertTokenizer`` folder, or ``None`` where transformers would build a tokenizer that
        differs from its ``tokenizer.json`` in ways :class:`PairTokens` does not reproduce (module docstring)."""
        config = read_json(folder / "tokenizer_config.json") or {}
        spec = read_json(folder / "tokenizer.json") or {}
        specials = read_json(folder / "special_tokens_map.json") or {}
        model, padding, truncation = spec.get("model") or {}, spec.get("padding") or {}, spec.get("truncation") or {}

        def named(key: str, default: str) -> str:
            return special_token(config.get(key)) or special_token(specials.get(key)) or default

        fits = (
            config.get("tokenizer_class") in _BERT_CLASSES
            and tokenizer_fits(folder)
            and (spec.get("normalizer") or {}).get("clean_text") is True
            and (spec.get("pre_tokenizer") or {}).get("type") == "BertPreTokenizer"
            and model.get("type") == "WordPiece"  # BertTokenizer rebuilds WordPiece(vocab, unk) with its defaults
            and model.get("unk_token") == named("unk_token", "[UNK]")
            and model.get("continuing_subword_prefix", "##") == "##"
            and model.get("max_input_chars_per_word", 100) == 100
        )
        if not fits:
            return None
        return cls(
            cls_token=named("cls_token", "[CLS]"),
            sep_token=named("sep_token", "[SEP]"),
            pad_token=named("pad_token", str(padding.get("pad_token") or "[PAD]")),
            pad_type_id=int(config.get("pad_token_type_id", padding.get("pad_type_id", 0))),
            padding_side=str(config.get("padding_side", str(padding.get("direction", "right")).lower())),
            truncation_side=str(config.get("truncation_side", str(truncation.get("direction", "right")).lower())),
            token_types="token_type_ids" in config.get("model_input_names", _BERT_INPUTS),
            split_special_tokens=bool(config.get("split_special_tokens", False)),
            model_max_length=max_length_of(config),
        )


class PairTokens:
    """A ``tokenizers.Tokenizer`` called on (query, passage) pairs as the reranker calls a transformers fast
    tokenizer: ``tokenizer(queries, passages, truncation="longest_first", max_length=n, padding=True,
    return_tensors="pt")`` gives ``input_ids``, ``token_type_ids`` (where the tokenizer returns them) and
    ``attention_mask``. Truncation and padding are set per call, so calls take a lock."""

    is_fast = True

    def __init__(self, tokenizer: Any, settings: BertSettings, *, pad_token_id: int) -> None:
        self._tokenizer = tokenizer
        self.settings = settings
        self.pad_token_id = pad_token_id
        self.model_max_length = settings.model_max_length
        self._lock = threading.Lock()

    def __call__(
        self,
        text: Sequence[str],
        text_pair: Sequence[str],
        *,
        truncation: str = "longest_first",
        max_length: int,
        padding: bool = True,
        return_tensors: str = "pt",
    ) -> dict[str, torch.Tensor]:
        if (truncation, padding, return_tensors) != ("longest_first", True, "pt"):
            raise ValueError("the built-in pair tokenizer pads and truncates pairs longest-first into tensors only")
        pairs = list(zip(text, text_pair, strict=True))
        s = self.settings
        with self._lock:  # transformers sets both for the call too (set_truncation_and_padding)
            self._tokenizer.enable_truncation(
                max_length, stride=0, strategy="longest_first", direction=s.truncation_side
            )
            self._tokenizer.enable_padding(
                direction=s.padding_side, pad_id=self.pad_token_id, pad_type_id=s.pad_type_id, pad_token=s.pad_token
            )
            try:
                encodings = self._tokenizer.encode_batch(pairs)
            finally:
                self._tokenizer.no_truncation()
                self._tokenizer.no_padding()
        out = {"input_ids": torch.tensor([e.ids for e in encodings], dtype=torch.long)}
        if s.token_types:
            out["token_type_ids"] = torch.tensor([e.type_ids for e in encodings], dtype=torch.long)
        out["attention_mask"] = torch.tensor([e.attention_mask for e in encodings], dtype=torch.long)
        return out

    @classmethod
    def from_folder(cls, folder: Path) -> PairTokens | None:
        """The pair tokenizer of a ``BertTokenizer`` folder, or ``None`` (see :meth:`BertSettings.from_folder`)."""
        from tokenizers import Tokenizer, processors

        settings = BertSettings.from_folder(folder)
        if settings is None:
            return None
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        cls_token, sep = settings.cls_token, settings.sep_token
        cls_id, sep_id, pad_id = (tokenizer.token_to_id(t) for t in (cls_token, sep, settings.pad_token))
        if cls_id is None or sep_id is None or pad_id is None:
            return None
        # BertTokenizer's own template replaces the file's post-processor
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{cls_token}:0 $A:0 {sep}:0",
            pair=f"{cls_token}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls_token, cls_id), (sep, sep_id)],
        )
        tokenizer.encode_special_tokens = settings.split_special_tokens
        return cls(tokenizer, settings, pad_token_id=pad_id)


def load_cross_encoder(folder: Path) -> tuple[PairTokens, TorchCrossEncoder] | None:
    """``(tokenizer, model)`` of a BERT sequence-classification folder (the reranker's order), or ``None`` where
    this module does not compute it exactly. A folder that fits but cannot be read is :class:`ModelNotAvailable`."""
    if not classifier_folder_fits(folder, architecture=_ARCHITECTURE, labels=1):
        return None
    config = read_json(folder / "config.json")
    shape = config_shape(config)
    try:
        tokenizer = PairTokens.from_folder(folder)
        if tokenizer is None:
            return None
        weights = bert_weights(folder, writable=True)
    except Exception as exc:  # mmap, JSON and tokenizers each raise their own types for a bad file
        raise ModelNotAvailable(f"could not load a cross-encoder from {folder}: {exc}", model=str(folder)) from exc
    parts = ("pooler.dense.weight", "pooler.dense.bias", "classifier.weight", "classifier.bias")
    missing = missing_weights(weights, shape) + [name for name in parts if name not in weights]
    if missing:
        raise ModelNotAvailable(f"could not load a cross-encoder from {folder}: no {missing[0]}", model=str(folder))
    head = frozen_linear(weights, "classifier")
    labels = len(config["id2label"]) if config.get("id2label") else int(config.get("num_labels", 2))
    if head.out_features != labels:
        return None  # transformers refuses a head of another size than the config's: let it say so
    pad = config.get("pad_token_id")
    settings = ClassifierConfig(head.out_features, shape.max_length, int(pad) if isinstance(pad, int) else None)
    model = TorchCrossEncoder(TorchBert(weights, shape), frozen_linear(weights, "pooler.dense"), head, settings)
    model.requires_grad_(False)
    return tokenizer, model
