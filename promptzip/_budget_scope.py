"""The token budget of the compression running in this context, for components that can skip work it cannot use.

``Compressor.propose`` does not take the budget: a variant's cost and utility do not depend on it, and the policy
chooses among the variants afterwards. A component that only *saves work* with it (the cascade scorer,
:mod:`promptzip.retrievers.cascade`, runs its encoder only on as many sentences as the budget can use) reads
:func:`current_budget`; the code that runs a compression sets it around ``propose`` with :func:`budget_scope`, to the
tokens the context may take (the budget less the instruction and the question). Each compression runs in its own
context, so concurrent requests never see each other's budget; outside a compression it is ``None``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["budget_scope", "current_budget"]

_budget: contextvars.ContextVar[int | None] = contextvars.ContextVar("promptzip_budget", default=None)


@contextmanager
def budget_scope(tokens: int | None) -> Iterator[None]:
    """Run the block with ``tokens`` as the budget of the compression it runs (``None``: unknown)."""
    token = _budget.set(None if tokens is None else max(0, int(tokens)))
    try:
        yield
    finally:
        _budget.reset(token)


def current_budget() -> int | None:
    """The tokens the context of the compression running in this context may take, or ``None`` when unknown."""
    return _budget.get()
