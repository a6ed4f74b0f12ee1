"""Hybrid relevance: dense cosine plus max-normalized BM25, so exact terms (names, numbers) that a single dense
vector misses still count ("On the Theoretical Limitations of Embedding-Based Retrieval")."""

from __future__ import annotations

from collections.abc import Sequence

from promptzip._fingerprint import derived_fingerprint
from promptzip._roles import Scorer
from promptzip._types import Chunk

__all__ = ["HybridScorer"]


class HybridScorer(Scorer):
    """``(1 - weight) · dense + weight · bm25 / max(bm25)`` over the chunks of the request."""

    name = "hybrid"

    def __init__(self, dense: Scorer, sparse: Scorer, *, weight: float = 0.3) -> None:
        self.dense = dense
        self.sparse = sparse
        self.weight = weight

    def _score(self, chunks: Sequence[Chunk], query: str | None) -> Sequence[float]:
        dense = self.dense.score(chunks, query)
        if not query:
            return dense
        return self._mix(dense, self.sparse.score(chunks, query))

    def _score_spans(
        self, chunks: Sequence[Chunk], spans: Sequence[Sequence[tuple[int, int]]], query: str | None
    ) -> Sequence[float]:
        """The dense part from the dense scorer's ``score_spans`` (spans in context), BM25 on the span texts."""
        dense = self.dense.score_spans(chunks, spans, query)
        if not query:
            return dense
        return self._mix(dense, self.sparse.score_spans(chunks, spans, query))

    def _score_pooled(
        self, chunks: Sequence[Chunk], parts: Sequence[Sequence[tuple[int, int]]], query: str | None
    ) -> Sequence[float]:
        """The dense part pooled from the parts (``score_pooled``), BM25 on the whole chunks."""
        dense = self.dense.score_pooled(chunks, parts, query)
        if not query:
            return dense
        return self._mix(dense, self.sparse.score(chunks, query))

    def _mix(self, dense: Sequence[float], sparse: Sequence[float]) -> list[float]:
        top = max(sparse, default=0.0)
        norm = [s / top for s in sparse] if top > 0 else [0.0] * len(sparse)
        return [(1 - self.weight) * d + self.weight * s for d, s in zip(dense, norm, strict=True)]

    @property
    def fingerprint(self) -> str:
        return derived_fingerprint(self)
