"""A torch BERT sentence encoder read without transformers or sentence-transformers.

Importing sentence-transformers costs seconds of a new process (it imports most of transformers, scikit-learn's
metrics and more), several times ``import torch`` itself, and the dense scorer's packed pass uses only two parts of
its pipeline: the fast tokenizer and the Hugging Face ``BertModel``. For the folders :mod:`.retrievers._light`
computes exactly (a sentence-transformers ``Transformer → Pooling(mean) [→ Normalize]`` pipeline over an
absolute-position, GELU, encoder-only BERT: :func:`~promptzip.retrievers._light.bert_shape`), this module builds
the same network as a small ``nn.Module`` and feeds it the same rows:

* the tokenizer is the folder's ``tokenizer.json`` through ``tokenizers`` (the Rust library the fast tokenizer
  wraps), truncated to ``max_seq_length`` and not padded, as sentence-transformers calls it: the same ids and
  character offsets (``tests/test_torch_bert.py`` compares them on hundreds of odd texts);
* the weights are ``model.safetensors`` mapped copy-on-write (:func:`~promptzip.retrievers._light.bert_weights`)
  and wrapped by ``torch.from_numpy``: no copy, and pages are read as the forward pass touches them;
* the forward pass runs the Hugging Face ``BertModel``'s operations in its order (word + token-type, then
  + position embeddings, LayerNorm; per layer separate ``nn.Linear`` query / key / value projections, their
  ``scaled_dot_product_attention`` under the boolean block-diagonal mask of :mod:`.retrievers._packed`, the output
  projection + residual, LayerNorm, the intermediate ``nn.Linear`` with exact GELU, the output projection +
  residual, LayerNorm). Its pooler is left out: the mean pooling reads the last hidden state only.

So its packed passes give the sentence-transformers model's packed passes' vectors and token states (bit for bit
on the machines tested), and its reduced-precision copies, made as :func:`promptzip._precision.with_precision`
makes them of the Hugging Face model (a bfloat16 copy; torch's dynamic int8 quantization of the ``nn.Linear``
layers), give those copies' packed vectors too. The dense scorer packs float32 and bfloat16 passes only: an int8
model's activations are quantized per batch, so its packed vectors are not those of sentence-transformers' batched
``encode``, and int8 scorers run the int8 copy in that ``encode``'s padded batches instead
(:class:`~promptzip.retrievers._dense_encoders.Int8Batches`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from promptzip._precision import resolve_precision, with_precision
from promptzip.retrievers._light import BertShape, bert_parts, bert_shape
from promptzip.retrievers._packed import PackedEncoder

__all__ = ["TorchBert", "TorchBertEncoder", "frozen_linear", "padding_mask", "torch_bert_encoder"]


def _tensor(array: np.ndarray) -> nn.Parameter:
    """A frozen parameter sharing ``array``'s memory (a view of the mapped file where it is one)."""
    return nn.Parameter(torch.from_numpy(array), requires_grad=False)


# The modules are made at size 1 and then given the folder's tensors: made at full size they would draw random
# weights first (tenths of a second), and made on the "meta" device the first one imports torch's meta kernels
# (seconds). They stay plain nn.Linear / nn.LayerNorm / nn.Embedding, which torch's dynamic quantization and
# dtype conversion know.


def frozen_linear(weights: Mapping[str, np.ndarray], name: str) -> nn.Linear:
    """The ``nn.Linear`` of ``weights``' ``name.weight`` / ``name.bias``, frozen, sharing their memory."""
    weight = _tensor(weights[name + ".weight"])
    module = nn.Linear(1, 1)
    module.out_features, module.in_features = weight.shape
    module.weight, module.bias = weight, _tensor(weights[name + ".bias"])
    return module


def _norm(weights: Mapping[str, np.ndarray], name: str, eps: float) -> nn.LayerNorm:
    weight = _tensor(weights[name + ".weight"])
    module = nn.LayerNorm(1, eps=eps)
    module.normalized_shape = tuple(weight.shape)
    module.weight, module.bias = weight, _tensor(weights[name + ".bias"])
    return module


def _embedding(weights: Mapping[str, np.ndarray], name: str) -> nn.Embedding:
    weight = _tensor(weights[name + ".weight"])
    module = nn.Embedding(1, 1)
    module.num_embeddings, module.embedding_dim = weight.shape
    module.weight = weight
    return module


class _Layer(nn.Module):
    """One BERT encoder layer (``BertLayer``'s operations, in its order)."""

    def __init__(self, weights: Mapping[str, np.ndarray], prefix: str, shape: BertShape) -> None:
        super().__init__()
        self.head_size = shape.hidden // shape.heads
        self.scaling = self.head_size**-0.5
        self.query = frozen_linear(weights, prefix + "attention.self.query")
        self.key = frozen_linear(weights, prefix + "attention.self.key")
        self.value = frozen_linear(weights, prefix + "attention.self.value")
        self.attention_out = frozen_linear(weights, prefix + "attention.output.dense")
        self.attention_norm = _norm(weights, prefix + "attention.output.LayerNorm", shape.eps)
        self.intermediate = frozen_linear(weights, prefix + "intermediate.dense")
        self.output = frozen_linear(weights, prefix + "output.dense")
        self.output_norm = _norm(weights, prefix + "output.LayerNorm", shape.eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        rows, width = x.shape[:2]
        split = (rows, width, -1, self.head_size)
        query = self.query(x).view(split).transpose(1, 2)
        key = self.key(x).view(split).transpose(1, 2)
        value = self.value(x).view(split).transpose(1, 2)
        attended = nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=mask, dropout_p=0.0, scale=self.scaling, is_causal=False
        )
        attended = attended.transpose(1, 2).contiguous().reshape(rows, width, -1).contiguous()
        x = self.attention_norm(self.attention_out(attended) + x)
        inner = nn.functional.gelu(self.intermediate(x))
        out: torch.Tensor = self.output_norm(self.output(inner) + x)
        return out


def padding_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """The mask transformers gives ``scaled_dot_product_attention`` for a padded batch (``attention_mask`` 1 for
    tokens, 0 for padding): ``None`` when no row is padded, else bool ``[rows, 1, width, width]`` in which every
    query row sees the keys that are not padding."""
    if attention_mask is None or bool(attention_mask.all()):
        return None
    rows, width = attention_mask.shape
    keys = attention_mask.to(torch.bool)[:, None, None, :]
    return keys.expand(rows, 1, width, width).contiguous()


class TorchBert(nn.Module):
    """A BERT encoder's last hidden state from a folder's weights (see the module docstring)."""

    def __init__(self, weights: Mapping[str, np.ndarray], shape: BertShape) -> None:
        super().__init__()
        self.shape = shape
        self.word = _embedding(weights, "embeddings.word_embeddings")
        self.position = _embedding(weights, "embeddings.position_embeddings")
        self.token_type = _embedding(weights, "embeddings.token_type_embeddings")
        self.norm = _norm(weights, "embeddings.LayerNorm", shape.eps)
        self.layers = nn.ModuleList(_Layer(weights, f"encoder.layer.{i}.", shape) for i in range(shape.layers))
        self.eval()

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        mask: torch.Tensor | None,
        token_types: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[rows, width, hidden]`` for ``input_ids`` / ``positions`` ``[rows, width]``, ``mask`` bool
        ``[rows, 1, width, width]`` or ``None`` (all attend), ``token_types`` ``[rows, width]`` (a cross-encoder's
        query / passage segments) or ``None``: type 0 throughout, as sentence-transformers passes it."""
        types = torch.zeros_like(input_ids) if token_types is None else token_types
        x: torch.Tensor = self.word(input_ids) + self.token_type(types)
        x = self.norm(x + self.position(positions))
        for layer in self.layers:
            x = layer(x, mask)
        return x


class TorchBertEncoder(PackedEncoder):
    """Packed encoding (:class:`~promptzip.retrievers._packed.PackedEncoder`) through a :class:`TorchBert` and the
    folder's own tokenizer; :meth:`in_precision` gives the bfloat16 and int8 copies, :meth:`encode_query` one text."""

    def __init__(self, module: Any, tokenizer: Any, *, row_tokens: int = 128, rows: int = 8) -> None:
        super().__init__(row_tokens=row_tokens, rows=rows)
        self.module = module  # the network a pass runs: a TorchBert, or its bfloat16 / int8 copy
        self.shape: BertShape = module.shape
        self.hidden = self.shape.hidden
        self.limit = self.shape.max_length
        self._tokenizer = tokenizer
        self._lock = threading.Lock()  # the Rust tokenizer is shared by the copies: encode under one lock
        self._copies: dict[str, TorchBertEncoder] = {"float32": self}

    def in_precision(self, precision: str) -> TorchBertEncoder:
        """This encoder with its network in ``precision`` (``"float32"``, ``"bfloat16"``, ``"int8"`` or ``"auto"``):
        made once, as the sentence-transformers model's copies are (:func:`promptzip._precision.with_precision`)."""
        precision = resolve_precision(precision)
        with self._lock:
            found = self._copies.get(precision)
            if found is None:
                base = self._copies["float32"]
                copy = with_precision(base.module, precision)
                found = TorchBertEncoder(copy, self._tokenizer, row_tokens=self.row_tokens, rows=self.rows)
                found._lock, found._copies = self._lock, self._copies
                self._copies[precision] = found
        return found

    def token_id(self, token: str) -> int | None:
        """The id of ``token`` in the folder's vocabulary, or ``None`` where it has none."""
        found: int | None = self._tokenizer.token_to_id(token)
        return found

    def tokenize(self, texts: list[str]) -> tuple[list[list[int]], list[np.ndarray]]:
        with self._lock:
            encodings = self._tokenizer.encode_batch(texts)
        ids = [e.ids for e in encodings]
        return ids, [np.asarray(e.offsets, dtype=np.int32).reshape(-1, 2) for e in encodings]

    def _forward(self, input_ids: Any, positions: Any, mask: Any) -> Any:
        return self.module(input_ids, positions, mask[:, None]).float()

    def encode_query(self, text: str) -> np.ndarray:
        """The unit embedding of one text, alone in its row and without a mask (there is nothing to mask), as a
        sentence-transformers model embeds a batch of one."""
        ids, _ = self.tokenize([text])
        with torch.inference_mode():
            input_ids = torch.tensor(ids, dtype=torch.long)
            positions = torch.arange(input_ids.shape[1])[None]
            mean = self.module(input_ids, positions, None)[0].float().mean(dim=0).numpy()
        norm = float(np.linalg.norm(mean))
        return np.asarray(mean / (norm if norm > 0 else 1.0), dtype=np.float32)

    @classmethod
    def from_folder(cls, folder: Path, shape: BertShape) -> TorchBertEncoder:
        """The float32 encoder of ``folder``; an unusable folder is :class:`ModelNotAvailable`."""
        weights, tokenizer = bert_parts(folder, shape, writable=True)
        return cls(TorchBert(weights, shape), tokenizer)


_encoders: dict[str, TorchBertEncoder | None] = {}
_encoders_lock = threading.Lock()


def torch_bert_encoder(folder: Path) -> TorchBertEncoder | None:
    """The float32 :class:`TorchBertEncoder` of ``folder``, or ``None`` where the folder is not a model it computes
    exactly (:func:`~promptzip.retrievers._light.bert_shape`). Built once per folder and process and shared; a
    folder that fails to load raises :class:`ModelNotAvailable` and is tried again next time."""
    key = str(folder.resolve())
    with _encoders_lock:
        if key not in _encoders:
            shape = bert_shape(folder)
            _encoders[key] = None if shape is None else TorchBertEncoder.from_folder(folder, shape)
        return _encoders[key]
