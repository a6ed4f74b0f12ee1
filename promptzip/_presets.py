"""Presets name whole stacks, so a user never wires scorers by hand unless they want to.

Each preset is one frozen dataclass: its fields are every option the stack takes, each default written here once
(the component classes keep their own plain defaults; a preset passes every field explicitly), and
:meth:`Preset.build` assembles the compressor. ``Zipper.from_preset(name, **options)`` validates the options
against the fields first, so a misspelled option is a :class:`~promptzip.ConfigError` naming the valid ones.

* ``fast`` (:class:`FastPreset`): hybrid relevance (MiniLM with the shipped question → sentence adapter,
  ``minilm-qa``, + BM25) and extractive sentence selection under the knapsack policy.
* ``balanced`` (:class:`BalancedPreset`): ``fast`` + token-classifier pruning inside the kept sentences.
* ``max`` (:class:`MaxPreset`): ``balanced``, and with ``summaries=True`` (or a ``summarizer`` given) fidelity-checked
  abstractive summaries of the most relevant chunks (local SmolLM2-135M by default; ``summarizer="openai",
  summarizer_options={...}`` for an endpoint). Summaries are off by default: on the GSM8K suite the local model's
  summaries were never chosen over the extractive variants and cost ten times the time
  (``evals/results/max_summaries.md``).

A plug-in registers a preset the same way: a class with a ``build`` method (a frozen dataclass for validation), or
any callable ``(cache=, progress=, **options) -> PresetParts``.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from promptzip._cache import Cache
from promptzip._errors import ConfigError
from promptzip._precision import PRECISIONS
from promptzip._roles import Compressor, Scorer

__all__ = [
    "BalancedPreset",
    "FastPreset",
    "MaxPreset",
    "Preset",
    "PresetParts",
    "configure",
    "make_summarizer",
    "make_token_scorer",
]


@dataclass(frozen=True, slots=True)
class PresetParts:
    compressor: Compressor
    description: str


@runtime_checkable
class Preset(Protocol):
    """A configured stack: one required method."""

    def build(self, *, cache: Cache, progress: bool = False) -> PresetParts: ...


def configure(factory: Any, name: str, options: Mapping[str, Any]) -> Any:
    """``factory(**options)`` for a dataclass preset, with unknown options reported as a ConfigError that names the
    valid ones (and the closest match); other factories get the options as they are, at build time."""
    if not (isinstance(factory, type) and dataclasses.is_dataclass(factory)):
        return None
    valid = sorted(f.name for f in dataclasses.fields(factory) if f.init)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        hints = [m for u in unknown for m in difflib.get_close_matches(u, valid, n=1)]
        guess = f" (did you mean {', '.join(repr(h) for h in hints)}?)" if hints else ""
        raise ConfigError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} for preset {name!r}"
            f"{guess}; valid options: {', '.join(valid)}"
        )
    try:
        return factory(**options)
    except TypeError as exc:  # a positional-only mix-up, not a name: still the user's configuration
        raise ConfigError(f"preset {name!r}: {exc}") from exc


def _unit(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be in [0, 1], got {value!r}")


@dataclass(frozen=True, kw_only=True)
class FastPreset:
    """hybrid relevance (MiniLM-QA + BM25) + extractive sentence selection

    ``model="minilm-qa"``: the packaged MiniLM with LoRA deltas trained on SQuAD-shifts questions and their answer
    sentences (:mod:`promptzip.retrievers.qa_encoder`); ``model="minilm"`` is the packaged encoder as is.
    ``rerank``: a cross-encoder name or folder, or a Scorer, that re-orders the best ``rerank_top_k`` sentences
    (none is packaged). ``cascade=True``: BM25 + a static model distilled from ``model`` rank every sentence first,
    and the encoder reads only the best ones up to ``cascade_factor`` times the budget
    (:mod:`promptzip.retrievers.cascade`). The selection options are
    :class:`~promptzip.compressors.extractive.ExtractiveCompressor`'s; the values here were chosen on SQuAD-shifts
    new_wiki and nyt (training text) with ``promptzip.evals.tune``.
    """

    slow: ClassVar[bool] = False

    model: str = "minilm-qa"
    precision: str = "auto"  # the encoder in bfloat16 where the CPU has it natively (promptzip._precision)
    hybrid_weight: float = 0.3
    rerank: Any = None
    rerank_top_k: int = 24
    rerank_weight: float = 0.0
    cascade: bool = False
    cascade_factor: float = 3.0  # chosen on training text: evals/results/cascade_factor.md
    sharpness: float = 4.0
    max_variants: int = 12
    min_relevance: float | None = 0.2
    dedup: bool = True
    dedup_threshold: float = 0.97
    dedup_candidates: int = 512
    chunk_weight: float = 0.3  # a sentence inherits this much of its paragraph's relevance
    expand: float = 0.0
    clauses: bool = True  # clause variants for sentences longer than a tight budget
    clause_min_chars: int = 160
    clause_sentences: int = 16
    clause_single: float = 0.5
    anaphora: float = 0.8  # a sentence opening with a pronoun is worth at least this much of the one before
    fact_weight: float = 0.5  # without a question: the weight of fact density (IDs, amounts, dates) beside centrality

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError(f"model must be a model name or folder, got {self.model!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("hybrid_weight", "anaphora", "chunk_weight", "clause_single", "rerank_weight", "fact_weight"):
            _unit(name, getattr(self, name))
        if self.rerank_top_k < 1 or self.max_variants < 1:
            raise ConfigError("rerank_top_k and max_variants must be at least 1")
        if not isinstance(self.cascade, bool) or not self.cascade_factor > 0:
            raise ConfigError(f"cascade must be a bool and cascade_factor positive, got {self.cascade_factor!r}")

    def selection(self) -> dict[str, Any]:
        """The ExtractiveCompressor's options."""
        own = {"model", "precision", "hybrid_weight", "rerank", "rerank_top_k", "rerank_weight"}
        own |= {"cascade", "cascade_factor"}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(FastPreset) if f.name not in own}

    def scorer(self, *, cache: Cache, progress: bool) -> Scorer:
        from promptzip.retrievers.dense import DenseScorer
        from promptzip.retrievers.hybrid import HybridScorer
        from promptzip.retrievers.sparse import BM25Scorer

        dense = DenseScorer(self.model, cache=cache, progress=progress, precision=self.precision)
        scorer: Scorer = HybridScorer(dense, BM25Scorer(), weight=self.hybrid_weight)
        if self.cascade:  # the same two scorers, the encoder on the budget's candidates only
            from promptzip.retrievers.cascade import CascadeScorer

            scorer = CascadeScorer(dense, BM25Scorer(), weight=self.hybrid_weight, factor=self.cascade_factor)
        if self.rerank is None:
            return scorer
        from promptzip.retrievers.rerank import CrossEncoderReranker, RerankedScorer

        second = (
            self.rerank
            if isinstance(self.rerank, Scorer)
            else CrossEncoderReranker(self.rerank, max_length=128, int8=True)
        )
        return RerankedScorer(scorer, second, top_k=self.rerank_top_k, weight=self.rerank_weight)

    def extractive(self, *, cache: Cache, progress: bool) -> Compressor:
        from promptzip.compressors.extractive import ExtractiveCompressor

        return ExtractiveCompressor(self.scorer(cache=cache, progress=progress), **self.selection())

    def build(self, *, cache: Cache, progress: bool = False) -> PresetParts:
        return PresetParts(
            self.extractive(cache=cache, progress=progress),
            f"{'cascaded ' if self.cascade else ''}hybrid relevance ({self.model} + BM25) + extractive sentence "
            "selection",
        )


@dataclass(frozen=True, kw_only=True)
class BalancedPreset(FastPreset):
    """hybrid relevance + extractive sentence selection, then token pruning inside the kept sentences

    ``classifier``: ``"minilm-tc"`` (the packaged distilled token classifier), a token-scorer name
    (``self-information``), a model name or folder, or a TokenScorer.
    """

    classifier: Any = "minilm-tc"
    rates: tuple[float, ...] = (0.33, 0.5, 0.7)
    force_tokens: tuple[str, ...] = ()
    max_pruned_variants: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.rates or any(not 0.0 < r <= 1.0 for r in self.rates):
            raise ConfigError(f"rates must be kept fractions in (0, 1], got {self.rates!r}")

    def pruned(self, *, cache: Cache, progress: bool) -> Compressor:
        from promptzip.compressors.token_prune import PrunedExtractiveCompressor

        return PrunedExtractiveCompressor(
            self.extractive(cache=cache, progress=progress),
            make_token_scorer(self.classifier),
            cache=cache,
            rates=tuple(self.rates),
            force_tokens=tuple(self.force_tokens),
            max_pruned_variants=self.max_pruned_variants,
        )

    def build(self, *, cache: Cache, progress: bool = False) -> PresetParts:
        return PresetParts(
            self.pruned(cache=cache, progress=progress),
            "hybrid relevance + extractive selection + distilled token-classifier pruning",
        )


@dataclass(frozen=True, kw_only=True)
class MaxPreset(BalancedPreset):
    """the balanced stack; with summaries=True, + fidelity-checked summaries of the most relevant chunks

    ``summaries``: ``None`` (the default) turns them on only when a ``summarizer`` is given; ``summarizer``:
    ``None`` is the packaged SmolLM2-135M. Off by default because the local model's summaries did not earn their
    time on the evaluation suites (``evals/results/max_summaries.md``).
    """

    # With summaries, generation takes seconds per chunk; without, it is ``balanced``, which the eval runs anyway.
    slow: ClassVar[bool] = True

    summaries: bool | None = None
    summarizer: Any = None
    summarizer_options: Mapping[str, Any] = field(default_factory=dict)
    targets: tuple[float, ...] = (0.25, 0.5)
    max_chunks: int = 4
    min_chunk_tokens: int = 48
    discount: float = 0.9
    query_focused: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.summaries is not None and not isinstance(self.summaries, bool):
            raise ConfigError(f"summaries must be True, False or None, got {self.summaries!r}")

    @property
    def summarizing(self) -> bool:
        return self.summaries if self.summaries is not None else self.summarizer is not None

    def build(self, *, cache: Cache, progress: bool = False) -> PresetParts:
        from promptzip.compressors.abstractive import AbstractiveCompressor

        if not self.summarizing:
            parts = super().build(cache=cache, progress=progress)
            return PresetParts(parts.compressor, parts.description + " (summaries off: summaries=True adds them)")
        summarizer = "smollm2-135m" if self.summarizer is None else self.summarizer
        compressor = AbstractiveCompressor(
            self.pruned(cache=cache, progress=progress),
            make_summarizer(summarizer, **dict(self.summarizer_options or {})),
            cache=cache,
            targets=tuple(self.targets),
            max_chunks=self.max_chunks,
            min_chunk_tokens=self.min_chunk_tokens,
            discount=self.discount,
            query_focused=self.query_focused,
        )
        return PresetParts(compressor, "balanced + fidelity-checked abstractive summaries (local SmolLM2-135M)")


def make_token_scorer(spec: Any) -> Any:
    """A TokenScorer from a name (``token-classifier``/``self-information``), a model name, or an instance."""
    from promptzip._registry import registries
    from promptzip._roles import TokenScorer

    if isinstance(spec, TokenScorer):
        return spec
    if isinstance(spec, str) and spec in registries.token_scorers:
        return registries.token_scorers.create(spec)
    from promptzip.compressors.token_classifier import TokenClassifierScorer

    return TokenClassifierScorer(spec)


def make_summarizer(spec: Any, **options: Any) -> Any:
    """A Summarizer from an instance, a registry name (``local``, ``openai``; ``options`` go to it) or a local
    model name or folder (a :class:`LocalSummarizer` of it)."""
    from promptzip._registry import registries
    from promptzip.compressors.summarizers import LocalSummarizer, Summarizer

    if isinstance(spec, Summarizer):
        return spec
    if isinstance(spec, str) and spec in registries.summarizers:
        return registries.summarizers.create(spec, **options)
    return LocalSummarizer(spec, **options)


def register_presets(regs: Any) -> None:
    regs.presets.register("fast", FastPreset)
    regs.presets.register("balanced", BalancedPreset)
    regs.presets.register("max", MaxPreset)
