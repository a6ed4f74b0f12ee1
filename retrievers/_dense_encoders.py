"""Which encoder a :class:`~promptzip.retrievers.dense.DenseScorer` runs, for sentences and for queries.

Three encoders compute the same vectors of one model folder, and the cheapest that applies is used:

* the NumPy encoder of :mod:`promptzip.retrievers._light` (no torch): queries, and the token vectors of a few
  sentences, until a heavy encoder is loaded;
* the torch BERT of :mod:`promptzip.retrievers._torch_bert` (no sentence-transformers or transformers): the packed
  pass of float32 and bfloat16 scorers over a mean-pooling BERT folder, and their queries once it is loaded;
* the sentence-transformers model: everything else (int8 scorers, other model types, ``packed=False``, and all of it
  under ``PROMPTZIP_TORCH_ENCODER=0``), packed where packing is exact for it (:mod:`promptzip.retrievers._packed`),
  else batched and padded.

Once a heavy encoder (torch) is loaded for sentences, it serves the queries too and the light encoder is let go: the
query vectors are the same, and the light encoder's copy of the weights is memory the process no longer needs.
"""

from __future__ import annotations

import logging
import os
import threading
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

__all__ = ["LIGHT_ENV", "TORCH_ENV", "DenseEncoders", "State", "switched_off"]

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
        self.light: LightEncoder | None = None  # the light encoder, built on the first query it serves
        self.light_tried = False
        self._lock = threading.Lock()  # guards the light and the torch encoder's one-time loading

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
        sentence-transformers' batched pass, whose per-batch quantization packing would not reproduce),
        ``PROMPTZIP_TORCH_ENCODER`` off, or a folder that is not a mean-pooling BERT it computes exactly."""
        if not self.packed or self.precision == "int8" or switched_off(TORCH_ENV):
            return None
        with self._lock:
            if not self.torch_tried:
                self.torch_tried = True
                from promptzip.retrievers._torch_bert import torch_bert_encoder

                try:
                    found = torch_bert_encoder(resolve_model(self.model_name).path)
                except ModelNotAvailable as exc:  # an unreadable folder: the sentence-transformers loader decides
                    logger.debug("no torch encoder for %s: %s", self.model_name, exc)
                    found = None
                self.torch = found
            return self.torch

    def packer(self) -> PackedEncoder | None:
        """What encodes sentences packed (:mod:`promptzip.retrievers._packed`): the torch BERT where it applies,
        else the sentence-transformers model's packer where packing is exact for it, else ``None``."""
        native = self.torch_encoder()
        if native is not None:
            self.heavy_loaded()
            return native.in_precision(self.precision)
        if not self.packed:
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
        """``texts`` through sentence-transformers' own ``encode``: batches of ``batch_size``, padded."""
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
        # float32 and bfloat16 scorers: the float32 model (load_sentence_encoder keeps it; bfloat16 is a copy)
        model = self.model() if self.precision == "int8" else load_sentence_encoder(self.model_name)
        return forward_one(model, query)  # traced once per float32 model, checked; quantized ones run eagerly
