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
    InputError,
    ModelNotAvailable,
    PromptZipError,
    UpstreamError,
)
from promptzip._inputs import Context
from promptzip._pipeline import Zipper
from promptzip._policy import BudgetPolicy, Policy
from promptzip._registry import registries
from promptzip._roles import Compressor, Retriever, Scorer, TokenScorer
from promptzip._tokenizers import Tokenizer, get_tokenizer
from promptzip._types import Budget, Chunk, ChunkResult, Result, Source, Span, TokenScores, Variant
from promptzip._version import __version__

__all__ = [
    "Budget",
    "BudgetError",
    "BudgetPolicy",
    "Cache",
    "Chunk",
    "ChunkResult",
    "Compressor",
    "ConfigError",
    "DeadlineExceeded",
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
    "compress",
    "compress_call",
    "compress_demonstrations",
    "compress_messages",
    "get_tokenizer",
    "registries",
    "wrap",
]

_LAZY = {
    "compress_demonstrations": "promptzip._demos",
    "compress_call": "promptzip.integrations.decorator",
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
    budget: Budget | int | float | None = None,
    rate: float | None = None,
    target: str | Tokenizer = "gpt-4o",
    preset: str = "fast",
    cache: str | Cache | None = None,
    reorder: str | None = None,
) -> Result:
    """Compress ``context`` for ``question`` so that the prompt fits ``budget`` tokens of ``target``.

    Uses one shared :class:`Zipper` per (preset, target, cache) in the process.
    """
    return _shared(preset, target, cache).compress(
        context, question=question, instruction=instruction, budget=budget, rate=rate, reorder=reorder
    )


async def acompress(context: Context, **kwargs: Any) -> Result:
    """Async :func:`compress` (runs in a worker thread)."""
    preset, target, cache = kwargs.pop("preset", "fast"), kwargs.pop("target", "gpt-4o"), kwargs.pop("cache", None)
    return await _shared(preset, target, cache).acompress(context, **kwargs)


def compress_messages(
    messages: Sequence[Mapping[str, Any]],
    *,
    budget: Budget | int | float | None = None,
    rate: float | None = None,
    target: str | Tokenizer = "gpt-4o",
    preset: str = "fast",
    cache: str | Cache | None = None,
    question: str | None = None,
    scope: str = "all",
) -> Result:
    """Compress the context of a chat wherever it sits (system, user, earlier turns, tool results; ``scope="history"``:
    earlier turns only); ``Result.messages`` holds the compressed messages."""
    return _shared(preset, target, cache).compress_messages(
        messages, budget=budget, rate=rate, question=question, scope=scope
    )
