"""Token scorers' shared base (batched, windowed), model-free scorers (word length, random) and the content-hash
cache of token scores: scores are query-agnostic, so pruning a text at another rate costs no model call."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

import numpy as np

from promptzip._cache import Cache, NullCache, decode_array, encode_array, make_key
from promptzip._errors import InputError
from promptzip._roles import TokenScorer
from promptzip._types import Chunk, TokenScores
from promptzip.compressors.pruning import (
    FloatArray,
    IntArray,
    word_units,
)

__all__ = ["BatchTokenScorer", "RandomTokenScorer", "WordLengthScorer", "cached_token_scores"]


class BatchTokenScorer(TokenScorer):
    """A token scorer that scores many texts in one batched model call (windows of all texts together).

    Subclasses implement :meth:`_score_texts`; ``token_scores`` and the compressors go through it. Scores are
    keep-probabilities in [0, 1], one per :func:`word_units` unit.
    """

    name = "batch-token-scorer"

    def _token_scores(self, chunk: Chunk) -> TokenScores:
        return self.token_scores_many([chunk.text])[0]

    def token_scores_many(self, texts: Sequence[str], question: str | None = None) -> list[TokenScores]:
        """Scores of many texts in one batched call; ``question`` only for scorers with a conditioned mode."""
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InputError(f"text {i} must be str, not {type(t).__name__}")
        units = [word_units(t) for t in texts]
        todo = [i for i, (s, _) in enumerate(units) if len(s)]
        subset = [texts[i] for i in todo]
        values = self._score_texts(subset, [units[i] for i in todo], question) if todo else []
        out = [TokenScores(t, (), (), ()) for t in texts]
        for i, v in zip(todo, values, strict=True):
            s, e = units[i]
            v = np.clip(np.nan_to_num(np.asarray(v, dtype=np.float64), nan=0.0), 0.0, 1.0)
            out[i] = TokenScores(texts[i], tuple(s.tolist()), tuple(e.tolist()), tuple(v.tolist()))
        return out

    @abstractmethod
    def _score_texts(
        self, texts: Sequence[str], units: Sequence[tuple[IntArray, IntArray]], question: str | None = None
    ) -> list[FloatArray]:
        """One score array per text, aligned with its units (``question``: conditioned mode, where supported)."""

    @property
    def fingerprint(self) -> str:
        return self.name


class WordLengthScorer(BatchTokenScorer):
    """A model-free scorer: longer words score higher (``min(1, len / 12)``). A cheap heuristic and the test double
    of the token-level compressors (deterministic, no model)."""

    name = "word-length"

    def _score_texts(
        self, texts: Sequence[str], units: Sequence[tuple[IntArray, IntArray]], question: str | None = None
    ) -> list[FloatArray]:
        return [np.minimum(1.0, (e - s).astype(np.float64) / 12.0) for s, e in units]


class RandomTokenScorer(BatchTokenScorer):
    """Uniform random keep scores, seeded by the text and ``seed`` (the floor every real scorer must beat)."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    @property
    def fingerprint(self) -> str:
        return f"random:{self.seed}"

    def _score_texts(
        self, texts: Sequence[str], units: Sequence[tuple[IntArray, IntArray]], question: str | None = None
    ) -> list[FloatArray]:
        import hashlib

        out: list[FloatArray] = []
        for text, (s, _) in zip(texts, units, strict=True):
            seed = int.from_bytes(hashlib.sha256(f"{self.seed}:{text}".encode()).digest()[:8], "big")
            out.append(np.random.default_rng(seed).random(len(s)))
        return out


def cached_token_scores(
    scorer: TokenScorer, texts: Sequence[str], cache: Cache | None, *, question: str | None = None
) -> list[TokenScores]:
    """Token scores of ``texts``, each computed once ever when a cache is given (key: scorer fingerprint, the text
    and, in a conditioned mode, the question; value: an ``(n, 3)`` float64 array of start, end, score). Misses are
    scored in one batch."""
    cache = cache if cache is not None else NullCache()
    fp = getattr(scorer, "fingerprint", scorer.name)
    parts = (question,) if question else ()
    keys = [make_key("token-scores:" + str(fp), t, *parts) for t in texts]
    text_of = dict(zip(keys, texts, strict=True))
    found = cache.get_many(sorted(text_of))
    out: dict[str, TokenScores] = {}
    for key, raw in found.items():
        try:
            array = decode_array(raw)
        except InputError:
            continue
        if array.ndim == 2 and array.shape[1] == 3:
            text = text_of[key]
            out[key] = TokenScores(
                text,
                tuple(array[:, 0].astype(np.int64).tolist()),
                tuple(array[:, 1].astype(np.int64).tolist()),
                tuple(array[:, 2].tolist()),
            )
    missing = list(dict.fromkeys(k for k in keys if k not in out))
    if missing:
        first = {k: text_of[k] for k in missing}
        if isinstance(scorer, BatchTokenScorer):
            fresh = scorer.token_scores_many(list(first.values()), question)
        else:
            fresh = [scorer.token_scores(Chunk(t)) for t in first.values()]
        puts: dict[str, bytes] = {}
        for key, ts in zip(missing, fresh, strict=True):
            out[key] = ts
            puts[key] = encode_array(np.column_stack([ts.starts, ts.ends, ts.scores]).astype(np.float64).reshape(-1, 3))
        cache.put_many(puts)
    return [out[k] for k in keys]
