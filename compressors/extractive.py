"""Query-aware extractive compression (RECOMP's extractive compressor; LangChain's EmbeddingsFilter is the thing
to beat): split chunks into sentences, score every sentence of the request against the question, and propose for
each chunk the top sentences at several sizes, the whole chunk, and nothing. The budget policy then decides, across
all chunks at once, which variant of each to send.

Utilities are ``exp(sharpness · z)`` of the standardized relevance, so one highly relevant sentence outweighs many
middling ones; near-duplicate sentences get no utility and are never proposed alone. Without a question the
relevance is centrality (similarity to the centroid of the request).

Its stages are timed into ``Result.timings`` (:func:`~promptzip._pipeline.record_timing`): ``sentences`` (splitting
the chunks), ``relevance`` (scoring the sentences, the question's embedding included), ``chunk_relevance``,
``dedup``, ``variants`` (building and counting them) and ``clauses``. A variant's cost is counted from its
sentences (:meth:`~promptzip._tokenizers.Tokenizer.count_joined`), exactly, so a sentence is counted once.
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Sequence

import numpy as np

from promptzip._errors import ConfigError
from promptzip._fingerprint import derived_fingerprint
from promptzip._pipeline import record_timing
from promptzip._roles import Compressor, Scorer, drop_variant, keep_variant, span_chunks
from promptzip._tokenizers import TextMemo, Tokenizer
from promptzip._types import Chunk, Variant
from promptzip.compressors._stitching import Joiner, chunk_sentences, clause_spans, stitch
from promptzip.compressors.filters import duplicate_mask
from promptzip.compressors.pruning import fact_density

__all__ = ["ExtractiveCompressor", "carry_to_anaphors", "clause_spans"]

# A sentence that opens with a pronoun ("He believed …", "Its capital …", "This led to …") continues the one
# before it: it matches a question about that subject only through its neighbour.
_ANAPHOR = re.compile(r"[\s\"'“‘(\[]*(?:he|she|it|they|his|her|its|their|them|this|these|those|such)\b", re.IGNORECASE)


def carry_to_anaphors(
    relevance: np.ndarray, sentences: Sequence[Chunk], owner: Sequence[int], weight: float
) -> np.ndarray:
    """Relevance where a sentence opening with a pronoun is worth at least ``weight`` times the sentence before it
    (same chunk only); the neighbour's own score is the one before this step, so credit does not chain."""
    out = np.asarray(relevance, dtype=np.float64).copy()
    for si in range(1, len(sentences)):
        if owner[si] == owner[si - 1] and _ANAPHOR.match(sentences[si].text):
            out[si] = max(float(relevance[si]), weight * float(relevance[si - 1]))
    return out


@functools.lru_cache(maxsize=1024)
def _prefix_sizes(n: int, limit: int) -> tuple[int, ...]:
    sizes = list(range(1, min(n, 8) + 1))
    k = 8
    while k < n and len(sizes) < limit:
        k = min(n, math.ceil(k * 1.5))
        sizes.append(k)
    return tuple(sorted(set(sizes))[:limit])


class ExtractiveCompressor(Compressor):
    """Top-sentence variants per chunk, scored by ``scorer`` (hybrid dense + BM25 in the ``fast`` preset).

    ``min_relevance``: when a question is given and no sentence scores at least this much, every compressible
    chunk is proposed only as "drop" and the result says ``no_relevant_context`` (selective augmentation).
    ``None`` never drops everything. ``anaphora``: with a question, a sentence opening with a pronoun is worth at
    least this share of the sentence before it (:func:`carry_to_anaphors`; 0 turns it off).
    """

    name = "extractive"

    def __init__(
        self,
        scorer: Scorer,
        *,
        sharpness: float = 4.0,
        max_variants: int = 12,
        min_relevance: float | None = 0.2,
        dedup: bool = True,
        dedup_threshold: float = 0.97,
        dedup_candidates: int = 512,
        chunk_weight: float = 0.0,
        expand: float = 0.0,
        clauses: bool = False,
        clause_min_chars: int = 160,
        clause_sentences: int = 16,
        clause_single: float = 0.5,
        anaphora: float = 0.0,
        fact_weight: float = 0.5,
    ) -> None:
        if not 0.0 <= anaphora <= 1.0:
            raise ConfigError(f"anaphora must be in [0, 1], got {anaphora}")
        if not 0.0 <= fact_weight <= 1.0:
            raise ConfigError(f"fact_weight must be in [0, 1], got {fact_weight}")
        self.fact_weight = fact_weight
        self.anaphora = anaphora
        self.scorer = scorer
        self.sharpness = sharpness
        self.max_variants = max_variants
        self.min_relevance = min_relevance
        self.dedup = dedup
        self.dedup_threshold = dedup_threshold
        self.dedup_candidates = dedup_candidates
        self.chunk_weight = chunk_weight
        self.expand = expand
        self.clauses = clauses
        self.clause_min_chars = clause_min_chars
        self.clause_sentences = clause_sentences
        self.clause_single = clause_single
        self._duplicate_memo: TextMemo[tuple[bool, ...]] = TextMemo(max_chars=2_000_000, max_items=256)
        # A chunk's joiner (its sentences' parts and the variants stitched from them) depends on the chunk and its
        # sentences only: a new question over the same documents reuses it.
        # Bounded by joiners (each holding at most STITCHED stitched variants), not only by their keys' size.
        self._joiners: TextMemo[Joiner] = TextMemo(max_chars=2_000_000, max_items=1024)
        self._splits: TextMemo[tuple[Chunk, ...]] = TextMemo(max_chars=2_000_000, max_items=1024)  # chunk_sentences

    @property
    def fingerprint(self) -> str:
        return derived_fingerprint(self)

    def warm(self, chunks: Sequence[Chunk]) -> int:
        """Put what compressing ``chunks`` reads about them whatever the question into the scorer's cache: every
        sentence's score inputs (a dense scorer's vectors, as :meth:`_propose` asks for them) and, with
        ``clauses``, the vectors of every long sentence's clauses (any sentence may be among a question's most
        relevant). Returns the number of sentences (:mod:`promptzip._warm`)."""
        sentences, _ = chunk_sentences(chunks, self._splits)
        self.scorer.score(sentences, None)
        if self.clauses:
            long = [s for s in sentences if len(s.text) >= self.clause_min_chars]
            spans = [clause_spans(s.text, min_chars=max(24, self.clause_min_chars // 5)) for s in long]
            self.scorer.score_spans(long, spans, None)
        return len(sentences)

    def _propose(self, chunks: Sequence[Chunk], query: str | None, tokenizer: Tokenizer) -> list[list[Variant]]:
        t = time.perf_counter()
        sentences, owner = chunk_sentences(chunks, self._splits)
        record_timing("sentences", time.perf_counter() - t)
        t = time.perf_counter()
        relevance = np.asarray(self.scorer.score(sentences, query), dtype=np.float64)
        t = _lap("relevance", t)
        if self.chunk_weight and sentences:
            # A sentence inherits part of its chunk's relevance: answers often sit in sentences that say "it" or
            # "he" and match the question only through the paragraph around them. The chunk's relevance is pooled
            # from its sentences' (an encoder runs no pass over the paragraph).
            open_chunks = sorted(set(owner))
            parts: dict[int, list[tuple[int, int]]] = {ci: [] for ci in open_chunks}
            for sent, ci in zip(sentences, owner, strict=True):
                parts[ci].append((sent.start - chunks[ci].start, sent.end - chunks[ci].start))
            chunk_scores = self.scorer.score_pooled(
                [chunks[ci] for ci in open_chunks], [parts[ci] for ci in open_chunks], query
            )
            by_index = dict(zip(open_chunks, chunk_scores, strict=True))
            inherited = np.asarray([by_index[ci] for ci in owner], dtype=np.float64)
            relevance = (1 - self.chunk_weight) * relevance + self.chunk_weight * inherited
            t = _lap("chunk_relevance", t)
        if self.anaphora and query is not None and sentences:
            relevance = carry_to_anaphors(relevance, sentences, owner, self.anaphora)
        if query is None and self.fact_weight and len(sentences) > 1:
            # Without a question, centrality alone keeps what the text says most often and drops the one line
            # that differs: an invoice (ID, amount, date, phone, URL) appended to a licence. Facts a reader cannot
            # infer count too, as the share of a sentence's words that are numbers, IDs, URLs or codes.
            density = fact_density([c.text for c in sentences])
            relevance = (1 - self.fact_weight) * _standard(relevance) + self.fact_weight * _standard(density)
        duplicate = self._duplicates(sentences, relevance)
        t = _lap("dedup", t)
        utility = self._utilities(relevance, duplicate)
        nothing_relevant = (
            query is not None
            and self.min_relevance is not None
            and len(relevance) > 0
            and float(relevance.max()) < self.min_relevance
        )

        by_chunk: dict[int, list[int]] = {}
        for si, ci in enumerate(owner):
            by_chunk.setdefault(ci, []).append(si)
        chunk_tokens = tokenizer.count_many([c.text for c in chunks])
        # Python floats (the same values) for the per-sentence work below: indexing an array costs more per item.
        scores, utilities = relevance.tolist(), utility.tolist()
        groups: list[list[Variant]] = []
        for ci, chunk in enumerate(chunks):
            if chunk.protected:
                groups.append([keep_variant(chunk, chunk_tokens[ci])])
                continue
            members = by_chunk.get(ci, [])
            best = max([scores[si] for si in members]) if members else 0.0
            if nothing_relevant or not members:
                groups.append([drop_variant(chunk, best)])
                continue
            groups.append(
                self._variants(chunk, members, sentences, utilities, duplicate, best, chunk_tokens[ci], tokenizer)
            )
        t = _lap("variants", t)
        if self.clauses and query is not None and not nothing_relevant:
            self._clause_variants(groups, chunks, owner, sentences, relevance, utility, duplicate, query, tokenizer)
            _lap("clauses", t)
        return groups

    def _clause_variants(
        self,
        groups: list[list[Variant]],
        chunks: Sequence[Chunk],
        owner: list[int],
        sentences: list[Chunk],
        relevance: np.ndarray,
        utility: np.ndarray,
        duplicate: list[bool],
        query: str,
        tokenizer: Tokenizer,
    ) -> None:
        """Coarse-to-fine below the sentence: the ``clause_sentences`` most relevant long sentences of the request
        are cut into clauses, each clause is scored in its sentence (``Scorer.score_spans``), and each such
        sentence's best clause (alone and with its better neighbour) is proposed as one more variant of its chunk.

        A clause with its neighbour keeps at most 0.9 of its sentence's utility, so the whole sentence wins whenever
        the budget affords it; when it does not (a 120-token sentence under a 100-token budget), the clause that
        matches the question still fits. A lone clause keeps at most ``clause_single`` (0.5): the clause that
        matches the question often only restates it, and the answer sits in the clause next to it (on SQuAD-shifts
        new_wiki, training text, 500 questions: 0.5 instead of 0.9 kept 96.0 / 89.4 % at 20x / 50x instead of
        95.4 / 87.8, and 97.6 instead of 97.8 at 10x)."""
        live = [si for si in np.argsort(-utility, kind="stable").tolist() if not duplicate[si]]
        long = [si for si in live[: self.clause_sentences] if len(sentences[si].text) >= self.clause_min_chars]
        spans = [clause_spans(sentences[si].text, min_chars=max(24, self.clause_min_chars // 5)) for si in long]
        pieces = span_chunks([sentences[si] for si in long], spans)
        parent = [si for si, pairs in zip(long, spans, strict=True) for _ in pairs]
        if not pieces:
            return
        # Each clause is read in its sentence: an encoder pools the clause's token vectors from the pass that scored
        # the sentence (no second forward pass), and a clause like "which was finished in 1889" keeps its subject.
        scores = np.asarray(self.scorer.score_spans([sentences[si] for si in long], spans, query), dtype=np.float64)
        live_rel = relevance[~np.asarray(duplicate)]
        mean, std = float(live_rel.mean()), max(float(live_rel.std()), 1e-6)
        piece_utility = np.exp(np.clip(self.sharpness * (scores - mean) / std, -30.0, 30.0))
        for si in long:
            idx = [i for i, p in enumerate(parent) if p == si]
            if len(idx) < 2:
                continue
            cap = 0.9 * float(utility[si])
            best = max(idx, key=lambda i: piece_utility[i])
            windows = [[best]]
            neighbours = [i for i in (best - 1, best + 1) if i in idx]
            if neighbours:
                windows.append(sorted([best, max(neighbours, key=lambda i: piece_utility[i])]))
            ci = owner[si]
            chunk = chunks[ci]
            seen = {v.text for v in groups[ci]}
            for window in windows:
                text, kept, parts = stitch(chunk, [pieces[i] for i in window])
                if text in seen:
                    continue
                seen.add(text)
                value = min(cap, float(piece_utility[window].max()))
                if len(window) == 1:
                    value = min(value, self.clause_single * float(utility[si]))
                tokens = tokenizer.count_joined(parts)
                groups[ci].append(Variant(chunk, "clause", text, tokens, value, kept, float(relevance[si])))

    def _duplicates(self, sentences: list[Chunk], relevance: np.ndarray) -> list[bool]:
        if not self.dedup or not sentences:
            return [False] * len(sentences)
        texts = [s.text for s in sentences]
        embed = getattr(self.scorer, "embed", None) or getattr(getattr(self.scorer, "dense", None), "embed", None)
        if embed is None:
            return duplicate_mask(texts)
        # With no more sentences than candidates, every sentence is one and the mask depends on the texts alone:
        # a warm request over the same text finds it (the pairwise similarities were most of its cost).
        many = len(texts) > self.dedup_candidates
        key = None if many else f"{self.dedup_threshold}|" + "".join(f"{len(t)}:{t}" for t in texts)
        if key is not None and (found := self._duplicate_memo.get(key)) is not None:
            return list(found)
        top = np.argsort(-relevance, kind="stable")[: self.dedup_candidates]
        top = np.sort(top)
        vectors = embed([texts[i] for i in top])
        emb = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
        emb[top] = vectors
        mask = duplicate_mask(texts, emb, threshold=self.dedup_threshold, candidates=[int(i) for i in top])
        if key is not None:
            self._duplicate_memo.put(key, tuple(mask))
        return mask

    def _utilities(self, relevance: np.ndarray, duplicate: list[bool]) -> np.ndarray:
        if not len(relevance):
            return relevance
        live = relevance[~np.asarray(duplicate)] if not all(duplicate) else relevance
        mean, std = float(live.mean()), float(live.std())
        z = (relevance - mean) / max(std, 1e-6)
        utility = np.exp(np.clip(self.sharpness * z, -30.0, 30.0))
        utility[np.asarray(duplicate)] = 0.0
        return utility

    def _variants(
        self,
        chunk: Chunk,
        members: list[int],
        sentences: list[Chunk],
        utility: list[float],
        duplicate: list[bool],
        best: float,
        tokens: int,
        tokenizer: Tokenizer,
    ) -> list[Variant]:
        position = {si: p for p, si in enumerate(members)}

        def value(chosen: list[int]) -> float:
            # Each kept sentence counts its own utility plus ``expand`` times its best kept neighbour's: a sentence
            # next to a highly relevant one often carries the answer ("It was finished in 1889.").
            if not self.expand:  # the same sum, in the same order, without looking for neighbours
                total = 0.0
                for si in chosen:
                    total += utility[si]
                return total
            kept = set(chosen)
            total = 0.0
            for si in chosen:
                p = position[si]
                near = [members[q] for q in (p - 1, p + 1) if 0 <= q < len(members) and members[q] in kept]
                total += utility[si] + self.expand * max((utility[n] for n in near), default=0.0)
            return total

        variants = [drop_variant(chunk, best), keep_variant(chunk, tokens, value(members), best)]
        live = [si for si in members if not duplicate[si]]
        ranked = sorted(live, key=lambda si: (-utility[si], si))
        seen: set[tuple[int, ...]] = {tuple(members)}
        joiner = self._joiner(chunk, sentences, members)
        candidates: list[tuple[str, list[int]]] = []
        for k in _prefix_sizes(len(ranked), self.max_variants):
            candidates.append(("extract", sorted(ranked[:k])))
            if self.expand and k <= 3:
                steps = [position[si] + d for si in ranked[:k] for d in (-1, 1)]
                around = {members[q] for q in steps if 0 <= q < len(members) and not duplicate[members[q]]}
                grown = around | set(ranked[:k])
                candidates.append(("expand", sorted(grown, key=position.__getitem__)))
        for kind, chosen in candidates:
            key = tuple(chosen)
            if key in seen:
                continue  # the whole chunk, or a set already proposed
            seen.add(key)
            text, kept, tokens = joiner.stitched(tuple(map(position.__getitem__, chosen)), tokenizer)
            variants.append(Variant(chunk, kind, text, tokens, value(chosen), kept, best))
        rate = chunk.metadata.get("rate") if chunk.metadata else None
        if rate is not None:
            cap = float(rate) * len(chunk.text)
            within = [v for v in variants if not v.text or len(v.text) <= cap]
            if not any(v.text for v in within):
                # No sentence is as short as the cap: the most relevant one (else the whole chunk) comes nearest the
                # rate asked; without it the chunk could only be dropped, a rate of 0. The budget still decides.
                within.append(next((v for v in variants[2:] if v.text), variants[1]))
            variants = within
        return variants

    def _joiner(self, chunk: Chunk, sentences: list[Chunk], members: list[int]) -> Joiner:
        """The joiner of ``chunk``'s sentences (``sentences[si]`` for ``si`` in ``members``). They are all of its
        sentences (:func:`chunk_sentences`), a function of the chunk's text and offset, which is all a joiner reads."""
        key = f"{chunk.start}|{chunk.text}"
        joiner = self._joiners.get(key)
        if joiner is None:
            joiner = Joiner(chunk, [sentences[si] for si in members])
            self._joiners.put(key, joiner)
        return joiner


def _standard(values: np.ndarray) -> np.ndarray:
    out: np.ndarray = (values - values.mean()) / max(float(values.std()), 1e-6)
    return out


def _lap(stage: str, since: float) -> float:
    """Record the time since ``since`` as ``stage`` of the running compression; return now."""
    now = time.perf_counter()
    record_timing(stage, now - since)
    return now
