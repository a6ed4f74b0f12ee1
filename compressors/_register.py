"""Registrations of the token-level and abstractive methods: scorers, summarizers, compressors and the
``balanced`` and ``max`` presets.

``promptzip._builtins.register`` calls :func:`register_token_level`; every factory imports its module lazily, so
looking names up stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["balanced_preset", "max_preset", "register_abstractive", "register_token_level"]


def _token_scorer(spec: Any) -> Any:
    """A TokenScorer from a name (``token-classifier``/``self-information``), a model name, or an instance."""
    from promptzip._roles import TokenScorer

    if isinstance(spec, TokenScorer):
        return spec
    from promptzip._registry import registries

    if isinstance(spec, str) and spec in registries.token_scorers:
        return registries.token_scorers.create(spec)
    from promptzip.compressors.token_classifier import TokenClassifierScorer

    return TokenClassifierScorer(spec)


def balanced_preset(
    *,
    cache: Any,
    progress: bool = False,
    model: str = "minilm-qa",
    classifier: Any = "minilm-tc",
    rates: tuple[float, ...] = (0.33, 0.5, 0.7),
    force_tokens: tuple[str, ...] = (),
    max_pruned_variants: int = 8,
    **options: Any,
) -> Any:
    """hybrid relevance + extractive sentence selection, then token pruning inside the kept sentences"""
    from promptzip._presets import PresetParts, fast_preset
    from promptzip.compressors.token_prune import PrunedExtractiveCompressor

    extractive = fast_preset(cache=cache, progress=progress, model=model, **options).compressor
    compressor = PrunedExtractiveCompressor(
        extractive,
        _token_scorer(classifier),
        cache=cache,
        rates=rates,
        force_tokens=force_tokens,
        max_pruned_variants=max_pruned_variants,
    )
    return PresetParts(compressor, "hybrid relevance + extractive selection + distilled token-classifier pruning")


def _summarizer(spec: Any, **options: Any) -> Any:
    """A Summarizer from an instance, a registry name (``local``, ``openai``; ``options`` go to it) or a local
    model name or folder (a :class:`LocalSummarizer` of it)."""
    from promptzip.compressors.summarizers import LocalSummarizer, Summarizer

    if isinstance(spec, Summarizer):
        return spec
    from promptzip._registry import registries

    if isinstance(spec, str) and spec in registries.summarizers:
        return registries.summarizers.create(spec, **options)
    return LocalSummarizer(spec, **options)


def max_preset(
    *,
    cache: Any,
    progress: bool = False,
    summarizer: Any = "smollm2-135m",
    summarizer_options: dict[str, Any] | None = None,
    targets: tuple[float, ...] = (0.25, 0.5),
    max_chunks: int = 4,
    min_chunk_tokens: int = 48,
    discount: float = 0.9,
    query_focused: bool = True,
    **options: Any,
) -> Any:
    """the balanced stack + fidelity-checked summaries of the most relevant chunks (local SmolLM2 by default)"""
    from promptzip._presets import PresetParts
    from promptzip.compressors.abstractive import AbstractiveCompressor

    inner = balanced_preset(cache=cache, progress=progress, **options).compressor
    compressor = AbstractiveCompressor(
        inner,
        _summarizer(summarizer, **(summarizer_options or {})),
        cache=cache,
        targets=targets,
        max_chunks=max_chunks,
        min_chunk_tokens=min_chunk_tokens,
        discount=discount,
        query_focused=query_focused,
    )
    return PresetParts(compressor, "balanced + fidelity-checked abstractive summaries (local SmolLM2-135M)")


max_preset.slow = True  # type: ignore[attr-defined]  # generation takes seconds per chunk: not for quick eval runs


def register_abstractive(registries: Any) -> None:
    """Register the ``local`` and ``openai`` summarizers, the ``summarize`` compressor and the ``max`` preset."""

    def local(**kw: Any) -> Any:
        from promptzip.compressors.summarizers import LocalSummarizer

        return LocalSummarizer(**kw)

    def openai(**kw: Any) -> Any:
        from promptzip.compressors.summarizers import OpenAISummarizer

        return OpenAISummarizer(**kw)

    def summarize(*, inner: Any, summarizer: Any = "local", summarizer_options: Any = None, **kw: Any) -> Any:
        from promptzip.compressors.abstractive import AbstractiveCompressor

        if isinstance(inner, str):
            inner = registries.compressors.create(inner)
        return AbstractiveCompressor(inner, _summarizer(summarizer, **(summarizer_options or {})), **kw)

    registries.summarizers.register("local", local, help="a local causal LM (SmolLM2-135M by default), greedy")
    registries.summarizers.register("openai", openai, help="an OpenAI-compatible /chat/completions endpoint")
    registries.compressors.register(
        "summarize", summarize, help="an inner compressor's variants + fidelity-checked summaries"
    )
    registries.presets.register("max", max_preset)


def register_token_level(registries: Any) -> None:
    """Register ``token-classifier`` and ``self-information`` (token scorers), ``token-prune`` and
    ``pruned-extractive`` (compressors) and the ``balanced`` preset."""

    def token_classifier(**kw: Any) -> Any:
        from promptzip.compressors.token_classifier import TokenClassifierScorer

        return TokenClassifierScorer(**kw)

    def self_information(**kw: Any) -> Any:
        from promptzip.compressors.self_information import SelfInformationScorer

        return SelfInformationScorer(**kw)

    def token_prune(*, scorer: Any = "token-classifier", **kw: Any) -> Any:
        from promptzip.compressors.token_prune import TokenPruneCompressor

        return TokenPruneCompressor(_token_scorer(scorer), **kw)

    def pruned_extractive(*, extractive: Any, scorer: Any = "token-classifier", **kw: Any) -> Any:
        from promptzip.compressors.token_prune import PrunedExtractiveCompressor

        return PrunedExtractiveCompressor(extractive, _token_scorer(scorer), **kw)

    registries.token_scorers.register(
        "token-classifier", token_classifier, help="token-classifier keep-probabilities (LLMLingua-2 style)"
    )
    registries.token_scorers.register(
        "self-information", self_information, help="causal-LM self-information per word (SmolLM2 by default)"
    )
    registries.compressors.register("token-prune", token_prune, help="task-agnostic word pruning at per-chunk rates")
    registries.compressors.register(
        "pruned-extractive", pruned_extractive, help="extractive selection, then word pruning inside kept sentences"
    )
    registries.presets.register("balanced", balanced_preset)
    register_abstractive(registries)
