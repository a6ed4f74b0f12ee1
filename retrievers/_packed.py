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

:class:`PackedEncoder` holds the packing; :class:`Packer` runs it through a sentence-transformers model, and
:class:`~promptzip.retrievers._torch_bert.TorchBertEncoder` through a torch BERT read from the folder without
transformers (what the dense scorer uses where it applies).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from promptzip._deadline import check

__all__ = ["Encoded", "PackedEncoder", "Packer", "packer_for"]

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


class PackedEncoder:
    """Encodes texts packed ``row_tokens`` word pieces to a row, ``rows`` rows to a forward pass.

    The template: tokenize (:meth:`tokenize`), pack, run each batch of rows through the encoder (:meth:`_forward`),
    mean-pool each text's block, normalize. Subclasses give the two steps and set ``hidden`` (the width of a token
    vector) and ``limit`` (the word pieces a text is truncated to): :class:`Packer` for a sentence-transformers
    model, :class:`~promptzip.retrievers._torch_bert.TorchBertEncoder` for a BERT read without transformers. Both
    build the same rows (padding included), so an int8 model, whose activations are quantized per batch, gives the
    same vectors through either.
    """

    hidden: int
    limit: int

    def __init__(self, *, row_tokens: int = 128, rows: int = 8) -> None:
        self.row_tokens = row_tokens
        self.rows = rows

    def tokenize(self, texts: list[str]) -> tuple[list[list[int]], list[np.ndarray]]:
        """Each text's word-piece ids (special tokens included, truncated to ``limit``) and character offsets."""
        raise NotImplementedError

    def _forward(self, input_ids: Any, positions: Any, mask: Any) -> Any:
        """The last hidden state, float32 ``[rows, width, hidden]``, of ``input_ids`` / ``positions`` (long
        ``[rows, width]``) under ``mask`` (bool ``[rows, width, width]``, True where a token may attend)."""
        raise NotImplementedError

    def encode(self, texts: Sequence[str], *, states: bool = False, progress: bool = False) -> Encoded:
        """Unit vectors of ``texts``; with ``states``, also their token vectors and offsets (else empty lists)."""
        import torch

        if not texts:
            return Encoded(np.zeros((0, self.hidden), dtype=np.float32), [], [])
        ids, offsets = self.tokenize(list(texts))
        bins = self._bins([len(x) for x in ids])
        kept: list[np.ndarray | None] = [None] * len(texts)
        means = np.zeros((len(texts), self.hidden), dtype=np.float32)
        batches = [bins[i : i + self.rows] for i in range(0, len(bins), self.rows)]
        for batch in progress_bar(batches, progress):
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
                hidden = self._forward(input_ids, positions, mask)
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


class Packer(PackedEncoder):
    """Packed encoding through a sentence-transformers model: its fast tokenizer and its Hugging Face BERT."""

    def __init__(self, model: Any, *, row_tokens: int = 128, rows: int = 8) -> None:
        super().__init__(row_tokens=row_tokens, rows=rows)
        self.model = model
        self.limit = int(getattr(model, "max_seq_length", 256) or 256)
        self.hidden = int(model[0].auto_model.config.hidden_size)

    def tokenize(self, texts: list[str]) -> tuple[list[list[int]], list[np.ndarray]]:
        enc = self.model.tokenizer(texts, truncation=True, max_length=self.limit, return_offsets_mapping=True)
        return enc["input_ids"], [np.asarray(o, dtype=np.int32).reshape(-1, 2) for o in enc["offset_mapping"]]

    def _forward(self, input_ids: Any, positions: Any, mask: Any) -> Any:
        import torch

        return (
            self.model[0]
            .auto_model(
                input_ids=input_ids,
                attention_mask=mask[:, None],
                token_type_ids=torch.zeros_like(input_ids),
                position_ids=positions,
            )
            .last_hidden_state.float()
        )


def progress_bar(batches: Sequence[Any], show: bool) -> Any:
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
