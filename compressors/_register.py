"""Registrations of the token-level and abstractive methods: token scorers, summarizers and compressors (the
``balanced`` and ``max`` presets that use them are in :mod:`promptzip._presets`).

``promptzip._builtins.register`` calls :func:`register_token_level`; every factory imports its module lazily, so
looking names up stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["register_abstractive", "register_token_level"]


def register_abstractive(registries: Any) -> None:
    """Register the ``local`` and ``openai`` summarizers and the ``summarize`` compressor."""

    def local(**kw: Any) -> Any:
        from promptzip.compressors.summarizers import LocalSummarizer

        return LocalSummarizer(**kw)

    def openai(**kw: Any) -> Any:
        from promptzip.compressors.summarizers import OpenAISummarizer

        return OpenAISummarizer(**kw)

    def summarize(*, inner: Any, summarizer: Any = "local", summarizer_options: Any = None, **kw: Any) -> Any:
        from promptzip._presets import make_summarizer
        from promptzip.compressors.abstractive import AbstractiveCompressor

        if isinstance(inner, str):
            inner = registries.compressors.create(inner)
        return AbstractiveCompressor(inner, make_summarizer(summarizer, **(summarizer_options or {})), **kw)

    registries.summarizers.register("local", local, help="a local causal LM (SmolLM2-135M by default), greedy")
    registries.summarizers.register("openai", openai, help="an OpenAI-compatible /chat/completions endpoint")
    registries.compressors.register(
        "summarize", summarize, help="an inner compressor's variants + fidelity-checked summaries"
    )


def register_token_level(registries: Any) -> None:
    """Register ``token-classifier`` and ``self-information`` (token scorers), ``token-prune`` and
    ``pruned-extractive`` (compressors)."""

    def token_classifier(**kw: Any) -> Any:
        from promptzip.compressors.token_classifier import TokenClassifierScorer

        return TokenClassifierScorer(**kw)

    def self_information(**kw: Any) -> Any:
        from promptzip.compressors.self_information import SelfInformationScorer

        return SelfInformationScorer(**kw)

    def token_prune(*, scorer: Any = "token-classifier", **kw: Any) -> Any:
        from promptzip._presets import make_token_scorer
        from promptzip.compressors.token_prune import TokenPruneCompressor

        return TokenPruneCompressor(make_token_scorer(scorer), **kw)

    def pruned_extractive(*, extractive: Any, scorer: Any = "token-classifier", **kw: Any) -> Any:
        from promptzip._presets import make_token_scorer
        from promptzip.compressors.token_prune import PrunedExtractiveCompressor

        return PrunedExtractiveCompressor(extractive, make_token_scorer(scorer), **kw)

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
    register_abstractive(registries)
