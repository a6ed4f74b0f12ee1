"""Pruning in the pipeline: :class:`TokenPruneCompressor` (task-agnostic, per-chunk keep rates chosen by the
knapsack) and :class:`PrunedExtractiveCompressor` (the ``balanced`` preset: extractive relevance first, then pruning
inside the sentences it keeps). Utility of a pruned variant is the sum of its kept words' scores."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from promptzip._cache import Cache, NullCache
from promptzip._errors import ConfigError, InputError
from promptzip._fingerprint import derived_fingerprint
from promptzip._roles import Compressor, TokenScorer, drop_variant, keep_variant
from promptzip._tokenizers import Tokenizer
from promptzip._types import Chunk, Span, TokenScores, Variant
from promptzip.compressors._runs import run_select, sentence_segments, word_count
from promptzip.compressors.pruning import (
    BoolArray,
    FloatArray,
    IntArray,
    Pruned,
    assemble_units,
    forced_mask,
    greedy_select,
    mark_spans,
    prune_scores,
    tidy_mask,
    unit_costs,
)
from promptzip.compressors.token_scores import BatchTokenScorer, cached_token_scores

__all__ = ["PrunedExtractiveCompressor", "TokenPruneCompressor"]


def _check_runs(min_run: int, min_words: int) -> tuple[int, int]:
    if min_run < 1 or min_words < 1:
        raise ConfigError(f"min_run and min_words must be ≥ 1, got {min_run} and {min_words}")
    return min_run, min_words


def _check_rates(rates: Sequence[float]) -> tuple[float, ...]:
    clean = tuple(sorted({float(r) for r in rates}))
    if not clean or any(not 0.0 < r < 1.0 for r in clean):
        raise ConfigError(f"pruning rates must be in (0, 1), got {rates!r}")
    return clean


class TokenPruneCompressor(Compressor):
    """Task-agnostic token pruning: per chunk, keep / prune at each of ``rates`` / drop, with exact token counts;
    the budget policy picks each chunk's rate. Utility of a variant = sum of its kept units' keep-probabilities.

    A ``<pz rate=r>`` region is pruned at ``r`` (and the lower rates), never kept whole.

    >>> c = TokenPruneCompressor(scorer, cache=MemoryCache())  # doctest: +SKIP
    >>> c.prune("The tower is 330 metres tall.", rate=0.5).text  # doctest: +SKIP
    """

    name = "token-prune"

    def __init__(
        self,
        scorer: TokenScorer,
        *,
        cache: Cache | None = None,
        rates: Sequence[float] = (0.2, 0.33, 0.5, 0.7),
        force_tokens: Sequence[str] = (),
        conditioned: bool = False,
        min_run: int = 1,
        min_words: int = 1,
    ) -> None:
        if conditioned and not isinstance(scorer, BatchTokenScorer):
            raise ConfigError("conditioned=True needs a scorer with a question-conditioned mode")
        self.min_run, self.min_words = _check_runs(min_run, min_words)
        self.scorer = scorer
        self.cache: Cache = cache if cache is not None else NullCache()
        self.rates = _check_rates(rates)
        self.force_tokens = tuple(force_tokens)
        self.conditioned = conditioned

    @property
    def fingerprint(self) -> str:
        return derived_fingerprint(self)

    def token_scores(self, texts: Sequence[str], question: str | None = None) -> list[TokenScores]:
        """Cached token scores of ``texts`` (``question`` is used only in the conditioned mode)."""
        return cached_token_scores(self.scorer, texts, self.cache, question=question if self.conditioned else None)

    def prune(
        self,
        text: str,
        *,
        rate: float | None = None,
        target_tokens: int | None = None,
        threshold: float | None = None,
        tokenizer: Tokenizer | str | None = None,
    ) -> Pruned:
        """Prune one text directly (no budget policy): see :func:`prune_scores`. ``tokenizer`` (a Tokenizer or a
        name such as ``"gpt-4o"``) makes rates and targets exact in that model's tokens; without one they count
        units."""
        if not isinstance(text, str):
            raise InputError(f"text must be str, not {type(text).__name__}")
        from promptzip._tokenizers import get_tokenizer

        tok = get_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
        (scores,) = self.token_scores([text])
        return prune_scores(
            scores,
            rate=rate,
            target_tokens=target_tokens,
            threshold=threshold,
            tokenizer=tok,
            force_tokens=self.force_tokens,
            min_run=self.min_run,
            min_words=self.min_words,
        )

    def _propose(self, chunks: Sequence[Chunk], query: str | None, tokenizer: Tokenizer) -> list[list[Variant]]:
        open_ = [i for i, c in enumerate(chunks) if not c.protected]
        scored = dict(zip(open_, self.token_scores([chunks[i].text for i in open_], query), strict=True))
        whole = tokenizer.count_many([c.text for c in chunks])
        groups: list[list[Variant]] = []
        for i, chunk in enumerate(chunks):
            if chunk.protected:
                groups.append([keep_variant(chunk, whole[i])])
                continue
            scores = scored[i]
            total = float(sum(scores.scores))
            region = chunk.metadata.get("rate") if chunk.metadata else None
            if region is None:
                rates: tuple[float, ...] = self.rates
                variants = [drop_variant(chunk), keep_variant(chunk, whole[i], total)]
            else:  # a <pz rate=r> region: pruned at r (or below), never kept whole
                rates = (*(r for r in self.rates if r < region), float(region))
                variants = [drop_variant(chunk)]
            forced = forced_mask(
                scores.text,
                np.asarray(scores.starts, dtype=np.int64),
                np.asarray(scores.ends, dtype=np.int64),
                force_tokens=self.force_tokens,
            )
            seen = {v.text for v in variants}
            for r in rates:
                p = prune_scores(
                    scores,
                    rate=r,
                    tokenizer=tokenizer,
                    forced=forced,
                    offset=chunk.start,
                    min_run=self.min_run,
                    min_words=self.min_words,
                )
                if p.text in seen:
                    continue
                seen.add(p.text)
                variants.append(Variant(chunk, f"prune@{r:g}", p.text, p.tokens, p.utility, p.kept))
            groups.append(variants)
        return groups


class PrunedExtractiveCompressor(Compressor):
    """Extractive relevance first, then token pruning inside what it keeps (the ``balanced`` preset).

    For each variant the extractive compressor proposes (its kept sentences), this adds pruned versions at each
    of ``rates`` (the kept sentences become many smaller spans). A pruned variant's utility is the extractive
    utility scaled by the share of keep-probability mass it keeps: ``U · Σ kept scores / Σ scores in the variant``,
    so relevance decides *which* sentences and the token scorer *how much of them*.

    Pruning keeps whole runs: at least ``min_run`` consecutive words, and at least ``min_words`` words of any
    sentence it keeps (or the whole sentence when shorter), so the output reads as phrases of the source, never
    as scattered words or a lone number (:func:`~promptzip.compressors._runs.run_select`).
    """

    name = "pruned-extractive"

    def __init__(
        self,
        extractive: Compressor,
        scorer: TokenScorer,
        *,
        cache: Cache | None = None,
        rates: Sequence[float] = (0.33, 0.5, 0.7),
        force_tokens: Sequence[str] = (),
        max_pruned_variants: int = 8,
        min_run: int = 3,
        min_words: int = 4,
    ) -> None:
        self.min_run, self.min_words = _check_runs(min_run, min_words)
        self.extractive = extractive
        self.scorer = scorer
        self.cache: Cache = cache if cache is not None else NullCache()
        self.rates = _check_rates(rates)
        self.force_tokens = tuple(force_tokens)
        self.max_pruned_variants = max_pruned_variants

    @property
    def fingerprint(self) -> str:
        return derived_fingerprint(self)

    def _propose(self, chunks: Sequence[Chunk], query: str | None, tokenizer: Tokenizer) -> list[list[Variant]]:
        groups = self.extractive.propose(chunks, query, tokenizer)
        todo = [
            i for i, (c, g) in enumerate(zip(chunks, groups, strict=True)) if not c.protected and any(v.text for v in g)
        ]
        scored = dict(
            zip(todo, cached_token_scores(self.scorer, [chunks[i].text for i in todo], self.cache), strict=True)
        )
        out: list[list[Variant]] = []
        for i, (chunk, group) in enumerate(zip(chunks, groups, strict=True)):
            if i not in scored:
                out.append(list(group))
                continue
            out.append(self._prune_group(chunk, group, scored[i], tokenizer))
        return out

    def _select(
        self,
        text: str,
        starts: IntArray,
        ends: IntArray,
        values: FloatArray,
        costs: IntArray,
        segments: list[tuple[int, int]],
        within: BoolArray,
        forced: BoolArray,
        target: int,
    ) -> BoolArray:
        if self.min_run == 1 and self.min_words == 1:  # word by word, as LLMLingua-2 prunes
            return greedy_select(values, costs, within, forced, target)
        args = (text, starts, ends, values, costs, segments, forced, target)
        return run_select(*args, min_run=self.min_run, min_words=self.min_words)

    def _prune_group(
        self, chunk: Chunk, group: list[Variant], scores: TokenScores, tokenizer: Tokenizer
    ) -> list[Variant]:
        starts = np.asarray(scores.starts, dtype=np.int64)
        ends = np.asarray(scores.ends, dtype=np.int64)
        values = np.asarray(scores.scores, dtype=np.float64)
        forced = forced_mask(scores.text, starts, ends, force_tokens=self.force_tokens)
        costs = unit_costs(scores.text, starts, ends, tokenizer)
        region = chunk.metadata.get("rate") if chunk.metadata else None
        variants = list(group)
        seen = {v.text for v in group}
        bases = sorted((v for v in group if v.text), key=lambda v: -v.tokens)[: self.max_pruned_variants]
        pending: list[tuple[str, float, tuple[Span, ...], str]] = []
        for base in bases:
            within = mark_spans(starts, ends, [(s.start - chunk.start, s.end - chunk.start) for s in base.kept])
            mass = float(values[within].sum())
            base_units = int(costs[within].sum())
            segments = sentence_segments(scores.text, starts, ends, within)
            floor = min(self.min_words, word_count(scores.text, starts, ends, within))
            for r in self.rates:
                mask = self._select(
                    scores.text,
                    starts,
                    ends,
                    values,
                    costs,
                    segments,
                    within,
                    forced & within,
                    math.floor(r * base_units),
                )
                mask = tidy_mask(scores.text, starts, ends, mask, forced)
                text, spans = assemble_units(scores.text, starts, ends, mask, chunk.start)
                if not text or text in seen or word_count(scores.text, starts, ends, mask) < floor:
                    continue  # a variant never shrinks a chunk below a few words: it keeps them or drops it
                seen.add(text)
                share = float(values[mask].sum()) / mass if mass > 0 else float(mask.sum()) / max(1, int(within.sum()))
                pending.append((text, base.utility * share, spans, f"{base.kind}+prune@{r:g}"))
        counts = tokenizer.count_many([p[0] for p in pending])
        for (text, utility, spans, kind), n in zip(pending, counts, strict=True):
            if region is not None and len(text) > float(region) * len(chunk.text):
                continue
            variants.append(Variant(chunk, kind, text, n, utility, spans, group[0].relevance))
        return variants
