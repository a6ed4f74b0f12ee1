"""What the proxy tests share: a model-free Zipper factory and settings for a fake upstream."""

from __future__ import annotations

from typing import Any

from promptzip._cache import Cache
from promptzip._pipeline import Zipper
from promptzip.compressors.extractive import ExtractiveCompressor
from promptzip.integrations.proxy import ProxySettings
from promptzip.retrievers.sparse import BM25Scorer


def bm25(preset: str, target: str, cache: Cache) -> Zipper:
    """A cheap stack with no model: BM25 relevance + extractive selection."""
    return Zipper(ExtractiveCompressor(BM25Scorer(), min_relevance=None), target=target, name=preset)


def settings(upstream: str, **kw: Any) -> ProxySettings:
    return ProxySettings(**{"upstream": upstream, "cache": "memory", "min_tokens": 50, **kw})
