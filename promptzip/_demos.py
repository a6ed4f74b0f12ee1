"""``compress_demonstrations``: pick and shorten few-shot demonstrations for one input under a token budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from promptzip._errors import ConfigError, InputError
from promptzip._inputs import check_text
from promptzip._pipeline import Zipper
from promptzip._types import Budget, Chunk, Result

__all__ = ["DemoSelection", "compress_demonstrations"]


@dataclass(frozen=True, slots=True)
class DemoSelection:
    """The demonstrations block to put before the input, and what happened to each demonstration."""

    text: str
    tokens: int
    budget: int
    kept: tuple[int, ...]  # indices of the demonstrations that survive, in input order
    intact: tuple[int, ...]  # the subset kept word for word
    total: int  # how many demonstrations were offered
    result: Result

    @property
    def dropped(self) -> int:
        return self.total - len(self.kept)


def compress_demonstrations(
    demos: Sequence[str],
    input: str,
    budget: Budget | int | float | None = None,
    *,
    rate: float | None = None,
    target: str = "gpt-4o",
    cache: str | None = "memory",
    reorder: str = "original",
    zipper: Zipper | None = None,
) -> DemoSelection:
    """Choose and compress ``demos`` for ``input`` so the demonstrations fit ``budget`` tokens of ``target``.

    Each demonstration is scored (hybrid MiniLM + BM25) against the input; the knapsack keeps the most similar
    intact, shortens weaker ones to their question, answer and most relevant steps, and drops the rest.
    """
    if isinstance(demos, str) or not isinstance(demos, Sequence) or not demos:
        raise InputError("demos must be a non-empty list of demonstration texts")
    texts = [check_text(d, f"demos[{i}]") for i, d in enumerate(demos)]
    query = check_text(input, "input")
    if zipper is not None and not isinstance(zipper, Zipper):
        raise ConfigError(f"zipper must be a promptzip.Zipper, not {type(zipper).__name__}")
    if zipper is None:
        zipper = _default_zipper(target, cache, reorder)
    chunks = [Chunk(t, source_id=str(i)) for i, t in enumerate(texts)]
    r = zipper.compress(chunks, query=query, budget=Budget.coerce(budget, rate=rate))
    kept = tuple(sorted({int(c.source_id) for c in r.chunks if c.text}))
    partial = {int(c.source_id) for c in r.chunks if c.kind != "keep"}
    intact = tuple(i for i in kept if i not in partial)
    return DemoSelection(r.context, r.tokens_out, r.budget, kept, intact, len(texts), r)


def _default_zipper(target: str, cache: str | None, reorder: str) -> Zipper:
    """One shared Zipper per (target, cache, reorder), so demonstrations are embedded once per process."""
    from promptzip._pool import shared_pool

    def build() -> Zipper:
        from promptzip._cache import cache_from_url
        from promptzip.compressors.demonstrations import DemonstrationCompressor
        from promptzip.retrievers.dense import DenseScorer
        from promptzip.retrievers.hybrid import HybridScorer
        from promptzip.retrievers.sparse import BM25Scorer

        scorer = HybridScorer(DenseScorer(cache=cache_from_url(cache)), BM25Scorer())
        return Zipper(DemonstrationCompressor(scorer), target=target, reorder=reorder, max_chunk_chars=10**9)

    return shared_pool.get(("demonstrations", target, cache, reorder), build)
