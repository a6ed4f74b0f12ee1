"""Presets name whole stacks, so a user never wires scorers by hand unless they want to.

* ``fast``: hybrid relevance (packaged MiniLM + BM25) and extractive sentence selection under the knapsack policy.
* ``balanced``: ``fast`` + token-classifier pruning inside the kept sentences (``promptzip.compressors._register``).
* ``max``: ``balanced`` + fidelity-checked abstractive summaries of the most relevant chunks (local SmolLM2-135M
  by default; ``summarizer="openai", summarizer_options={...}`` for an endpoint).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from promptzip._cache import Cache
from promptzip._roles import Compressor

__all__ = ["PresetParts", "fast_preset"]


@dataclass(frozen=True, slots=True)
class PresetParts:
    compressor: Compressor
    description: str


def fast_preset(*, cache: Cache, progress: bool = False, model: str = "minilm", **options: Any) -> PresetParts:
    """hybrid relevance (MiniLM + BM25) + extractive sentence selection"""
    from promptzip.compressors.extractive import ExtractiveCompressor
    from promptzip.retrievers.dense import DenseScorer
    from promptzip.retrievers.hybrid import HybridScorer
    from promptzip.retrievers.sparse import BM25Scorer

    weight = options.pop("hybrid_weight", 0.3)
    scorer = HybridScorer(DenseScorer(model, cache=cache, progress=progress), BM25Scorer(), weight=weight)
    return PresetParts(ExtractiveCompressor(scorer, **options), "hybrid relevance + extractive sentence selection")


def register_presets(regs: Any) -> None:
    regs.presets.register("fast", fast_preset)
