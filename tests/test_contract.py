"""The built-in compressor proves the shipped contract, with the model-free double and with the real models."""

from __future__ import annotations

import pytest

import promptzip as pz
from promptzip._cache import MemoryCache
from promptzip._roles import Compressor
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


def test_a_broken_compressor_fails_the_contract() -> None:
    """The contract is not a tautology: a compressor that drops protected chunks is caught."""

    class Dropper(ExtractiveCompressor):
        def _propose(self, chunks, query, tokenizer):  # type: ignore[no-untyped-def]
            groups = super()._propose(chunks, query, tokenizer)
            return [[g[0]] if not c.protected else [g[0], *g] for c, g in zip(chunks, groups, strict=True)]

    contract = CompressorContract()
    contract.make_compressor = lambda: Dropper(KeywordScorer())  # type: ignore[method-assign]
    with pytest.raises(pz.PromptZipError, match="protected"):
        contract.test_protected_regions_survive()
    assert "LOVELACE" in CONTRACT_TEXT
