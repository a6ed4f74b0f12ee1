"""Few-shot demonstrations: select the most useful ones for an input and compress them (UniICL's idea).

Each demonstration is one chunk. Its variants are: intact, shortened (its first sentence — usually the question —
and its last — usually the answer — plus the sentences most relevant to the input, in order), and dropped. The
knapsack then picks per demonstration under the budget, so the most similar demonstrations survive intact and
weaker ones shrink or go. Utilities: ``exp(sharpness · z)`` of the demonstration's standardized relevance to the
input, scaled by ``partial_value · kept_fraction`` for shortened forms, so an intact demonstration is always worth
more than any shortened one of the same demonstration.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from promptzip._fingerprint import derived_fingerprint
from promptzip._roles import Compressor, Scorer, drop_variant, keep_variant
from promptzip._split import sentence_spans
from promptzip._tokenizers import Tokenizer
from promptzip._types import Chunk, Span, Variant

__all__ = ["DemonstrationCompressor"]


class DemonstrationCompressor(Compressor):
    """Variants of whole demonstrations for the knapsack (see the module docstring)."""

    name = "demonstrations"

    def __init__(self, scorer: Scorer, *, sharpness: float = 2.0, partial_value: float = 0.6) -> None:
        self.scorer = scorer
        self.sharpness = sharpness
        self.partial_value = partial_value

    @property
    def fingerprint(self) -> str:
        return derived_fingerprint(self)

    def _propose(self, chunks: Sequence[Chunk], query: str | None, tokenizer: Tokenizer) -> list[list[Variant]]:
        relevance = np.asarray(self.scorer.score(chunks, query), dtype=np.float64)
        std = float(relevance.std()) if len(relevance) > 1 else 1.0
        z = (relevance - float(relevance.mean())) / max(std, 1e-6)
        weight = np.exp(np.clip(self.sharpness * z, -30.0, 30.0))
        counts = tokenizer.count_many([c.text for c in chunks])
        # Every middle sentence of every demonstration is scored in one call (one query encoding, one batch).
        layout: list[list[Chunk]] = []
        middles: list[Chunk] = []
        for chunk in chunks:
            spans = sentence_spans(chunk.text) if not chunk.protected else []
            sentences = [Chunk(chunk.text[a:b], chunk.source_id, chunk.start + a, chunk.start + b) for a, b in spans]
            layout.append(sentences)
            if len(sentences) >= 3:
                middles.extend(sentences[1:-1])
        middle_scores = iter(self.scorer.score(middles, query) if middles else [])
        groups: list[list[Variant]] = []
        for i, chunk in enumerate(chunks):
            rel = float(relevance[i])
            if chunk.protected:
                groups.append([keep_variant(chunk, counts[i], float(weight[i]), rel)])
                continue
            group = [drop_variant(chunk, rel), keep_variant(chunk, counts[i], float(weight[i]), rel)]
            sentences = layout[i]
            if len(sentences) >= 3:
                scores = [next(middle_scores) for _ in sentences[1:-1]]
                group.extend(self._shortened(chunk, sentences, scores, tokenizer, float(weight[i]), rel, counts[i]))
            groups.append(group)
        return groups

    def _shortened(
        self,
        chunk: Chunk,
        sentences: list[Chunk],
        scores: list[float],
        tokenizer: Tokenizer,
        weight: float,
        rel: float,
        tokens: int,
    ) -> list[Variant]:
        middle = list(range(1, len(sentences) - 1))
        ranked = [i for _, i in sorted(zip(scores, middle, strict=True), key=lambda p: (-p[0], p[1]))]
        choices = [sorted([0, len(sentences) - 1, *ranked[:k]]) for k in range(len(ranked))]
        texts = [" ".join(sentences[i].text for i in chosen) for chosen in choices]
        out: list[Variant] = []
        for chosen, text, n in zip(choices, texts, tokenizer.count_many(texts), strict=True):
            value = weight * self.partial_value * (n / max(tokens, 1))
            kept = tuple(Span(sentences[i].start, sentences[i].end) for i in chosen)
            out.append(Variant(chunk, "shortened", text, n, value, kept, rel))
        return out
