"""Which encoder a :class:`~promptzip.retrievers.dense.DenseScorer` runs, for sentences and for queries.

Three encoders compute the same vectors of one model folder, and the cheapest that applies is used:

* the NumPy encoder of :mod:`promptzip.retrievers._light` (no torch): queries, and the token vectors of a few
  sentences, until a heavy encoder is loaded;
* the torch BERT of :mod:`promptzip.retrievers._torch_bert` (no sentence-transformers or transformers): the packed
  pass of float32 and bfloat16 scorers over a mean-pooling BERT folder, and their queries once it is loaded; and
  for int8 scorers its int8 copy, run as sentence-transformers' ``encode`` runs its int8 model (:class:`Int8Batches`);
* the sentence-transformers model: everything else (other model types, ``packed=False`` outside int8, and all of it
  under ``PROMPTZIP_TORCH_ENCODER=0``), packed where packing is exact for it (:mod:`promptzip.retrievers._packed`),
  else batched and padded.

Once a heavy encoder (torch) is loaded for sentences, it serves the queries too and the light encoder is let go: the
query vectors are the same, and the light encoder's copy of the weights is memory the process no longer needs.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from promptzip._errors import ModelNotAvailable
from promptzip._models import load_sentence_encoder, resolve_model
from promptzip._precision import with_precision
from promptzip.retrievers._query_forward import forward_one

if TYPE_CHECKING:  # the light and torch encoders are imported when they are first needed
    from promptzip.retrievers._light import LightEncoder
    from promptzip.retrievers._packed import PackedEncoder
    from promptzip.retrievers._torch_bert import TorchBertEncoder

__all__ = ["LIGHT_ENV", "TORCH_ENV", "DenseEncoders", "Int8Batches", "State", "switched_off"]

logger = logging.getLogger("promptzip")

State = tuple[np.ndarray, np.ndarray]  # a text's token vectors (float16) and their character offsets
LIGHT_ENV = "PROMPTZIP_LIGHT_ENCODER"  # "0"/"off"/"false": no light encoder (to measure it, or to rule it out)
TORCH_ENV = "PROMPTZIP_TORCH_ENCODER"  # "0"/"off"/"false": the packed pass through sentence-transformers again


def switched_off(variable: str) -> bool:
    """Whether the environment variable turns its built-in path off (``0``, ``off``, ``false`` or ``no``)."""
    return os.environ.get(variable, "").strip().lower() in ("0", "off", "false", "no")


class DenseEncoders:
    """The encoders of one scorer's model and precision (see the module docstring), each loaded on first use."""

    def __init__(self, model_name: str, precision: str, *, packed: bool) -> None:
        self.model_name = model_name
        self.precision = precision
        self.packed = packed
        self.heavy = False  # a heavy encoder (torch) was loaded for sentences: it serves the queries from then on
        self.torch: TorchBertEncoder | None = None  # the float32 torch BERT, once decided (None: not this model)
        self.torch_tried = False
        self.int8: Int8Batches | None = None  # an int8 scorer's batched torch pass, once decided (None: not this model)
        self.int8_tried = False
        self.light: LightEncoder | None = None  # the light encoder, built on the first query it serves
        self.light_tried = False
        self._lock = threading.Lock()  # guards the light and the torch encoders' one-time loading

    def model(self) -> Any:
        """The sentence-transformers model in the scorer's precision (loaded once per process)."""
        model = with_precision(load_sentence_encoder(self.model_name), self.precision)
        self.heavy_loaded()
        return model

    def heavy_loaded(self) -> None:
        if not self.heavy:
            self.heavy, self.light = True, None  # the light encoder's memory is not needed any more

    def torch_encoder(self) -> TorchBertEncoder | None:
        """The float32 torch BERT of :mod:`promptzip.retrievers._torch_bert` (copies in other precisions come from
        it), or ``None`` where it does not apply: ``packed=False``, an int8 scorer (its vectors are
        sentence-transformers' batched pass, whose per-batch quantization packing would not reproduce: see
        :meth:`int8_batches`), ``PROMPTZIP_TORCH_ENCODER`` off, or a folder that is not a mean-pooling BERT it
        computes exactly."""
        if not self.packed or self.precision == "int8" or switched_off(TORCH_ENV):
            return None
        with self._lock:
            return self._float32_torch()

    def _float32_torch(self) -> TorchBertEncoder | None:
        if not self.torch_tried:  # under self._lock
            self.torch_tried = True
            from promptzip.retrievers._torch_bert import torch_bert_encoder

            try:
                found = torch_bert_encoder(resolve_model(self.model_name).path)
            except ModelNotAvailable as exc:  # an unreadable folder: the sentence-transformers loader decides
                logger.debug("no torch encoder for %s: %s", self.model_name, exc)
                found = None
            self.torch = found
        return self.torch

    def int8_batches(self) -> Int8Batches | None:
        """An int8 scorer's batched pass through the torch BERT's int8 copy (:class:`Int8Batches`), or ``None``
        where it does not apply: another precision, ``PROMPTZIP_TORCH_ENCODER`` off, or a folder whose
        sentence-transformers ``encode`` does more than that pass reproduces (:func:`padded_pipeline`)."""
        if self.precision != "int8" or switched_off(TORCH_ENV):
            return None
        with self._lock:
            if not self.int8_tried:
                self.int8_tried = True
                folder = resolve_model(self.model_name).path
                pipeline = padded_pipeline(folder)
                native = self._float32_torch() if pipeline is not None else None
                if native is not None and pipeline is not None:
                    pad_id = native.token_id(pipeline[0])
                    if pad_id is not None:
                        self.int8 = Int8Batches(native.in_precision("int8"), pad_id=pad_id, normalize=pipeline[1])
            return self.int8

    def packer(self) -> PackedEncoder | None:
        """What encodes sentences packed (:mod:`promptzip.retrievers._packed`): the torch BERT where it applies,
        else the sentence-transformers model's packer where packing is exact for it, else ``None``."""
        native = self.torch_encoder()
        if native is not None:
            self.heavy_loaded()
            return native.in_precision(self.precision)
        if not self.packed or self.int8_batches() is not None:  # int8: batched, as sentence-transformers runs it
            return None
        from promptzip.retrievers._packed import packer_for

        return packer_for(self.model())

    def light_encoder(self) -> LightEncoder | None:
        """The light encoder, or ``None`` where it does not apply: the heavy model is loaded already, the scorer is
        int8 (its queries are its int8 model's), ``PROMPTZIP_LIGHT_ENCODER`` is off, or the folder is not a
        mean-pooling BERT it computes exactly."""
        if self.heavy or self.precision == "int8" or switched_off(LIGHT_ENV):
            return None
        with self._lock:
            if not self.light_tried:
                self.light_tried = True
                from promptzip.retrievers._light import light_encoder

                try:
                    self.light = light_encoder(resolve_model(self.model_name).path)
                except ModelNotAvailable as exc:  # an unreadable folder: the heavy loader reports it if it must
                    logger.debug("no light query encoder for %s: %s", self.model_name, exc)
            return None if self.heavy else self.light

    def encode_batched(
        self, texts: list[str], *, batch_size: int, keep_states: bool, progress: bool
    ) -> tuple[np.ndarray, list[State]]:
        """``texts`` through sentence-transformers' own ``encode`` (batches of ``batch_size``, padded), or through
        the int8 torch BERT that computes the same (:class:`Int8Batches`)."""
        batches = self.int8_batches()
        if batches is not None:
            self.heavy_loaded()
            return batches.encode(texts, batch_size=batch_size, keep_states=keep_states, progress=progress)
        model = self.model()
        if not keep_states:
            vectors = model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=progress)
            return np.asarray(vectors, dtype=np.float32), []
        import torch

        outputs = model.encode(texts, batch_size=batch_size, output_value=None, show_progress_bar=progress)
        vectors = np.stack([o["sentence_embedding"].float().numpy() for o in outputs]).astype(np.float32)
        limit = int(getattr(model, "max_seq_length", 256) or 256)
        offsets = model.tokenizer(texts, truncation=True, max_length=limit, return_offsets_mapping=True)
        kept: list[State] = []
        for o, pairs in zip(outputs, offsets["offset_mapping"], strict=True):
            state = o["token_embeddings"][o["attention_mask"].bool()].to(torch.float16).numpy()
            kept.append((state, np.asarray(pairs, dtype=np.int32).reshape(-1, 2)))
        return vectors, kept

    def encode_query(self, query: str) -> np.ndarray:
        """One query's vector (not normalized) in float32, int8 scorers aside: the light encoder until a heavy one
        is loaded, then the torch BERT's float32 original, else the sentence-transformers model's."""
        light = self.light_encoder()
        if light is not None:
            vector: np.ndarray = light.encode([query])[0]
            return vector
        native = self.torch_encoder()
        if native is not None:  # float32 and bfloat16 scorers: the float32 torch BERT (bfloat16 is a copy)
            return native.encode_query(query)
        batches = self.int8_batches()
        if batches is not None:  # int8 scorers: their int8 model, on a batch of one as sentence-transformers runs it
            self.heavy_loaded()
            vectors, _ = batches.encode([query], batch_size=1, keep_states=False)
            return np.asarray(vectors[0])
        # float32 and bfloat16 scorers: the float32 model (load_sentence_encoder keeps it; bfloat16 is a copy)
        model = self.model() if self.precision == "int8" else load_sentence_encoder(self.model_name)
        return forward_one(model, query)  # traced once per float32 model, checked; quantized ones run eagerly


_MODULE_KEYS = {"max_seq_length", "do_lower_case"}  # sentence_bert_config.json settings the pass reads (bert_shape)
_SENTENCE = (None, "sentence_embedding")


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def padded_pipeline(folder: Path) -> tuple[str, int] | None:
    """``(pad token, how many Normalize modules follow the pooling)`` of a mean-pooling BERT folder whose
    sentence-transformers ``encode`` is exactly what :class:`Int8Batches` does, or ``None``: a folder the torch BERT
    does not read, a tokenizer that pads other than on the right with the pad token of type 0 (a ``BertTokenizer``
    as :class:`~promptzip.retrievers._torch_cross.BertSettings` reads it), a default prompt or truncated
    dimension, module settings the pass does not read, or a Normalize of anything but the sentence vector."""
    from promptzip.retrievers._light import bert_shape
    from promptzip.retrievers._torch_cross import BertSettings

    try:
        modules = _json(folder / "modules.json")
        module = _json(folder / "sentence_bert_config.json")
        model = _json(folder / "config_sentence_transformers.json")
        norms = [_json(folder / str(m.get("path", "")) / "config.json") for m in modules[2:]]
        settings = BertSettings.from_folder(folder)
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    fits = (
        bert_shape(folder) is not None
        and settings is not None
        and (settings.padding_side, settings.pad_type_id) == ("right", 0)
        and set(module) <= _MODULE_KEYS
        and not model.get("default_prompt_name")
        and model.get("truncate_dim") is None
        and all(n.get("module_input_name") in _SENTENCE and n.get("module_output_name") in _SENTENCE for n in norms)
    )
    return (settings.pad_token, len(norms)) if fits and settings is not None else None


class Int8Batches:
    """An int8 scorer's pass through the torch BERT's int8 copy, computed as sentence-transformers' ``encode`` runs
    its int8 model, so the vectors and token states are that model's bit for bit
    (``tests/test_dense_int8_torch.py``): an int8 model quantizes each linear layer's input per call, from the
    range of the whole padded batch, so the batches must be the same, and the same rows in them.

    * order and batches: ``numpy.argsort`` of minus each text's length in characters (its default sort, so ties
      fall as they do there), then ``batch_size`` texts to a batch;
    * rows: the word pieces of :class:`~promptzip.retrievers._torch_bert.TorchBertEncoder` (the fast tokenizer's),
      padded on the right to the batch's longest with the pad token, type 0, masked as transformers masks
      ``scaled_dot_product_attention`` (:func:`~promptzip.retrievers._torch_bert.padding_mask`);
    * pooling: sentence-transformers' mean, ``(states · mask).sum / clamp(mask.sum, 1e-9)`` in float32, then
      ``torch.nn.functional.normalize`` once per Normalize module.
    """

    def __init__(self, encoder: TorchBertEncoder, *, pad_id: int, normalize: int) -> None:
        self.encoder = encoder  # the int8 copy
        self.pad_id = pad_id
        self.normalize = normalize

    def encode(
        self, texts: list[str], *, batch_size: int, keep_states: bool, progress: bool = False
    ) -> tuple[np.ndarray, list[State]]:
        """The pooled (and normalized, as the folder's pipeline does) vectors of ``texts`` in their order and,
        with ``keep_states``, each text's token vectors (float16) and character offsets."""
        import torch

        from promptzip.retrievers._packed import progress_bar
        from promptzip.retrievers._torch_bert import padding_mask

        vectors = np.zeros((len(texts), self.encoder.hidden), dtype=np.float32)
        kept: list[State] = [(np.zeros((0, 0), np.float16), np.zeros((0, 2), np.int32))] * len(texts)
        order = np.argsort([-len(text) for text in texts])
        for start in progress_bar(range(0, len(texts), batch_size), progress):
            rows = order[start : start + batch_size]
            ids, offsets = self.encoder.tokenize([texts[i] for i in rows])
            width = max(len(row) for row in ids)
            with torch.inference_mode():
                input_ids = torch.tensor([row + [self.pad_id] * (width - len(row)) for row in ids], dtype=torch.long)
                lengths = torch.tensor([len(row) for row in ids])
                attention = (torch.arange(width)[None] < lengths[:, None]).long()
                hidden = self.encoder.module(input_ids, torch.arange(width)[None], padding_mask(attention))
                mask = attention.unsqueeze(-1).to(hidden.dtype)
                summed = (hidden * mask).sum(dim=1, dtype=torch.float32)
                pooled = summed / torch.clamp(mask.sum(dim=1, dtype=torch.float32), min=1e-9)
                for _ in range(self.normalize):
                    pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
                vectors[rows] = pooled.float().numpy()
                if keep_states:
                    for j, i in enumerate(rows):
                        state = hidden[j][attention[j].bool()].to(torch.float16).numpy()
                        kept[i] = (state, offsets[j])
        return vectors, kept if keep_states else []
