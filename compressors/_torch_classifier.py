"""BERT token classifiers (the distilled ``minilm-tc`` and plain ``BertForTokenClassification`` folders) without
transformers.

Importing transformers for ``BertForTokenClassification`` and its fast tokenizer costs seconds of a new process,
several times ``import torch`` itself, and :func:`~promptzip.compressors.token_classifier.keep_probabilities` uses
little of it: the tokenizer's ids, offsets, special tokens and pad id, and the model's padded-batch forward pass. This
module builds the same two things from the same files:

* the network is :class:`~promptzip.retrievers._torch_bert.TorchBert` (the Hugging Face ``BertModel``'s operations
  in its order, plain ``nn.Linear`` / ``nn.LayerNorm`` / ``nn.Embedding`` modules over the mapped safetensors) and
  an ``nn.Linear`` head. The distilled classifier's LoRA deltas are merged as
  :func:`~promptzip.compressors.token_classifier.build_student` merges them (``W += (B @ A) * (alpha / rank)`` in
  float32 torch) into copies of the base weights: the mapping the dense encoder reads is never written. Padding is
  masked as transformers masks it for ``scaled_dot_product_attention`` (its default attention here): no mask when
  no row is padded, else a boolean ``[rows, 1, width, width]`` mask of the keys that are not padding.
* the tokenizer is the folder's ``tokenizer.json`` through ``tokenizers``, with the truncation and padding that file
  may carry switched off (as the fast tokenizer switches them off for a call without ``truncation`` or
  ``padding``), called with the fast tokenizer's arguments and returning its ``input_ids`` / ``offset_mapping``; the
  pad token and ``model_max_length`` come from ``tokenizer_config.json`` / ``special_tokens_map.json``.

So the keep-probabilities are the transformers model's, bit for bit in float32 and int8 alike
(``tests/test_token_classifier_torch.py``; int8 copies come from the same
:func:`promptzip._precision.int8_model`, and the padded rows are the same, so the per-batch activation ranges are
too). Folders this module does not compute exactly (another architecture or activation, relative positions, a
tokenizer class or settings that transformers would rebuild differently) return ``None`` from
:func:`classifier_folder_fits` and load through transformers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from promptzip._errors import ModelNotAvailable
from promptzip.retrievers._bert_folder import (
    ClassifierConfig,
    ClassifierOutput,
    bert_fits,
    classifier_folder_fits,
    config_shape,
    max_length_of,
    read_json,
    special_token,
    tokenizer_fits,
)
from promptzip.retrievers._light import bert_weights, missing_weights
from promptzip.retrievers._torch_bert import TorchBert, frozen_linear, padding_mask

__all__ = ["BertTokens", "ClassifierConfig", "TorchTokenClassifier", "classifier_folder_fits", "load_classifier"]


class TorchTokenClassifier(nn.Module):
    """A BERT encoder (:class:`TorchBert`) and a linear head: ``BertForTokenClassification``'s inference."""

    def __init__(self, bert: TorchBert, head: nn.Linear, config: ClassifierConfig) -> None:
        super().__init__()
        self.bert = bert
        self.classifier = head
        self.config = config
        self.eval()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> ClassifierOutput:
        """Logits ``[rows, width, labels]``; ``attention_mask`` 1 for tokens, 0 for padding (as transformers takes
        it). Token types other than 0 are refused: the network always adds type 0, as transformers does unasked."""
        if token_type_ids is not None and bool(token_type_ids.any()):
            raise ValueError("the built-in classifier reads single sequences (token type 0) only")
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
        hidden = self.bert(input_ids, positions, padding_mask(attention_mask))
        return ClassifierOutput(self.classifier(hidden))


class BertTokens:
    """A ``tokenizers.Tokenizer`` called as a transformers fast tokenizer is by
    :mod:`~promptzip.compressors.token_classifier`: ``tokenizer(text_or_texts, add_special_tokens=...,
    return_offsets_mapping=...)`` gives ``input_ids`` (and ``offset_mapping``), with ``pad_token_id`` and
    ``model_max_length``. Its settings never change after construction, so concurrent calls are safe."""

    is_fast = True

    def __init__(self, tokenizer: Any, *, pad_token: str | None, model_max_length: int) -> None:
        tokenizer.no_truncation()  # tokenizer.json may carry training-time settings (MiniLM's: 128, padded)
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self.pad_token_id: int | None = None if pad_token is None else tokenizer.token_to_id(pad_token)
        self.model_max_length = model_max_length

    def __call__(
        self,
        text: str | Sequence[str],
        *,
        add_special_tokens: bool = True,
        return_offsets_mapping: bool = False,
        verbose: bool = True,
    ) -> dict[str, Any]:
        del verbose  # transformers' warning about texts longer than the model: the windows handle those
        texts = [text] if isinstance(text, str) else list(text)
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=add_special_tokens)
        out: dict[str, Any] = {"input_ids": [e.ids for e in encodings]}
        if return_offsets_mapping:
            out["offset_mapping"] = [e.offsets for e in encodings]
        return {k: v[0] for k, v in out.items()} if isinstance(text, str) else out

    @classmethod
    def from_folder(cls, folder: Path, *, default_pad: str | None = None) -> BertTokens:
        from tokenizers import Tokenizer

        config = read_json(folder / "tokenizer_config.json") or {}
        pad = special_token(config.get("pad_token")) or special_token(
            (read_json(folder / "special_tokens_map.json") or {}).get("pad_token")
        )
        return cls(
            Tokenizer.from_file(str(folder / "tokenizer.json")),
            pad_token=pad or default_pad,
            model_max_length=max_length_of(config),
        )


def load_classifier(
    folder: Path, *, adapter: Path | None = None, lora: Mapping[str, Any] | None = None
) -> tuple[TorchTokenClassifier, BertTokens] | None:
    """``(model, tokenizer)`` of a BERT folder, or ``None`` where this module does not compute it exactly. With
    ``adapter`` (the distilled classifier: ``folder`` is its base encoder), the adapter's LoRA deltas are merged
    (``lora``: the manifest's hyperparameters) and its head used; without, ``folder`` is a token-classification
    folder (:func:`classifier_folder_fits`) with its own head."""
    config = read_json(folder / "config.json")
    if adapter is None and not classifier_folder_fits(folder):
        return None
    if not bert_fits(config) or not (folder / "model.safetensors").is_file() or not tokenizer_fits(folder):
        return None
    shape = config_shape(config)
    try:
        weights = bert_weights(folder, writable=True)
        kind = (read_json(folder / "tokenizer_config.json") or {}).get("tokenizer_class") or ""
        tokenizer = BertTokens.from_folder(folder, default_pad="[PAD]" if kind.startswith("BertTokenizer") else None)
    except Exception as exc:  # mmap, JSON and tokenizers each raise their own types for a bad file
        raise ModelNotAvailable(f"could not load a token classifier from {folder}: {exc}", model=str(folder)) from exc
    missing = missing_weights(weights, shape)
    if missing:
        raise ModelNotAvailable(f"{folder} lacks BERT weights such as {missing[0]}", model=str(folder))
    if adapter is not None:
        weights, head = _merged(weights, adapter, lora or {})
    else:
        head = {k: weights[k] for k in ("classifier.weight", "classifier.bias") if k in weights}
        if len(head) < 2:
            raise ModelNotAvailable(f"{folder} has no classifier head", model=str(folder))
    linear = frozen_linear(head, "classifier")
    labels = int(linear.out_features)
    pad = config.get("pad_token_id")
    settings = ClassifierConfig(labels, shape.max_length, int(pad) if isinstance(pad, int) else None)
    model = TorchTokenClassifier(TorchBert(weights, shape), linear, settings)
    model.requires_grad_(False)
    return model, tokenizer


def _merged(
    weights: dict[str, np.ndarray], adapter: Path, lora: Mapping[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The base weights with the adapter's deltas merged into copies (the base arrays are views of a mapping other
    encoders share), and the adapter's head."""
    from safetensors.torch import load_file

    rank, alpha = int(lora.get("lora_rank", 8)), float(lora.get("lora_alpha", 16))
    try:
        delta = load_file(str(adapter))
    except Exception as exc:  # safetensors raises its own error types for a bad file
        raise ModelNotAvailable(f"could not read the adapter {adapter}: {exc}", model=str(adapter)) from exc
    merged = dict(weights)
    with torch.no_grad():
        for key, a in delta.items():
            if not (key.startswith("lora.") and key.endswith(".A")):
                continue
            module = key.removeprefix("lora.").removesuffix(".A")
            b = delta.get(f"lora.{module}.B")
            name = module.removeprefix("bert.") + ".weight"
            if b is None or name not in weights:
                raise ModelNotAvailable(f"{adapter}: no weight {name} for its LoRA pair", model=str(adapter))
            weight = torch.from_numpy(np.array(weights[name], dtype=np.float32, copy=True))
            weight += (b @ a) * (alpha / rank)  # build_student's expression, so the merged weights are its
            merged[name] = weight.numpy()
    try:
        head = {k: delta[k].numpy().copy() for k in ("classifier.weight", "classifier.bias")}
    except KeyError as exc:
        raise ModelNotAvailable(f"{adapter} has no classifier head", model=str(adapter)) from exc
    return merged, head
