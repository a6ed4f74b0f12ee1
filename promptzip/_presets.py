"""Presets name whole stacks, so a user never wires scorers by hand unless they want to.

* ``fast``: hybrid relevance (MiniLM with the shipped question → sentence adapter, ``minilm-qa``, + BM25) and
  extractive sentence selection under the knapsack policy.
* ``balanced``: ``fast`` + token-classifier pruning inside the kept sentences (``promptzip.compressors._register``).
* ``max``: ``balanced`` + fidelity-checked abstractive summaries of the most relevant chunks (local SmolLM2-135M
  by default; ``summarizer="openai", summarizer_options={...}`` for an endpoint).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from promptzip._cache import Cache
from promptzip._roles import Compressor, Scorer

__all__ = ["PresetParts", "fast_preset"]


@dataclass(frozen=True, slots=True)
class PresetParts:
    compressor: Compressor
    description: str


def fast_preset(*, cache: Cache, progress: bool = False, model: str = "minilm-qa", **options: Any) -> PresetParts:
    """hybrid relevance (MiniLM-QA + BM25) + extractive sentence selection

    ``model="minilm-qa"``: the packaged MiniLM with LoRA deltas trained on SQuAD-shifts questions and their answer
    sentences (:mod:`promptzip.retrievers.qa_encoder`); ``model="minilm"`` is the packaged encoder as is.
    """
    from promptzip.compressors.extractive import ExtractiveCompressor
    from promptzip.retrievers.dense import DenseScorer
    from promptzip.retrievers.hybrid import HybridScorer
    from promptzip.retrievers.sparse import BM25Scorer

    weight = options.pop("hybrid_weight", 0.3)
    rerank, top_k, rerank_weight = (
        options.pop("rerank", None),
        options.pop("rerank_top_k", 24),
        options.pop("rerank_weight", 0.0),
    )
    # Clause variants for sentences longer than a tight budget: on SQuAD-shifts new_wiki (training text) they
    # moved retention at 50x by +2.5 (n=200) and +0.7 (n=300) points, and at 10x/20x by -0.5..+0.3; valuing a lone
    # clause at half its sentence (clause_single=0.5) added +0.6 / +1.6 at 20x / 50x on the same 500 questions.
    options.setdefault("clauses", True)
    # A sentence inherits 0.3 of its paragraph's relevance, pooled from the sentences' own vectors (no extra pass):
    # on new_wiki (500 questions) +0.6 / +0.4 / +1.2 points at 10x / 20x / 50x, on SQuAD-shifts nyt (200, short
    # articles) +6.5 / +5.0 / +3.5; both training text.
    options.setdefault("chunk_weight", 0.3)
    # A sentence opening with a pronoun ("He believed …") is worth at least 0.8 of the sentence before it: on
    # new_wiki (training text, 500 questions) seed 3: 0 / +0.4 / +0.4 points at 10x / 20x / 50x; seed 2 with 0.7
    # and 0.85: +0.2 / +0.4 and +0.6 / +0.2 and 0 (0.5: no change, 1.0: -0.2 at 10x); nyt (300, short articles),
    # 0.85: +0.3 at 10x.
    options.setdefault("anaphora", 0.8)
    # model="minilm-qa" rather than "minilm": on new_wiki (tuning articles, never trained on) seeds 2 and 3, 500
    # questions each, 98.0 / 96.4 / 89.4 and 99.4 / 98.2 / 92.6 → 98.4 / 96.4 / 90.8 and 99.6 / 98.2 / 93.2 at
    # 10x / 20x / 50x. Its step-800 checkpoint had +2.0 / +1.4 at 50x but -0.2 at 20x on both seeds: not chosen.
    # precision="auto": the encoder in bfloat16 where the CPU has it natively (see promptzip._precision)
    dense = DenseScorer(model, cache=cache, progress=progress, precision=options.pop("precision", "auto"))
    scorer: Scorer = HybridScorer(dense, BM25Scorer(), weight=weight)
    if rerank is not None:
        # rerank=<a cross-encoder name or folder, or a Scorer> re-orders the best ``rerank_top_k`` sentences (none
        # is packaged; e.g. "ms-marco-minilm-l6" where the hub cache has it).
        from promptzip.retrievers.rerank import CrossEncoderReranker, RerankedScorer

        second = rerank if isinstance(rerank, Scorer) else CrossEncoderReranker(rerank, max_length=128, int8=True)
        scorer = RerankedScorer(scorer, second, top_k=top_k, weight=rerank_weight)
    return PresetParts(
        ExtractiveCompressor(scorer, **options), f"hybrid relevance ({model} + BM25) + extractive sentence selection"
    )


def register_presets(regs: Any) -> None:
    regs.presets.register("fast", fast_preset)
