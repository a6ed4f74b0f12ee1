"""Extractive selection below and around the sentence: neighbour expansion and clause variants (model-free)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import promptzip as pz
from promptzip.compressors.extractive import ExtractiveCompressor, carry_to_anaphors, clause_spans
from promptzip.testing import KeywordScorer

LONG = (
    "During the long and eventful reign of the northern kings, which lasted for several generations and saw many "
    "wars, famines and coronations across the whole of the region, the great stone bridge over the river Tamar "
    "was finished in 1487, according to the surviving parish chronicles kept by the monks of the abbey nearby."
)
FILLER = " ".join(f"Filler sentence number {i} talks about weather and crops in the valley." for i in range(12))
TEXT = f"{FILLER}\n\n{LONG}\n\n{FILLER}"
QUESTION = "When was the stone bridge over the Tamar finished?"


def test_clause_spans_cut_at_punctuation_and_merge_short_pieces() -> None:
    text = "However, the tower was finished in 1889, when Paris held a fair; it (briefly) was the tallest."
    spans = clause_spans(text, min_chars=20)
    pieces = [text[a:b] for a, b in spans]
    assert pieces[0] == "However, the tower was finished in 1889"  # "However" alone is too short: merged
    assert all(len(p) >= 20 for p in pieces[:-1])
    assert "when Paris held a fair" in pieces[1]
    # nothing lost and nothing invented: the pieces are ordered, disjoint slices of the sentence
    assert all(b <= a2 for (_, b), (a2, _) in itertools.pairwise(spans))
    assert clause_spans("No breaks in this one at all") == [(0, 28)]
    assert clause_spans("") == []


def test_clause_variant_fits_where_the_whole_sentence_does_not() -> None:
    tok = pz.get_tokenizer("gpt-4o")
    sentence_tokens = tok.count(LONG)
    budget = sentence_tokens * 2 // 3  # the answer's sentence alone is over budget
    plain = pz.Zipper(ExtractiveCompressor(KeywordScorer(), min_relevance=None))
    clauses = pz.Zipper(ExtractiveCompressor(KeywordScorer(), min_relevance=None, clauses=True, clause_min_chars=80))
    without = plain.compress(TEXT, question=QUESTION, budget=budget)
    with_clauses = clauses.compress(TEXT, question=QUESTION, budget=budget)
    assert "1487" not in without.context
    assert "1487" in with_clauses.context
    assert with_clauses.tokens_out <= budget
    kinds = {c.kind for c in with_clauses.chunks if c.tokens_out}
    assert "clause" in kinds
    # provenance: the kept text is a verbatim slice of the source
    (chunk,) = [c for c in with_clauses.chunks if c.kind == "clause"]
    assert all(TEXT[s.start : s.end] in with_clauses.context for s in chunk.kept)
    # with room for the whole sentence, the whole sentence wins over its clause
    roomy = clauses.compress(TEXT, question=QUESTION, budget=sentence_tokens + 40)
    assert LONG in roomy.context


def test_clauses_need_a_question() -> None:
    z = pz.Zipper(ExtractiveCompressor(KeywordScorer(), min_relevance=None, clauses=True, clause_min_chars=80))
    r = z.compress(TEXT, budget=60)
    assert all(c.kind != "clause" for c in r.chunks)


@pytest.mark.parametrize("expand", [0.0, 1.0])
def test_expand_keeps_the_neighbour_of_a_relevant_sentence(expand: float) -> None:
    first = "The committee met in Geneva to discuss the new observatory."
    answer = "Work ended during 1889 after long delays."  # shares no word with the question
    rival = "The committee later toured Geneva."  # shares some
    filler = " ".join(f"Unrelated note {i} about shipping schedules and harbour fees." for i in range(6))
    text = f"{first} {answer} {filler} {rival} {filler}"
    question = "When did the committee finish the new observatory in Geneva?"
    tok = pz.get_tokenizer("gpt-4o")
    budget = tok.count(f"{first} {answer}\n\n{question}") + 3  # room for one more sentence, not for two
    z = pz.Zipper(ExtractiveCompressor(KeywordScorer(), min_relevance=None, expand=expand))
    r = z.compress(text, question=question, budget=budget)
    assert first in r.context
    assert ("1889" in r.context) == (expand > 0)
    assert (rival in r.context) == (expand == 0)


SPLIT = (
    "The stone bridge over the river Tamar was finished after many delays, "
    "in the cold spring of the year 1487 by masons from Exeter, "
    "who had also built the great hall of the abbey and the market cross that still stands in the town square."
)
NEAR = " ".join(f"The old bridge number {i} over a small stream was repaired by the village." for i in range(6))


def test_a_lone_clause_is_worth_less_than_the_clause_with_its_neighbour() -> None:
    # The clause that matches the question often only restates it; the answer sits in the clause next to it.
    # So a lone clause is valued at clause_single (0.5) of its sentence, a clause with its neighbour at 0.9.
    tok = pz.get_tokenizer("gpt-4o")
    text = f"{FILLER}\n\n{SPLIT}\n\n{NEAR}"
    question = "When was the stone bridge over the river Tamar finished?"
    clauses = clause_spans(SPLIT, min_chars=32)
    pair = SPLIT[clauses[0][0] : clauses[1][1]]
    assert "1487" in pair
    assert "1487" not in SPLIT[slice(*clauses[0])]
    budget = tok.count(pair) + 12 + tok.count(question)  # the pair fits, the sentence does not
    assert tok.count(SPLIT) > budget

    def compress(**options: float) -> pz.Result:
        compressor = ExtractiveCompressor(
            KeywordScorer(), min_relevance=None, clauses=True, clause_min_chars=80, **options
        )
        return pz.Zipper(compressor).compress(text, question=question, budget=budget)

    default = compress()
    assert "1487" in default.context
    assert default.tokens_out <= budget
    # valued like the pair (the old 0.9), the cheaper lone clause wins and leaves room for a "bridge" sentence
    assert "1487" not in compress(clause_single=0.9).context


def test_chunk_weight_pools_each_chunks_relevance_from_its_sentences() -> None:
    class Pooled(KeywordScorer):
        def __init__(self) -> None:
            self.parts: list[list[list[str]]] = []

        def _score_pooled(self, chunks, parts, query):  # type: ignore[no-untyped-def]
            self.parts.append([[c.text[a:b] for a, b in p] for c, p in zip(chunks, parts, strict=True)])
            return [1.0 if "Tamar" in c.text else 0.0 for c in chunks]

    text = (
        "The river Tamar flows south to the sea. Its crossing was ready in 1487.\n\n"
        "The stone bridge of the other town was finished after the war."
    )
    question = "When was the stone bridge finished?"
    tok = pz.get_tokenizer("gpt-4o")
    budget = tok.count("The stone bridge of the other town was finished after the war.") + 2 + tok.count(question)

    def compress(weight: float, scorer: KeywordScorer) -> pz.Result:
        compressor = ExtractiveCompressor(scorer, min_relevance=None, chunk_weight=weight)
        return pz.Zipper(compressor).compress(text, question=question, budget=budget)

    assert "stone bridge" in compress(0.0, Pooled()).context  # the keyword match wins on its own
    pooled = Pooled()
    carried = compress(0.9, pooled).context  # the first paragraph's pooled relevance carries its sentences
    assert "stone bridge" not in carried
    assert "Tamar" in carried or "1487" in carried
    assert pooled.parts == [
        [
            ["The river Tamar flows south to the sea.", "Its crossing was ready in 1487."],
            ["The stone bridge of the other town was finished after the war."],
        ]
    ]


def test_carry_to_anaphors_lifts_a_pronoun_sentence_to_a_share_of_its_neighbour() -> None:
    sentences = [
        pz.Chunk("Hippocrates was a Greek physician."),
        pz.Chunk("He believed that illness had natural causes."),
        pz.Chunk("“They spread by bad air,” it was said."),
        pz.Chunk("Theory came later."),  # "The…" is not a pronoun
        pz.Chunk("It was a new chunk."),
    ]
    owner = [0, 0, 0, 0, 1]
    out = carry_to_anaphors(np.array([1.0, 0.1, 0.0, 0.0, 0.0]), sentences, owner, 0.7)
    # the quoted "They" takes 0.7 of its neighbour's score before the step (0.1), not the lifted 0.7: no chaining;
    # the first sentence of another chunk inherits nothing across the boundary
    np.testing.assert_allclose(out, [1.0, 0.7, 0.07, 0.0, 0.0])
    assert carry_to_anaphors(np.array([0.2, 0.9]), sentences[:2], [0, 0], 0.7).tolist() == [0.2, 0.9]


def test_anaphora_keeps_the_pronoun_sentence_that_carries_the_answer() -> None:
    named = "Hippocrates of Kos was the most famous physician of ancient Greece and taught medicine there."
    answer = "He believed that disease came from an imbalance of four humours."  # no word of the question
    rival = "Many doctors of ancient Greece wrote about medicine."
    filler = " ".join(f"Unrelated note {i} about shipping schedules and harbour fees." for i in range(6))
    text = f"{named} {answer} {filler} {rival}"
    question = "What did the famous physician Hippocrates of ancient Greece think caused disease?"
    tok = pz.get_tokenizer("gpt-4o")
    budget = tok.count(f"{named} {answer}\n\n{question}") + 3

    def compress(anaphora: float) -> str:
        compressor = ExtractiveCompressor(KeywordScorer(), min_relevance=None, anaphora=anaphora)
        return pz.Zipper(compressor).compress(text, question=question, budget=budget).context

    assert "humours" not in compress(0.0)
    assert "humours" in compress(0.85)

    class Central(KeywordScorer):  # without a question: the named sentence central, the pronoun one not at all
        def _score(self, chunks, query):  # type: ignore[no-untyped-def]
            if query:
                return super()._score(chunks, query)
            return [1.0 if "Kos" in c.text else 0.6 if c.text == rival else 0.0 for c in chunks]

    def agnostic(anaphora: float) -> str:
        compressor = ExtractiveCompressor(Central(), min_relevance=None, anaphora=anaphora)
        return pz.Zipper(compressor).compress(text, budget=tok.count(f"{named} {answer}") + 3).context

    # the lift is for matching a question through the neighbour: without one the pronoun sentence stays out
    assert "humours" not in agnostic(0.85)
    assert "humours" not in agnostic(0.0)
    with pytest.raises(pz.ConfigError, match="anaphora"):
        ExtractiveCompressor(KeywordScorer(), anaphora=1.5)


def test_kept_rows_stay_rows_and_prose_stays_prose() -> None:
    """Sentences that are not adjacent are joined by a line break where the text is lines (the one before ends its
    line, this one starts its own), else by a space; the join is counted, so the budget still holds."""
    from promptzip.compressors._stitching import stitch

    rows = "year,port,ships\n" + "\n".join(f"{1900 + i},Oslo,{i * 7}" for i in range(30))
    chunk = pz.Chunk(rows)
    starts = [rows.index(row) for row in ("year,port,ships", "1900,Oslo,0", "1912,Oslo,84")]
    sentences = [pz.Chunk(rows[a : rows.index("\n", a)], "0", a, rows.index("\n", a)) for a in starts]
    text, kept, parts = stitch(chunk, sentences)
    assert text == "year,port,ships\n1900,Oslo,0\n1912,Oslo,84"  # adjacent: the original break; not: a new one
    assert "".join(parts) == text
    assert [rows[s.start : s.end] for s in kept] == ["year,port,ships\n1900,Oslo,0", "1912,Oslo,84"]

    prose = "The harbour opened in 1900. It grew fast.\nMany ships came. Storms were rare. The end came in 1950."
    chunk = pz.Chunk(prose)
    picks = ["The harbour opened in 1900.", "Storms were rare."]  # mid-line: no line edge between them
    spans = [(prose.index(p), prose.index(p) + len(p)) for p in picks]
    text, _, _ = stitch(chunk, [pz.Chunk(prose[a:b], "0", a, b) for a, b in spans])
    assert text == "The harbour opened in 1900. Storms were rare."
