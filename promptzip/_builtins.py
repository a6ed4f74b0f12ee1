"""promptzip's own registrations. Loaded through the ``promptzip.plugins`` entry point, like any plug-in."""

from __future__ import annotations

from typing import Any

__all__ = ["register"]


def register(registries: Any) -> None:
    from promptzip._cache import register_caches
    from promptzip._models import register_models
    from promptzip._policy import register_policies
    from promptzip._presets import register_presets
    from promptzip._redis import register_redis
    from promptzip._tokenizers import register_tokenizers

    register_models(registries)
    register_tokenizers(registries)
    register_caches(registries)
    register_redis(registries)
    from promptzip.retrievers._register import register_retrievers

    register_retrievers(registries)
    from promptzip.compressors._register import register_token_level

    register_token_level(registries)
    from promptzip.compressors.soft import register_soft

    register_soft(registries)
    from promptzip.compressors.tool_outputs import register_reducers

    register_reducers(registries)
    register_policies(registries)
    register_presets(registries)
    _register_lazy(registries)


def _build(cls: type, kw: dict[str, Any]) -> Any:
    """``cls(**kw)``, with a missing or unknown option a ConfigError naming the class (the lazy wrappers below take
    any keywords, so the registry cannot check them against the class itself)."""
    import inspect

    from promptzip._errors import ConfigError

    try:
        inspect.signature(cls).bind(**kw)
    except TypeError as exc:
        raise ConfigError(f"cannot create {cls.__name__}: {exc}") from None
    return cls(**kw)


def _register_lazy(registries: Any) -> None:
    """Scorers and compressors whose modules import numpy-heavy code: wrapped so lookup stays cheap."""

    def dense(**kw: Any) -> Any:
        from promptzip.retrievers.dense import DenseScorer

        return _build(DenseScorer, kw)

    def bm25(**kw: Any) -> Any:
        from promptzip.retrievers.sparse import BM25Scorer

        return _build(BM25Scorer, kw)

    def hybrid(**kw: Any) -> Any:
        from promptzip.retrievers.hybrid import HybridScorer

        return _build(HybridScorer, kw)

    def extractive(**kw: Any) -> Any:
        from promptzip.compressors.extractive import ExtractiveCompressor

        return _build(ExtractiveCompressor, kw)

    registries.scorers.register("dense", dense, help="bi-encoder cosine relevance (sentence-transformers)")
    registries.scorers.register("bm25", bm25, help="Okapi BM25 over the request's chunks")
    registries.scorers.register("hybrid", hybrid, help="dense + max-normalized BM25")
    registries.compressors.register("extractive", extractive, help="query-aware top-sentence selection")
