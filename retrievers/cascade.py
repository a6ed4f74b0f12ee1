"""The cascade: a cheap first stage ranks every sentence, and the encoder reads only those the budget can use.

Stage 1 scores every sentence by BM25 and by the cosine of its static vector to the question's
(:mod:`promptzip.retrievers.static`: a tokenization and a gather, no forward pass). Each sentence also takes
``context`` of its paragraph's mean, and one that opens with a pronoun at least 0.8 of the one before it: the encoder
stage weighs a sentence's paragraph and antecedent too (the extractive compressor's ``chunk_weight`` and
``anaphora``), and a first stage blind to them leaves such sentences out.

Stage 2 is the ``fast`` preset's hybrid relevance (the encoder's cosine through its packed path and caches,
unchanged, plus BM25), run only on the *candidates*: the best sentences by stage 1 until they hold ``factor`` times
the budget in word pieces (at least ``min_candidates`` sentences). A candidate's score is the one the hybrid scorer
gives it; every other sentence keeps its stage-1 score, scaled and moved below the lowest candidate's (:func:`_below`),
so each group keeps its own stage's order and every candidate outranks every other sentence.

The budget is the one of the compression running in this context (:func:`promptzip._budget_scope.current_budget`).
Where none is known (a ``score`` call outside a compression), where the candidates would be every sentence, and
without a question (centrality needs every vector), the scores are the hybrid scorer's exactly.

What the extractive compressor asks after ``score`` is answered from the vectors the encoder computed, with no
pass of its own: a paragraph's relevance is pooled from its candidate sentences (or is its best sentence's score
when it has none), a clause of a sentence the encoder did not read takes that sentence's score, and ``embed`` (used
for near-duplicates) gives such a sentence a zero vector: it is never a near-duplicate, while exact repeats are still
found by their text. The candidates of the thread's last ``score`` call are kept for those calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from promptzip._budget_scope import current_budget
from promptzip._errors import ConfigError, check_int
from promptzip._fingerprint import derived_fingerprint
from promptzip._pipeline import record_timing
from promptzip._roles import Scorer, span_chunks
from promptzip._types import Chunk
from promptzip.retrievers.hybrid import HybridScorer
from promptzip.retrievers.static import StaticModel, load_static_model

__all__ = ["DEFAULT_FACTOR", "CascadeScorer"]

_ANAPHORA = 0.8  # the fast preset's ``anaphora``
DEFAULT_FACTOR = 3.0  # chosen on State of the Union speeches (training text), evals/results/cascade_factor.md


@dataclass(frozen=True, slots=True)
class _Plan:
    """One request's candidates: which sentence texts the encoder read, and every sentence's final score."""

    query: str
    index: dict[str, int]  # sentence text → its position in ``final``
    candidate: np.ndarray  # bool per sentence
    final: np.ndarray

    def is_candidate(self, text: str) -> bool:
        at = self.index.get(text)
        return at is not None and bool(self.candidate[at])

    def score_of(self, text: str) -> float | None:
        at = self.index.get(text)
        return None if at is None else float(self.final[at])


class CascadeScorer(Scorer):
    """BM25 + static-vector cosine for every sentence, the hybrid encoder scorer for the budget's candidates.

    ``encoder``: the dense scorer (a :class:`~promptzip.retrievers.dense.DenseScorer`); ``sparse``: BM25;
    ``weight``: BM25's share in the encoder stage's mix (the hybrid scorer's ``weight``); ``first_weight``: BM25's
    share in stage 1 (beside the static cosine); ``context``: the paragraph's share in stage 1; ``static``: a static
    model name or folder, or the encoder to distil one from (default: the encoder's own model); ``factor``: the
    candidates hold this many times the budget in word pieces; ``min_candidates``: at least this many sentences are
    candidates.
    """

    name = "cascade"
    fingerprint_version = 1

    def __init__(
        self,
        encoder: Scorer,
        sparse: Scorer,
        *,
        weight: float = 0.3,
        first_weight: float = 0.5,
        context: float = 0.3,
        static: str | None = None,
        factor: float = DEFAULT_FACTOR,
        min_candidates: int = 8,
    ) -> None:
        if not isinstance(encoder, Scorer) or not isinstance(sparse, Scorer):
            raise ConfigError("CascadeScorer needs two Scorers (an encoder scorer and BM25)")
        for label, value in (("weight", weight), ("first_weight", first_weight), ("context", context)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{label} must be in [0, 1], got {value!r}")
        if not factor > 0:
            raise ConfigError(f"factor must be positive, got {factor!r}")
        self.encoder = encoder  # not "dense": callers that find a ".dense" embed with it directly (RerankedScorer)
        self.sparse = sparse
        self.weight = float(weight)
        self.first_weight = float(first_weight)
        self.context = float(context)
        self.static = static
        self.factor = float(factor)
        self.min_candidates = check_int(min_candidates, "min_candidates")
        self.hybrid = HybridScorer(encoder, sparse, weight=self.weight)
        self._model: StaticModel | None = None
        self._model_lock = threading.Lock()
        self._local = threading.local()

    @classmethod
    def from_model(
        cls, model: str = "minilm-qa", *, cache: Any = None, precision: str = "auto", **options: Any
    ) -> CascadeScorer:
        """The cascade over ``DenseScorer(model)`` and BM25 (the ``cascade`` scorer of the registry)."""
        from promptzip.retrievers.dense import DenseScorer
        from promptzip.retrievers.sparse import BM25Scorer

        return cls(DenseScorer(model, cache=cache, precision=precision), BM25Scorer(), **options)

    @property
    def fingerprint(self) -> str:
        return derived_fingerprint(self, values={"static": self.static_model().fingerprint})

    def static_model(self) -> StaticModel:
        """The static model, built on first need (see :mod:`promptzip.retrievers.static`)."""
        if self._model is None:
            with self._model_lock:
                if self._model is None:
                    name = self.static or getattr(self.encoder, "model_name", None)
                    if not isinstance(name, str):
                        raise ConfigError("the cascade needs static= when its encoder scorer names no model")
                    self._model = load_static_model(name)
        return self._model

    # ------------------------------------------------------------------------------------------------- scoring
    def _score(self, chunks: Sequence[Chunk], query: str | None) -> Sequence[float]:
        budget = current_budget()
        self._local.plan = None
        if not query or budget is None:
            return self.hybrid.score(chunks, query)
        t = time.perf_counter()
        texts = [c.text for c in chunks]
        sparse = _max_normalized(self.sparse.score(chunks, query))
        vectors, pieces = self.static_model().encode(texts)
        question, _ = self.static_model().encode([query])
        first = self._in_context((1 - self.first_weight) * (vectors @ question[0]) + self.first_weight * sparse, chunks)
        order = np.argsort(-first, kind="stable")
        held = np.cumsum(pieces[order])
        count = max(self.min_candidates, int(np.searchsorted(held, self.factor * budget, side="left")) + 1)
        record_timing("first_stage", time.perf_counter() - t)
        if count >= len(chunks):
            return self.hybrid.score(chunks, query)
        chosen = np.sort(order[:count])
        candidate = np.zeros(len(chunks), dtype=bool)
        candidate[chosen] = True
        final = np.empty(len(chunks), dtype=np.float64)
        dense = np.asarray(self.encoder.score([chunks[i] for i in chosen], query), dtype=np.float64)
        final[chosen] = (1 - self.weight) * dense + self.weight * sparse[chosen]
        final[~candidate] = _below(first[~candidate], first[candidate], final[candidate])
        index: dict[str, int] = {}
        for i, text in enumerate(texts):  # a repeated text is a candidate if any of its copies is
            if text not in index or candidate[i]:
                index[text] = i
        self._local.plan = _Plan(query, index, candidate, final)
        return final.tolist()

    def _in_context(self, scores: np.ndarray, chunks: Sequence[Chunk]) -> np.ndarray:
        """Stage-1 scores with ``context`` of their paragraph's mean and the extractive compressor's pronoun rule
        (:func:`~promptzip.compressors.extractive.carry_to_anaphors`). A paragraph is a run of sentences of one source
        with single whitespace between them: the splitter puts a blank line between paragraphs."""
        from promptzip.compressors.extractive import carry_to_anaphors

        paragraph = np.zeros(len(chunks), dtype=np.intp)
        for i in range(1, len(chunks)):
            before, here = chunks[i - 1], chunks[i]
            paragraph[i] = paragraph[i - 1] + (here.source_id != before.source_id or here.start - before.end > 1)
        means = np.bincount(paragraph, weights=scores) / np.bincount(paragraph)
        mixed = (1 - self.context) * scores + self.context * means[paragraph]
        return carry_to_anaphors(mixed, chunks, paragraph.tolist(), _ANAPHORA)

    def last_read(self) -> tuple[int, int] | None:
        """``(sentences the encoder read, sentences scored)`` in this thread's last ``score`` call that cascaded, or
        ``None`` when it did not (no budget, no question, or every sentence was a candidate)."""
        plan: _Plan | None = getattr(self._local, "plan", None)
        return None if plan is None else (int(plan.candidate.sum()), len(plan.candidate))

    def _plan(self, query: str | None) -> _Plan | None:
        plan: _Plan | None = getattr(self._local, "plan", None)
        return plan if plan is not None and query and plan.query == query else None

    def _score_pooled(
        self, chunks: Sequence[Chunk], parts: Sequence[Sequence[tuple[int, int]]], query: str | None
    ) -> Sequence[float]:
        """A paragraph's encoder relevance pooled from its candidate sentences, mixed with its BM25 as the hybrid
        scorer mixes; a paragraph without candidates takes its best sentence's score (below every candidate)."""
        plan = self._plan(query)
        texts = [[c.text[a:b] for a, b in pairs] for c, pairs in zip(chunks, parts, strict=True)]
        if plan is None or any(plan.score_of(t) is None for group in texts for t in group):
            return self.hybrid.score_pooled(chunks, parts, query)
        read = [i for i, group in enumerate(texts) if any(plan.is_candidate(t) for t in group)]
        out = np.asarray([max((plan.score_of(t) or 0.0) for t in group) if group else 0.0 for group in texts])
        if read:
            kept = [[p for p, t in zip(parts[i], texts[i], strict=True) if plan.is_candidate(t)] for i in read]
            dense = np.asarray(self.encoder.score_pooled([chunks[i] for i in read], kept, query))
            sparse = _max_normalized(self.sparse.score(chunks, query))[read]
            out[read] = (1 - self.weight) * dense + self.weight * sparse
        return [float(x) for x in out]

    def _score_spans(
        self, chunks: Sequence[Chunk], spans: Sequence[Sequence[tuple[int, int]]], query: str | None
    ) -> Sequence[float]:
        """Clauses of candidate sentences as the hybrid scorer scores them (pooled from the encoder's pass over the
        sentence); a clause of a sentence the encoder did not read takes that sentence's score."""
        plan = self._plan(query)
        if plan is None or all(plan.is_candidate(c.text) for c in chunks if c.text in plan.index):
            return self.hybrid.score_spans(chunks, spans, query)
        sparse = _max_normalized(self.sparse.score(span_chunks(chunks, spans), query))
        read = [i for i, c in enumerate(chunks) if plan.is_candidate(c.text) or c.text not in plan.index]
        dense = iter(self.encoder.score_spans([chunks[i] for i in read], [spans[i] for i in read], query))
        reread = set(read)
        out: list[float] = []
        for i, (chunk, pairs) in enumerate(zip(chunks, spans, strict=True)):
            own = plan.score_of(chunk.text)
            for _ in pairs:
                if i in reread or own is None:
                    out.append((1 - self.weight) * next(dense) + self.weight * float(sparse[len(out)]))
                else:
                    out.append(own)
        return out

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit encoder vectors of ``texts``; after a cascaded ``score`` in this thread, the sentences the encoder did
        not read get zero rows (never near-duplicates of anything) instead of a pass of their own."""
        plan = getattr(self._local, "plan", None)
        embed = getattr(self.encoder, "embed", None)
        if embed is None:
            raise ConfigError(f"the cascade's encoder scorer {self.encoder.name!r} has no embed method")
        if plan is None:
            return np.asarray(embed(list(texts)), dtype=np.float32)
        read = [i for i, t in enumerate(texts) if plan.is_candidate(t)]
        if not read:
            return np.zeros((len(texts), 1), dtype=np.float32)
        vectors = np.asarray(embed([texts[i] for i in read]), dtype=np.float32)
        out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
        out[read] = vectors
        return out


def _max_normalized(scores: Sequence[float]) -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64)
    top = float(values.max()) if len(values) else 0.0
    return values / top if top > 0 else np.zeros_like(values)


def _below(rest: np.ndarray, first: np.ndarray, final: np.ndarray) -> np.ndarray:
    """Stage-1 scores ``rest`` of the sentences the encoder did not read, placed below the candidates' lowest final
    score: the best of them just under it, the others at their stage-1 distance times the slope of the candidates'
    final scores on their stage-1 scores (least squares, never negative: where stage 1 barely predicts the encoder,
    the rest stay close together instead of spreading the candidates' standardized utilities)."""
    slope = 0.0
    if float(first.var()) > 1e-12:
        slope = max(0.0, float(np.mean((first - first.mean()) * (final - final.mean())) / first.var()))
    gap = 1e-3 * max(float(final.std()), 1e-3)
    return float(final.min()) - gap - (float(rest.max()) - rest) * slope
