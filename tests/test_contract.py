"""The built-in compressor proves the shipped contract, with the model-free double and with the real models."""

from __future__ import annotations

from dataclasses import replace

import pytest

import promptzip as pz
from promptzip._cache import MemoryCache
from promptzip._roles import Compressor
from promptzip._types import Variant
from promptzip.compressors.extractive import ExtractiveCompressor
from promptzip.retrievers.dense import DenseScorer
from promptzip.retrievers.hybrid import HybridScorer
from promptzip.retrievers.sparse import BM25Scorer
from promptzip.testing import CONTRACT_TEXT, CompressorContract, KeywordScorer


class TestExtractiveWithKeywords(CompressorContract):
    def make_compressor(self) -> Compressor:
        return ExtractiveCompressor(KeywordScorer())


class TestExtractiveWithBM25(CompressorContract):
    def make_compressor(self) -> Compressor:
        return ExtractiveCompressor(BM25Scorer())


@pytest.mark.slow
class TestExtractiveHybrid(CompressorContract):
    def make_compressor(self) -> Compressor:
        return ExtractiveCompressor(HybridScorer(DenseScorer(cache=MemoryCache()), BM25Scorer()))


def test_keyword_scorer_ranks_by_overlap() -> None:
    chunks = [pz.Chunk("Babbage designed the engine."), pz.Chunk("Ada Lovelace published in 1843.")]
    scores = KeywordScorer().score(chunks, "When did Ada Lovelace publish?")
    assert scores[1] > scores[0]


class _Miscounts(ExtractiveCompressor):
    """Reports every kept variant one token cheaper than it is (the pipeline re-counts, so no guard trips)."""

    def _propose(self, chunks, query, tokenizer):  # type: ignore[no-untyped-def]
        return [
            [replace(v, tokens=max(0, v.tokens - 1)) if v.text else v for v in g]
            for g in super()._propose(chunks, query, tokenizer)
        ]


class _MisplacedSpans(ExtractiveCompressor):
    """Claims the kept text came from just past the end of its chunk."""

    def _propose(self, chunks, query, tokenizer):  # type: ignore[no-untyped-def]
        groups = super()._propose(chunks, query, tokenizer)
        out = []
        for c, g in zip(chunks, groups, strict=True):
            lie = (pz.Span(c.end + 1, c.end + 6),)
            out.append([v if c.protected or not v.text else replace(v, kept=lie) for v in g])
        return out


class _Noisy(ExtractiveCompressor):
    """Favours the first chunks on one call and the last ones on the next."""

    calls = 0

    def _propose(self, chunks, query, tokenizer):  # type: ignore[no-untyped-def]
        _Noisy.calls += 1
        groups = super()._propose(chunks, query, tokenizer)

        def utility(v: Variant) -> float:
            if not v.text:
                return 0.0
            return float(v.chunk.start) if _Noisy.calls % 2 else 1.0 / (1 + v.chunk.start)

        return [[replace(v, utility=utility(v)) for v in g] for g in groups]


@pytest.mark.parametrize(
    ("broken", "clause"),
    [
        (_Miscounts, "test_one_group_per_chunk_and_protected_kept_whole"),
        (_MisplacedSpans, "test_kept_spans_are_source_text_in_the_output"),
        (_Noisy, "test_deterministic"),
    ],
)
def test_each_contract_clause_catches_a_compressor_that_breaks_it(broken: type[Compressor], clause: str) -> None:
    """The contract is not a tautology: each broken compressor passes the pipeline's own guards (no promptzip
    error) and fails the clause it breaks with the contract's own assertion."""
    contract = CompressorContract()
    contract.make_compressor = lambda: broken(KeywordScorer())  # type: ignore[method-assign,call-arg]
    pz.Zipper(broken(KeywordScorer())).compress(CONTRACT_TEXT, question=contract.question, budget=90)  # type: ignore[call-arg]
    with pytest.raises(AssertionError):
        getattr(contract, clause)()
    healthy = CompressorContract()
    healthy.make_compressor = lambda: ExtractiveCompressor(KeywordScorer())  # type: ignore[method-assign]
    getattr(healthy, clause)()  # the same clause passes for the compressor it was written for
