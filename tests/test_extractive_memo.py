"""What the extractive compressor remembers across requests (a chunk's sentences, its joiner) gives what a compressor
that remembers nothing gives: equal chunks share, chunks that differ in offset or source never do."""

from __future__ import annotations

from importlib import resources

import pytest

from promptzip._split import chunk_source
from promptzip._tokenizers import TextMemo, get_tokenizer, text_memos_disabled
from promptzip._types import Chunk, Variant
from promptzip.compressors._stitching import chunk_sentences as _sentences
from promptzip.compressors.extractive import ExtractiveCompressor
from promptzip.retrievers.sparse import BM25Scorer

SOTU = (resources.files("promptzip") / "_sample" / "sotu.txt").read_text(encoding="utf-8")
PARAGRAPH = (
    "The bridge was finished in 1889. It carried trains across the river for a century. Its engineer was "
    "Gustave Lindqvist.  He also built the station.\nThe station closed in 1990, and the bridge is a footpath now."
)


def _shifted_copies() -> list[Chunk]:
    """The same paragraph as different chunks: at other offsets, in another source, and protected (the compressors
    below keep near-duplicates, which would otherwise leave the copies nothing but "keep" and "drop")."""
    return [
        Chunk(PARAGRAPH, "a", 0),
        Chunk(PARAGRAPH, "a", 500),
        Chunk(PARAGRAPH, "b", 0),
        Chunk(PARAGRAPH, "a|b", 7),
        Chunk(PARAGRAPH, "a", 0, protected=True),
        Chunk("Short. Two sentences.", "c", 3),
    ]


def _view(groups: list[list[Variant]]) -> list[list[tuple[object, ...]]]:
    return [[(v.chunk, v.kind, v.text, v.tokens, v.kept, v.utility, v.relevance) for v in group] for group in groups]


@pytest.mark.parametrize("chunks", [_shifted_copies(), chunk_source(SOTU[:12000], "0")])
def test_remembered_sentences_equal_fresh_ones(chunks: list[Chunk]) -> None:
    memo: TextMemo[tuple[Chunk, ...]] = TextMemo()
    fresh = _sentences(chunks)
    for _ in range(3):  # the first call fills the memo, the next ones read it
        remembered = _sentences(chunks, memo)
        assert remembered == fresh
        sentences, _ = remembered
        assert all(
            s.text == c.text[s.start - c.start : s.end - c.start] and s.source_id == c.source_id
            for s, ci in zip(sentences, remembered[1], strict=True)
            for c in [chunks[ci]]
        )
    assert len(memo) == len({(c.start, c.source_id, c.text) for c in chunks if not c.protected})


def test_equal_chunks_elsewhere_get_their_own_offsets_and_sources() -> None:
    tok = get_tokenizer("o200k_base")
    compressor = ExtractiveCompressor(BM25Scorer(), min_relevance=None, clauses=True, anaphora=0.8, dedup=False)
    chunks = _shifted_copies()
    questions = ["Who was the engineer of the bridge?", "When did the station close?", "bridge 1889"]
    for question in questions * 2:
        remembered = compressor.propose(chunks, question, tok)
        with text_memos_disabled():
            fresh = ExtractiveCompressor(
                BM25Scorer(), min_relevance=None, clauses=True, anaphora=0.8, dedup=False
            ).propose(chunks, question, tok)
        assert _view(remembered) == _view(fresh)
        for chunk, group in zip(chunks, remembered, strict=True):
            for v in group:
                assert all(chunk.start <= span.start <= span.end <= chunk.end for span in v.kept)
                assert v.chunk is chunk
    # the copies at other offsets kept other spans: a shared memo entry would have given them the first one's
    kept = {tuple(v.kept) for group in remembered[:2] for v in group if v.kind == "extract"}
    assert any(span.start >= 500 for spans in kept for span in spans)


def test_remembered_sentences_follow_a_long_request() -> None:
    tok = get_tokenizer("o200k_base")
    compressor = ExtractiveCompressor(BM25Scorer(), min_relevance=None)
    chunks = chunk_source(SOTU[:40000], "doc")
    for question in ["college tuition", "the minimum wage", "college tuition"]:
        remembered = compressor.propose(chunks, question, tok)
        with text_memos_disabled():
            fresh = compressor.propose(chunks, question, tok)
        assert _view(remembered) == _view(fresh)
