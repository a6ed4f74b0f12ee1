"""RerankedScorer: a first stage scores every chunk, a second re-orders the best (model-free here; a real
cross-encoder in the pipeline: tests/test_rerank.py)."""

from __future__ import annotations

import pytest

from promptzip import ConfigError
from promptzip._roles import Scorer
from promptzip._types import Chunk
from promptzip.retrievers.rerank import RerankedScorer
from promptzip.testing import KeywordScorer


class Reverse(Scorer):
    """A 'reranker' that prefers what the first stage liked least, to make re-ordering visible."""

    name = "reverse"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def _score(self, chunks, query):  # type: ignore[no-untyped-def]
        self.calls.append(len(chunks))
        return [-KeywordScorer().score([c], query)[0] + 0.001 * i for i, c in enumerate(chunks)]


TEXTS = ["alpha beta gamma", "alpha beta", "alpha", "nothing here", "also nothing"]
CHUNKS = [Chunk(t, "s", 0, len(t)) for t in TEXTS]


def test_reranking_reorders_the_top_and_keeps_the_score_distribution() -> None:
    first = KeywordScorer().score(CHUNKS, "alpha beta gamma")
    second = Reverse()
    scores = RerankedScorer(KeywordScorer(), second, top_k=3).score(CHUNKS, "alpha beta gamma")
    assert second.calls == [3]  # only the top 3 went to the reranker
    assert sorted(scores) == sorted(first)  # same values, handed out again
    assert scores[3:] == first[3:]  # below the top: untouched
    assert scores[2] == max(first)
    assert scores[0] == sorted(first)[-3]


def test_weight_lets_the_first_stage_overrule_and_no_query_passes_through() -> None:
    first = KeywordScorer().score(CHUNKS, "alpha beta gamma")
    assert RerankedScorer(KeywordScorer(), Reverse(), top_k=3, weight=10.0).score(CHUNKS, "alpha beta gamma") == first
    second = Reverse()
    assert RerankedScorer(KeywordScorer(), second).score(CHUNKS, None) == KeywordScorer().score(CHUNKS, None)
    assert second.calls == []


def test_bad_settings() -> None:
    with pytest.raises(ConfigError):
        RerankedScorer(KeywordScorer(), Reverse(), top_k=1)
    with pytest.raises(ConfigError):
        RerankedScorer(KeywordScorer(), "not a scorer")  # type: ignore[arg-type]
