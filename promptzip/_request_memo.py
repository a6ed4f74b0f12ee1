"""Values the passes of one compression share, whatever the bounds of the memos that outlive it.

A compression asks a scorer for the same values more than once: the extractive compressor scores every sentence,
then pools each paragraph's relevance from the same sentences' vectors, then reads the best ones again for
deduplication. A scorer keeps recent values in a bounded memo (and a cache may be bounded too), so a request larger
than those bounds would evict its own first values before its next pass and compute them again (a sentence
encoded twice). The code that runs a compression opens
:func:`request_scope` around ``propose``; a component reads the scope's dict with :func:`request_memo` and keeps
there what its later passes will ask for. The dict lives as long as the block, so it holds no memory after the
request. Each compression runs in its own context, so concurrent requests never share it; outside a compression it
is ``None`` and components behave as they would without it.

Only values that are a function of their key belong here (a vector under its content-hash cache key), so reading
one from the scope gives what computing it again was meant to give.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["request_memo", "request_scope"]

_memo: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("promptzip_request_memo", default=None)


@contextmanager
def request_scope() -> Iterator[dict[str, Any]]:
    """Run the block with a fresh memo for the compression it runs; a scope already open is kept (one request)."""
    found = _memo.get()
    if found is not None:
        yield found
        return
    memo: dict[str, Any] = {}
    token = _memo.set(memo)
    try:
        yield memo
    finally:
        _memo.reset(token)


def request_memo(name: str) -> dict[Any, Any] | None:
    """The dict called ``name`` in the memo of the compression running in this context (made empty on first use),
    or ``None`` outside a compression."""
    memo = _memo.get()
    if memo is None:
        return None
    found: dict[Any, Any] = memo.setdefault(name, {})
    return found
