"""One small base class per role. Each public method is a template (validation, timing) around one protected
method that a subclass implements. Built-ins and plug-ins subclass these and register by name.

Example, a scorer that prefers short chunks::

    class Shortest(Scorer):
        name = "shortest"

        def _score(self, chunks, query):
            return [1.0 / (1 + len(c.text)) for c in chunks]

    registries.scorers.register("shortest", Shortest)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

from promptzip._errors import InputError, PromptZipError
from promptzip._tokenizers import Tokenizer
from promptzip._types import Chunk, Span, TokenScores, Variant

__all__ = ["Compressor", "Retriever", "Scorer", "TokenScorer", "span_chunks"]


class Scorer(ABC):
    """Relevance of each chunk to a query (``None``: query-agnostic importance). Higher is more relevant."""

    name = "scorer"

    def score(self, chunks: Sequence[Chunk], query: str | None) -> list[float]:
        query = _checked_query(query)
        if not chunks:
            return []
        return self._checked(self._score(chunks, query), len(chunks))

    @abstractmethod
    def _score(self, chunks: Sequence[Chunk], query: str | None) -> Sequence[float]: ...

    def score_spans(
        self, chunks: Sequence[Chunk], spans: Sequence[Sequence[tuple[int, int]]], query: str | None
    ) -> list[float]:
        """Relevance of character spans (``spans[i]``: ``(start, end)`` pairs inside ``chunks[i].text``), flat, in
        order. By default each span is scored as a chunk of its own (:func:`span_chunks`); an encoder may override
        ``_score_spans`` to score the spans in their context from one pass over each chunk
        (:class:`~promptzip.retrievers.dense.DenseScorer`)."""
        query = _checked_query(query)
        count = len(span_chunks(chunks, spans))
        return self._checked(self._score_spans(chunks, spans, query), count) if count else []

    def _score_spans(
        self, chunks: Sequence[Chunk], spans: Sequence[Sequence[tuple[int, int]]], query: str | None
    ) -> Sequence[float]:
        return self._score(span_chunks(chunks, spans), query)

    def score_pooled(
        self, chunks: Sequence[Chunk], parts: Sequence[Sequence[tuple[int, int]]], query: str | None
    ) -> list[float]:
        """Relevance of each chunk as a whole, given its parts (``parts[i]``: ``(start, end)`` spans of
        ``chunks[i].text`` that were scored already, e.g. its sentences). By default the chunks are scored directly;
        an encoder may override ``_score_pooled`` to pool the vectors it has for the parts, so a paragraph costs no
        forward pass of its own (:class:`~promptzip.retrievers.dense.DenseScorer`)."""
        query = _checked_query(query)
        if len(parts) != len(chunks):
            raise InputError(f"score_pooled needs one list of parts per chunk ({len(parts)} for {len(chunks)})")
        return self._checked(self._score_pooled(chunks, parts, query), len(chunks)) if chunks else []

    def _score_pooled(
        self, chunks: Sequence[Chunk], parts: Sequence[Sequence[tuple[int, int]]], query: str | None
    ) -> Sequence[float]:
        return self._score(chunks, query)

    def _checked(self, scores: Sequence[float], expected: int) -> list[float]:
        if len(scores) != expected:
            raise PromptZipError(f"scorer {self.name!r} returned {len(scores)} scores for {expected} chunks")
        return [s if math.isfinite(s) else 0.0 for s in map(float, scores)]

    @property
    def fingerprint(self) -> str:
        return self.name


def span_chunks(chunks: Sequence[Chunk], spans: Sequence[Sequence[tuple[int, int]]]) -> list[Chunk]:
    """The spans as chunks of their own, flat and in order (``spans[i]``: ``(start, end)`` inside ``chunks[i].text``),
    with offsets into the same source."""
    if len(spans) != len(chunks):
        raise InputError(f"score_spans needs one list of spans per chunk ({len(spans)} for {len(chunks)})")
    return [
        Chunk(c.text[a:b], c.source_id, c.start + a, c.start + b)
        for c, pairs in zip(chunks, spans, strict=True)
        for a, b in pairs
    ]


def _checked_query(query: str | None) -> str | None:
    if query is not None and not isinstance(query, str):
        raise InputError(f"query must be str or None, not {type(query).__name__}")
    return query.strip() if query else None


class TokenScorer(ABC):
    """Per-word keep scores of one chunk, with character offsets (query-agnostic, so cacheable)."""

    name = "token-scorer"

    def token_scores(self, chunk: Chunk) -> TokenScores:
        return self._token_scores(chunk)

    @abstractmethod
    def _token_scores(self, chunk: Chunk) -> TokenScores: ...


class Compressor(ABC):
    """Proposes variants for each chunk (keep, shorter forms, drop) with exact token costs and utilities.

    ``propose`` sees all chunks of a request at once so that models run batched and relevance is comparable
    across chunks; it returns one list of variants per chunk, in the same order. Protected chunks get exactly one
    variant, the chunk kept whole.
    """

    name = "compressor"

    def propose(self, chunks: Sequence[Chunk], query: str | None, tokenizer: Tokenizer) -> list[list[Variant]]:
        groups = self._propose(chunks, query, tokenizer)
        if len(groups) != len(chunks):
            raise PromptZipError(f"compressor {self.name!r} returned {len(groups)} groups for {len(chunks)} chunks")
        for chunk, group in zip(chunks, groups, strict=True):
            if chunk.protected and (len(group) != 1 or group[0].text != chunk.text):
                raise PromptZipError(f"compressor {self.name!r} must keep protected chunks whole")
        return groups

    @abstractmethod
    def _propose(self, chunks: Sequence[Chunk], query: str | None, tokenizer: Tokenizer) -> list[list[Variant]]: ...

    @property
    def fingerprint(self) -> str:
        return self.name


class Retriever(ABC):
    """Finds the ``k`` chunks of a corpus most relevant to a query."""

    name = "retriever"

    def retrieve(self, query: str, k: int) -> list[Chunk]:
        if not isinstance(query, str) or not query.strip():
            raise InputError("query must be a non-empty string")
        if k <= 0:
            raise InputError(f"k must be positive, got {k}")
        return self._retrieve(query, k)

    @abstractmethod
    def _retrieve(self, query: str, k: int) -> list[Chunk]: ...


def keep_variant(chunk: Chunk, tokens: int, utility: float = 0.0, relevance: float = 0.0) -> Variant:
    """The variant that keeps a chunk whole."""
    return Variant(chunk, "keep", chunk.text, tokens, utility, (Span(chunk.start, chunk.end),), relevance)


def drop_variant(chunk: Chunk, relevance: float = 0.0) -> Variant:
    return Variant(chunk, "drop", "", 0, 0.0, (), relevance)
