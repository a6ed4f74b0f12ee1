"""Packed encoding: many short texts share one row of the encoder, each attending only to itself.

A request's sentences are short and uneven (5 to 80 word pieces). Batched the usual way, every batch is padded to
its longest member and the encoder computes the padding too; on the 1k-token bench input that is 20-40 % of the
work, and the small matrices of short batches run the CPU's GEMM kernels below their speed. Packed, the texts are
laid end to end into rows of ``row_tokens`` word pieces (best-fit, longest first), each text gets its own
position ids (0, 1, ...) and a block-diagonal attention mask, so its token vectors are the ones it would get alone
(the attention of a text never sees its neighbours), and the encoder runs on full rows.

This is exact for encoders whose position ids are plain offsets and whose pooling is a mean over the text's tokens
(BERT-type models in a sentence-transformers ``Transformer → Pooling(mean) → [Normalize]`` pipeline, such as the
packaged all-MiniLM-L6-v2). :func:`packer_for` checks the pipeline and then checks the result once per model
against the library's own ``encode``; any other model, or one that fails the check, is encoded the usual way.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from promptzip._deadline import check

__all__ = ["Encoded", "Packer", "packer_for"]

_PACKABLE_TYPES = frozenset({"bert"})  # position ids are arange(n); RoBERTa-type models offset them by padding_idx
_checked: dict[int, tuple[Any, Packer | None]] = {}
_checked_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Encoded:
    """One pass over some texts: unit sentence vectors, and per text its token vectors (float16, special tokens
    included) with their character offsets (``(0, 0)`` for special tokens)."""

    vectors: np.ndarray
    states: list[np.ndarray]
    offsets: list[np.ndarray]


class Packer:
    """Encodes texts packed ``row_tokens`` word pieces to a row, ``rows`` rows to a forward pass."""

    def __init__(self, model: Any, *, row_tokens: int = 128, rows: int = 8) -> None:
        self.model = model
        self.row_tokens = row_tokens
        self.rows = rows
        self.limit = int(getattr(model, "max_seq_length", 256) or 256)

    def encode(self, texts: Sequence[str], *, states: bool = False, progress: bool = False) -> Encoded:
        """Unit vectors of ``texts``; with ``states``, also their token vectors and offsets (else empty lists)."""
        import torch

        tokenizer, bert = self.model.tokenizer, self.model[0].auto_model
        if not texts:
            return Encoded(np.zeros((0, bert.config.hidden_size), dtype=np.float32), [], [])
        enc = tokenizer(list(texts), truncation=True, max_length=self.limit, return_offsets_mapping=True)
        ids: list[list[int]] = enc["input_ids"]
        offsets = [np.asarray(o, dtype=np.int32).reshape(-1, 2) for o in enc["offset_mapping"]]
        bins = self._bins([len(x) for x in ids])
        kept: list[np.ndarray | None] = [None] * len(texts)
        means = np.zeros((len(texts), bert.config.hidden_size), dtype=np.float32)
        batches = [bins[i : i + self.rows] for i in range(0, len(bins), self.rows)]
        for batch in _progress(batches, progress):
            check("the encoder")
            width = max(sum(len(ids[t]) for t in row) for row in batch)
            input_ids = torch.zeros((len(batch), width), dtype=torch.long)
            positions = torch.zeros((len(batch), width), dtype=torch.long)
            segment = torch.full((len(batch), width), -1, dtype=torch.long)
            for r, row in enumerate(batch):
                at = 0
                for k, t in enumerate(row):
                    n = len(ids[t])
                    input_ids[r, at : at + n] = torch.tensor(ids[t])
                    positions[r, at : at + n] = torch.arange(n)
                    segment[r, at : at + n] = k
                    at += n
            # Block-diagonal: a token sees its own text only; padding sees itself (a fully masked row would be NaN).
            mask = segment[:, :, None] == segment[:, None, :]
            mask &= (segment[:, None, :] >= 0) | torch.eye(width, dtype=torch.bool)[None]
            with torch.inference_mode():
                hidden = bert(
                    input_ids=input_ids,
                    attention_mask=mask[:, None],
                    token_type_ids=torch.zeros_like(input_ids),
                    position_ids=positions,
                ).last_hidden_state.float()
            for r, row in enumerate(batch):
                at = 0
                for t in row:
                    n = len(ids[t])
                    block = hidden[r, at : at + n]
                    means[t] = block.mean(dim=0).numpy()
                    if states:
                        kept[t] = block.to(torch.float16).numpy()
                    at += n
        norms = np.linalg.norm(means, axis=1, keepdims=True)
        vectors = means / np.where(norms > 0, norms, 1.0)
        if not states:
            return Encoded(vectors, [], [])
        return Encoded(vectors, [k for k in kept if k is not None], offsets)

    def _bins(self, lengths: Sequence[int]) -> list[list[int]]:
        """Best-fit decreasing: rows of at most ``row_tokens`` (a longer text gets a row of its own). Rows are found
        by their free room (at most ``row_tokens`` buckets), so a 100k-text corpus packs in linear time."""
        rows: list[list[int]] = []
        by_room: dict[int, list[int]] = {}  # free room -> the rows with exactly that much
        for t in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
            n = lengths[t]
            room = next((f for f in range(n, self.row_tokens) if by_room.get(f)), None)
            if room is None:
                rows.append([t])
                r, left = len(rows) - 1, self.row_tokens - n
            else:
                r, left = by_room[room].pop(), room - n
                rows[r].append(t)
            if left > 0:
                by_room.setdefault(left, []).append(r)
        return rows


def _progress(batches: list[Any], show: bool) -> Any:
    if not show:
        return batches
    from tqdm.auto import tqdm

    return tqdm(batches, desc="Encoding", unit="batch")


def _pipeline_is_packable(model: Any) -> bool:
    try:
        modules = list(model)
        names = [type(m).__name__ for m in modules]
        config = modules[0].auto_model.config
    except (AttributeError, IndexError, TypeError):
        return False
    if names[:2] != ["Transformer", "Pooling"] or any(n != "Normalize" for n in names[2:]):
        return False
    if getattr(modules[1], "pooling_mode", None) != "mean":
        return False
    tokenizer = getattr(model, "tokenizer", None)
    return config.model_type in _PACKABLE_TYPES and bool(getattr(tokenizer, "is_fast", False))


def packer_for(model: Any) -> Packer | None:
    """A :class:`Packer` for ``model`` when packing is exact for it, else ``None``; decided once per model object
    (the pipeline's modules, then one comparison with the library's ``encode`` on texts of unequal length)."""
    key = id(model)
    with _checked_lock:
        found = _checked.get(key)
        if found is not None and found[0] is model:
            return found[1]
    packer = Packer(model) if _pipeline_is_packable(model) else None
    if packer is not None:
        probe = [
            "Packed texts must encode as they do alone.",
            "A second, longer probe sentence, so that the two texts differ in length and share a row when packed.",
            "Short.",
        ]
        ours = packer.encode(probe).vectors
        theirs = np.asarray(model.encode(probe, convert_to_numpy=True), dtype=np.float32)
        theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
        if float((ours * theirs).sum(axis=1).min()) < 0.995:
            packer = None
    with _checked_lock:
        _checked[key] = (model, packer)
    return packer
