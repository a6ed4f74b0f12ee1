"""BM25 relevance of chunks to a query, computed over the chunks of the request itself.

Only the query's terms are counted, so the cost is one pass over the chunk text: linear in the input.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence

import numpy as np

from promptzip._fingerprint import derived_fingerprint
from promptzip._roles import Scorer
from promptzip._types import Chunk

__all__ = ["BM25Scorer", "terms"]

_WORD = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset(
    "a an and are as at be been being but by can could did do does for from had has have he her hers him"
    " his how i if in into is it its me my no not of on or our she so than that the their them then there"
    " these they this those to too us was we were what when where which while who whom why will with would"
    " you your yours also am any each few more most other some such only own same very just s t".split()
)
_SUFFIXES = ("ingly", "edly", "ings", "ing", "ies", "ied", "ed", "es", "s", "ly")


@functools.lru_cache(maxsize=1 << 16)  # a request repeats its words many times; stemming them was the BM25 hot spot
def _stem(word: str) -> str:
    if word.isdigit() or len(word) <= 3:
        return word
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            stem = word[: -len(suffix)]
            return stem + "y" if suffix in ("ies", "ied") else stem
    return word


def terms(text: str) -> list[str]:
    """Lower-cased, stop-word-free, lightly stemmed terms."""
    return [_stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


@functools.lru_cache(maxsize=1 << 14)  # warm requests score the same sentences again: split and stem them once
def _chunk_terms(text: str) -> tuple[int, dict[str, int]]:
    """A text's number of terms and each term's frequency: a row of the collection costs one dict lookup per query
    term, not a pass over its words."""
    counts: dict[str, int] = {}
    found = terms(text)
    for w in found:
        counts[w] = counts.get(w, 0) + 1
    return len(found), counts


class BM25Scorer(Scorer):
    """Okapi BM25 with the request's chunks as the collection (``k1``, ``b`` as usual)."""

    name = "bm25"

    def __init__(self, *, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b

    def _score(self, chunks: Sequence[Chunk], query: str | None) -> Sequence[float]:
        if not query:
            return [0.0] * len(chunks)
        query_terms = sorted(set(terms(query)))
        if not query_terms:
            return [0.0] * len(chunks)
        index = {t: i for i, t in enumerate(query_terms)}
        tf = np.zeros((len(chunks), len(query_terms)), dtype=np.float32)
        lengths = np.zeros(len(chunks), dtype=np.float32)
        for row, chunk in enumerate(chunks):
            length, counts = _chunk_terms(chunk.text)
            lengths[row] = length
            for t, col in index.items():
                freq = counts.get(t)
                if freq is not None:
                    tf[row, col] = freq
        n = len(chunks)
        df = (tf > 0).sum(axis=0)
        idf = np.array([math.log(1 + (n - d + 0.5) / (d + 0.5)) for d in df], dtype=np.float32)
        avg = float(lengths.mean()) or 1.0
        norm = self.k1 * (1 - self.b + self.b * lengths / avg)
        # an element-wise sum, not ``@ idf``: numpy 2's BLAS matmul raises spurious "invalid value" warnings on
        # some CPUs (numpy#28967) although every value here is finite
        scores = (tf * (self.k1 + 1) / (tf + norm[:, None]) * idf).sum(axis=1)
        return [float(s) for s in scores]

    @property
    def fingerprint(self) -> str:
        return derived_fingerprint(self)
