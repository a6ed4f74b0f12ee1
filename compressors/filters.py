"""Filters shared by compressors: near-duplicate detection."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from promptzip._tokenizers import TextMemo

__all__ = ["duplicate_mask"]

_SPACE = re.compile(r"\W+", re.UNICODE)
# The same sentences come back request after request (a RAG corpus, a conversation): their normal forms are
# remembered (bounded by characters, keyed by the text itself) instead of a regex pass over every sentence each time.
_normals: TextMemo[str] = TextMemo(max_chars=2_000_000, max_text=4096)


def _normal(text: str) -> str:
    found = _normals.get(text)
    if found is None:
        found = _SPACE.sub(" ", text.lower()).strip()
        _normals.put(text, found)
    return found


def duplicate_mask(
    texts: Sequence[str],
    embeddings: np.ndarray | None = None,
    *,
    threshold: float = 0.97,
    candidates: Sequence[int] | None = None,
) -> list[bool]:
    """``True`` for each text that repeats an earlier one: the same words (case and punctuation aside), or, among
    ``candidates`` (indices, e.g. the most relevant ones), a cosine similarity ≥ ``threshold`` with an earlier
    candidate. Exact repeats are found in linear time; the embedding check is quadratic in ``len(candidates)``
    only, so callers pass a bounded set."""
    dup = [False] * len(texts)
    seen: set[str] = set()
    for i, text in enumerate(texts):
        key = _normal(text)
        if key in seen:
            dup[i] = True
        seen.add(key)
    if embeddings is None or not len(texts):
        return dup
    idx = sorted(set(range(len(texts)) if candidates is None else candidates))
    idx = [i for i in idx if not dup[i]]
    if len(idx) < 2:
        return dup
    sub = embeddings[idx]
    sims = sub @ sub.T
    np.fill_diagonal(sims, 0.0)
    upper = np.triu(sims >= threshold, k=1)
    for col in np.nonzero(upper.any(axis=0))[0]:
        dup[idx[int(col)]] = True
    return dup
