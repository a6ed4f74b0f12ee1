"""Test doubles and a conformance suite that any compressor, built-in or third-party, can run.

A cheap deterministic scorer for tests that should not load a model::

    zipper = Zipper(ExtractiveCompressor(KeywordScorer()))

The contract, proved by subclassing one class (pytest collects it)::

    from promptzip.testing import CompressorContract

    class TestMyCompressor(CompressorContract):
        def make_compressor(self):
            return MyCompressor(...)

It checks, through a real :class:`~promptzip.Zipper`: every budget is respected in the target tokenizer, kept spans
point at real source text that appears in the output, protected regions survive verbatim, each chunk gets one
variant per group with the right protected form, and the same input gives the same output.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from promptzip._errors import BudgetError
from promptzip._pipeline import Zipper
from promptzip._roles import Compressor, Scorer
from promptzip._types import Budget, Chunk

__all__ = ["CONTRACT_TEXT", "CompressorContract", "KeywordScorer"]

_WORD = re.compile(r"\w+")


class KeywordScorer(Scorer):
    """Relevance = share of the query's distinct words that occur in the chunk (no model, deterministic).

    Without a query every chunk scores by its length rank, so query-agnostic paths stay deterministic too.
    """

    name = "keyword"

    def _score(self, chunks: Sequence[Chunk], query: str | None) -> list[float]:
        if not query:
            return [1.0 / (1 + i) for i in range(len(chunks))]
        wanted = {w.lower() for w in _WORD.findall(query)}
        if not wanted:
            return [0.0] * len(chunks)
        return [len(wanted & {w.lower() for w in _WORD.findall(c.text)}) / len(wanted) for c in chunks]


CONTRACT_TEXT = """Ada Lovelace wrote the first published algorithm in 1843. She worked with Charles Babbage on the \
Analytical Engine. Her notes include a method for computing Bernoulli numbers.

The Analytical Engine was never completed. Babbage designed it in 1837 as a general-purpose mechanical computer. It \
had an arithmetic logic unit, control flow and integrated memory.

```python
def bernoulli(n: int) -> float:
    return 0.0
```

<pz keep>Reference: LOVELACE-1843-NOTE-G</pz>

Grace Hopper developed the first compiler in 1952. She popularised machine-independent programming languages. The \
COBOL language was based on her work."""


class CompressorContract:
    """Subclass and implement :meth:`make_compressor`; pytest then runs the contract against it."""

    question = "When did Ada Lovelace publish the first algorithm?"
    target = "gpt-4o"
    budgets: Sequence[int] = (52, 60, 90, 150, 400)

    def make_compressor(self) -> Compressor:
        raise NotImplementedError

    def _zipper(self) -> Zipper:
        return Zipper(self.make_compressor(), target=self.target)

    def test_budgets_are_respected(self) -> None:
        zipper = self._zipper()
        for budget in self.budgets:
            r = zipper.compress(CONTRACT_TEXT, question=self.question, budget=budget)
            assert zipper.tokenizer.count(r.text) == r.tokens_out <= budget, (budget, r.tokens_out)

    def test_rate_budget(self) -> None:
        zipper = self._zipper()
        r = zipper.compress(CONTRACT_TEXT, question=self.question, budget=Budget(rate=0.8))
        assert r.tokens_out <= int(0.8 * r.tokens_in)

    def test_kept_spans_are_source_text_in_the_output(self) -> None:
        r = self._zipper().compress(CONTRACT_TEXT, question=self.question, budget=90)
        for c in r.chunks:
            assert c.start <= c.end <= len(CONTRACT_TEXT)
            for span in c.kept:
                assert c.start <= span.start <= span.end <= c.end
                assert CONTRACT_TEXT[span.start : span.end] in r.context

    def test_protected_regions_survive(self) -> None:
        r = self._zipper().compress(CONTRACT_TEXT, question=self.question, budget=90)
        assert "Reference: LOVELACE-1843-NOTE-G" in r.text
        assert "def bernoulli(n: int) -> float:\n    return 0.0" in r.text
        try:
            self._zipper().compress(CONTRACT_TEXT, question=self.question, budget=30)
        except BudgetError:
            pass
        else:
            raise AssertionError("a budget below the protected parts must raise BudgetError")

    def test_one_group_per_chunk_and_protected_kept_whole(self) -> None:
        zipper = self._zipper()
        from promptzip._split import chunk_source

        chunks = chunk_source(CONTRACT_TEXT, "doc")
        groups = zipper.compressor.propose(chunks, self.question, zipper.tokenizer)
        assert len(groups) == len(chunks)
        for chunk, group in zip(chunks, groups, strict=True):
            assert group
            assert all(v.chunk == chunk for v in group)
            assert all(v.tokens == zipper.tokenizer.count(v.text) for v in group)
            if chunk.protected:
                assert [v.text for v in group] == [chunk.text]

    def test_deterministic(self) -> None:
        a = self._zipper().compress(CONTRACT_TEXT, question=self.question, budget=70)
        b = self._zipper().compress(CONTRACT_TEXT, question=self.question, budget=70)
        assert a.text == b.text
        assert a.chunks == b.chunks
