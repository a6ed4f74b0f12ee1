"""promptzip: make LLM context smaller under an exact token budget without losing what the answer needs.

>>> import promptzip as pz
>>> r = pz.compress(chunks, question="...", budget=pz.Budget(tokens=800), target="gpt-4o")  # doctest: +SKIP
>>> r.text, r.tokens_in, r.tokens_out, r.ratio, r.chunks[0].kept  # doctest: +SKIP

Importing promptzip is light: models (torch, transformers, faiss) load on first use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from promptzip._cache import Cache
from promptzip._errors import (
    BudgetError,
    ConfigError,
    DeadlineExceeded,
    ExpandNotFound,
    InputError,
    ModelNotAvailable,
    PromptZipError,
    UpstreamError,
)
from promptzip._inputs import Context
from promptzip._pipeline import Zipper
from promptzip._policy import BudgetPolicy, Policy
from promptzip._pricing import CachePricing, pricing_for
from promptzip._registry import registries
from promptzip._roles import Compressor, Retriever, Scorer, TokenScorer
from promptzip._tokenizers import Tokenizer, get_tokenizer
from promptzip._types import Budget, Chunk, ChunkResult, Dropped, Result, Source, Span, TokenScores, Variant
from promptzip._version import __version__

__all__ = [
    "Budget",
    "BudgetError",
    "BudgetPolicy",
    "Cache",
    "CachePricing",
    "Chunk",
    "ChunkResult",
    "Compressor",
    "ConfigError",
    "DeadlineExceeded",
    "Dropped",
    "ExpandNotFound",
    "InputError",
    "ModelNotAvailable",
    "Policy",
    "PromptZipError",
    "Result",
    "Retriever",
    "Scorer",
    "Source",
    "Span",
    "TokenScorer",
    "TokenScores",
    "Tokenizer",
    "UpstreamError",
    "Variant",
    "Zipper",
    "__version__",
    "acompress",
    "acompress_messages",
    "compress",
    "compress_call",
    "compress_demonstrations",
    "compress_messages",
    "expand",
    "get_tokenizer",
    "pricing_for",
    "registries",
    "wrap",
]

_LAZY = {
    "compress_demonstrations": "promptzip._demos",
    "compress_call": "promptzip.integrations.decorator",
    "expand": "promptzip._expand",
    "wrap": "promptzip.integrations.decorator",
}


def __getattr__(name: str) -> Any:
    """Integrations load on first use, so ``import promptzip`` stays light."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'promptzip' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def _shared(preset: str, target: str | Tokenizer, cache: str | Cache | None) -> Zipper:
    from promptzip._pool import shared_zipper

    return shared_zipper(preset, target, cache)


def compress(
    context: Context,
    *,
    question: str | None = None,
    instruction: str | None = None,
    budget: Budget | int | None = None,
    rate: float | None = None,
    target: str | Tokenizer = "gpt-4o",
    preset: str = "fast",
    cache: str | Cache | None = None,
    reorder: str | None = None,
    query: str | None = None,
) -> Result:
    """Compress ``context`` for ``question`` so that the prompt fits ``budget`` tokens of ``target`` (``rate``: the
    kept fraction of the input's tokens). ``query`` is scored against but not placed in the prompt.

    Uses the process's shared :class:`Zipper` for (preset, target, cache) (:mod:`promptzip._pool`).
    """
    return _shared(preset, target, cache).compress(
        context, question=question, instruction=instruction, budget=budget, rate=rate, reorder=reorder, query=query
    )


async def acompress(
    context: Context,
    *,
    question: str | None = None,
    instruction: str | None = None,
    budget: Budget | int | None = None,
    rate: float | None = None,
    target: str | Tokenizer = "gpt-4o",
    preset: str = "fast",
    cache: str | Cache | None = None,
    reorder: str | None = None,
    query: str | None = None,
) -> Result:
    """Async :func:`compress` (runs in a worker thread)."""
    return await _shared(preset, target, cache).acompress(
        context, question=question, instruction=instruction, budget=budget, rate=rate, reorder=reorder, query=query
    )


def compress_messages(
    messages: Sequence[Mapping[str, Any]],
    *,
    budget: Budget | int | None = None,
    rate: float | None = None,
    target: str | Tokenizer = "gpt-4o",
    preset: str = "fast",
    cache: str | Cache | None = None,
    question: str | None = None,
    scope: str = "all",
    history: str = "stable",
    conversation: str | None = None,
    pricing: CachePricing | None = None,
    partition: str = "",
) -> Result:
    """Compress the context of a chat wherever it sits (system, user, earlier turns, tool results; ``scope="history"``:
    earlier turns only); ``Result.messages`` holds the compressed messages. Later turns of a conversation send what
    was sent for its earlier messages again byte for byte (``history="stable"``), so the provider's cache hits."""
    return _shared(preset, target, cache).compress_messages(
        messages,
        budget=budget,
        rate=rate,
        question=question,
        scope=scope,
        history=history,
        conversation=conversation,
        pricing=pricing,
        partition=partition,
    )


async def acompress_messages(
    messages: Sequence[Mapping[str, Any]],
    *,
    budget: Budget | int | None = None,
    rate: float | None = None,
    target: str | Tokenizer = "gpt-4o",
    preset: str = "fast",
    cache: str | Cache | None = None,
    question: str | None = None,
    scope: str = "all",
    history: str = "stable",
    conversation: str | None = None,
    pricing: CachePricing | None = None,
    partition: str = "",
) -> Result:
    """Async :func:`compress_messages` (runs in a worker thread)."""
    return await _shared(preset, target, cache).acompress_messages(
        messages,
        budget=budget,
        rate=rate,
        question=question,
        scope=scope,
        history=history,
        conversation=conversation,
        pricing=pricing,
        partition=partition,
    )
