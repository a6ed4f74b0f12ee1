"""Registrations of the token-level methods: scorers, compressors and the ``balanced`` preset.

``promptzip._builtins.register`` calls :func:`register_token_level`; every factory imports its module lazily, so
looking names up stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["balanced_preset", "register_token_level"]


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
    model: str = "minilm",
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
