"""Fusion of several retrievers: reciprocal rank fusion (Cormack et al., 2009) or min-max normalized score
interpolation, and :class:`HybridRetriever` built on them. Chunk identity and the indexed-corpus base live in
:mod:`promptzip.retrievers._corpus` (re-exported here for existing imports).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from promptzip._errors import ConfigError, check_int
from promptzip._roles import Retriever
from promptzip._types import Chunk
from promptzip.retrievers._corpus import MANIFEST, CorpusRetriever, chunk_id, scored

__all__ = [
    "MANIFEST",
    "CorpusRetriever",
    "HybridRetriever",
    "chunk_id",
    "interpolate",
    "reciprocal_rank_fusion",
    "scored",
]


# ----------------------------------------------------------------------------------------------------- fusion


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]], *, k: int = 60, weights: Sequence[float] | None = None
) -> dict[str, float]:
    """RRF: ``score(d) = Σ_i w_i / (k + rank_i(d))`` over the lists that contain ``d`` (ranks start at 1).

    >>> reciprocal_rank_fusion([["a", "b"], ["b"]], k=1)
    {'a': 0.5, 'b': 0.8333333333333333}
    """
    weights = _weights(weights, len(rankings))
    fused: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, key in enumerate(ranking, start=1):
            fused[key] = fused.get(key, 0.0) + weight / (k + rank)
    return fused


def interpolate(
    score_lists: Sequence[Mapping[str, float]], *, weights: Sequence[float] | None = None
) -> dict[str, float]:
    """``Σ_i w_i · minmax_i(d) / Σ_i w_i``: each list's scores min-max normalized to [0, 1] over that list (a list
    whose scores are all equal maps them to 1); a chunk missing from a list counts 0 there.

    >>> interpolate([{"a": 2.0, "b": 1.0}, {"b": 0.5}])
    {'a': 0.5, 'b': 0.5}
    """
    weights = _weights(weights, len(score_lists))
    total = sum(weights)
    fused: dict[str, float] = {}
    for scores, weight in zip(score_lists, weights, strict=True):
        if not scores:
            continue
        low, high = min(scores.values()), max(scores.values())
        span = high - low
        for key, value in scores.items():
            norm = (value - low) / span if span > 0 else 1.0
            fused[key] = fused.get(key, 0.0) + weight * norm / total
    return fused


def _weights(weights: Sequence[float] | None, n: int) -> list[float]:
    if weights is None:
        return [1.0] * n
    out = [float(w) for w in weights]
    if len(out) != n or any(not math.isfinite(w) or w < 0 for w in out) or not any(out):
        raise ConfigError(f"weights must be {n} finite non-negative numbers, not all zero; got {list(weights)}")
    return out


def _rrf_mode(runs: Sequence[list[Chunk]], weights: Sequence[float], rrf_k: int) -> dict[str, float]:
    return reciprocal_rank_fusion([[chunk_id(c) for c in run] for run in runs], k=rrf_k, weights=weights)


def _interpolate_mode(runs: Sequence[list[Chunk]], weights: Sequence[float], rrf_k: int) -> dict[str, float]:
    return interpolate(
        [{chunk_id(c): float(c.metadata.get("score", 0.0)) for c in run} for run in runs], weights=weights
    )


_MODES: dict[str, Callable[[Sequence[list[Chunk]], Sequence[float], int], dict[str, float]]] = {
    "rrf": _rrf_mode,
    "interpolate": _interpolate_mode,
}


class HybridRetriever(Retriever):
    """Fuses any retrievers: ``mode="rrf"`` (reciprocal rank fusion, ``rrf_k=60`` as in Cormack et al.) or
    ``mode="interpolate"`` (min-max normalized scores, weighted).

    Each retriever is asked for ``max(k, fetch_k)`` chunks; chunks are matched across retrievers by
    :func:`chunk_id`. Results carry the fused ``score``, ``retriever="hybrid"``, and per-retriever ``ranks`` and
    ``scores`` (keyed by retriever name, ``#2`` appended on a repeated name). Ties keep the order of first
    appearance (best rank, then retriever order), so results are deterministic.

    RRF needs no score calibration, so it is the default; where both retrievers' scores are meaningful, try
    interpolation: on SQuAD v1.1 dev (each whole article the corpus, 10,565 questions) it found the gold paragraph
    at rank 1 for .836 of questions against .770 for RRF, .808 for BM25 and .675 for dense alone, and in the top 5
    for .972 / .958 / .951 / .909 (``evals/results/retrieval.md``).

    Dense plus BM25 is promptzip's default, because a single dense vector misses exact matches (names, numbers)
    that sparse matching finds ("On the Theoretical Limitations of Embedding-Based Retrieval")::

        hybrid = HybridRetriever.default()          # packaged MiniLM + FAISS, and BM25, fused by RRF
        hybrid.add(chunks)
        hybrid.retrieve("who designed the tower?", k=5)
    """

    name = "hybrid"

    def __init__(
        self,
        retrievers: Sequence[Retriever],
        *,
        mode: str = "rrf",
        rrf_k: int = 60,
        weights: Sequence[float] | None = None,
        fetch_k: int = 50,
    ) -> None:
        if isinstance(retrievers, Retriever) or not retrievers:
            raise ConfigError("HybridRetriever needs a sequence of at least one retriever")
        if not all(isinstance(r, Retriever) for r in retrievers):
            raise ConfigError("HybridRetriever fuses Retriever instances only")
        if mode not in _MODES:
            raise ConfigError(f"unknown fusion mode {mode!r}; known: {', '.join(sorted(_MODES))}")
        check_int(rrf_k, "rrf_k", minimum=0)
        check_int(fetch_k, "fetch_k")
        self.retrievers = tuple(retrievers)
        self.mode = mode
        self.rrf_k = rrf_k
        self.weights = tuple(_weights(weights, len(self.retrievers)))
        self.fetch_k = fetch_k
        names: list[str] = []
        for r in self.retrievers:
            label, n = r.name, 2
            while label in names:
                label, n = f"{r.name}#{n}", n + 1
            names.append(label)
        self.labels = tuple(names)

    @classmethod
    def default(cls, model: str = "minilm", **kwargs: Any) -> HybridRetriever:
        """Dense (``model`` + FAISS) and BM25, fused by RRF; ``kwargs`` go to :class:`HybridRetriever`."""
        from promptzip.retrievers.bm25 import BM25Retriever
        from promptzip.retrievers.faiss_index import DenseRetriever

        return cls([DenseRetriever(model), BM25Retriever()], **kwargs)

    def add(self, chunks: Iterable[Chunk]) -> list[str]:
        """Add ``chunks`` to every retriever (all must be :class:`CorpusRetriever`\\ s); return their ids."""
        corpora = self._corpora()
        items = list(chunks)
        for corpus in corpora:  # check everywhere first, so a refusal leaves every corpus unchanged
            with corpus._lock:
                corpus._check_new(items)
        ids: list[str] = []
        for corpus in corpora:
            ids = corpus.add(items)
        return ids

    def delete(self, ids: Iterable[str], *, missing_ok: bool = False) -> int:
        """Delete ``ids`` from every retriever; return how many were removed from the first."""
        wanted = [ids] if isinstance(ids, str) else list(ids)
        counts = [corpus.delete(wanted, missing_ok=missing_ok) for corpus in self._corpora()]
        return counts[0]

    def _corpora(self) -> list[CorpusRetriever]:
        corpora = [r for r in self.retrievers if isinstance(r, CorpusRetriever)]
        if len(corpora) != len(self.retrievers):
            raise ConfigError("add/delete need every fused retriever to hold a corpus (CorpusRetriever)")
        return corpora

    def _retrieve(self, query: str, k: int) -> list[Chunk]:
        depth = max(k, self.fetch_k)
        runs = [r.retrieve(query, depth) for r in self.retrievers]
        fused = _MODES[self.mode](runs, self.weights, self.rrf_k)
        first: dict[str, tuple[int, int]] = {}
        chunks: dict[str, Chunk] = {}
        ranks: dict[str, dict[str, int]] = {}
        scores: dict[str, dict[str, float]] = {}
        for index, (label, run) in enumerate(zip(self.labels, runs, strict=True)):
            for rank, chunk in enumerate(run, start=1):
                key = chunk_id(chunk)
                chunks.setdefault(key, chunk)
                first[key] = min(first.get(key, (rank, index)), (rank, index))
                ranks.setdefault(key, {})[label] = rank
                value = chunk.metadata.get("score")
                if isinstance(value, int | float) and not isinstance(value, bool):
                    scores.setdefault(key, {})[label] = float(value)
        order = sorted(fused, key=lambda key: (-fused[key], first[key]))[:k]
        out = []
        for key in order:
            base = chunks[key]
            original = {m: v for m, v in base.metadata.items() if m not in ("score", "retriever", "ranks", "scores")}
            plain = Chunk(base.text, base.source_id, base.start, base.end, original, base.protected)
            out.append(scored(plain, fused[key], self.name, ranks=ranks[key], scores=scores.get(key, {})))
        return out
