"""A cooperative time limit on the compression running in the current thread.

A Python thread cannot be stopped from outside, so a server that gives up waiting on a compression would still
have the thread busy until it finishes (a ``max`` summary of a long chat takes minutes on a CPU). Instead the code
that runs long (each batch of a model's forward passes, each generation) calls :func:`check` between steps, and a
generation gets :func:`remaining` as its own time limit; past the deadline :class:`DeadlineExceeded` unwinds the
compression and frees the thread::

    with deadline(2.0):
        zipper.compress_messages(messages, budget=800)   # DeadlineExceeded after ~2 s of work

The deadline is per thread (the proxy's worker threads each carry their own) and nests: an inner, later deadline
never extends an outer one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from promptzip._errors import DeadlineExceeded

__all__ = ["DeadlineExceeded", "check", "deadline", "remaining"]

_local = threading.local()


@contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Run the block under a limit of ``seconds`` from now (``None``: no limit of its own)."""
    outer: float | None = getattr(_local, "at", None)
    at = outer
    if seconds is not None:
        mine = time.monotonic() + max(0.0, float(seconds))
        at = mine if outer is None else min(outer, mine)
    _local.at = at
    try:
        yield
    finally:
        _local.at = outer


def remaining() -> float | None:
    """Seconds left before the current thread's deadline (0.0 once past it), or ``None`` without one."""
    at: float | None = getattr(_local, "at", None)
    return None if at is None else max(0.0, at - time.monotonic())


def check(where: str) -> None:
    """Raise :class:`DeadlineExceeded` when the current thread's deadline has passed; ``where`` names the step."""
    at: float | None = getattr(_local, "at", None)
    if at is not None and time.monotonic() > at:
        raise DeadlineExceeded(f"the compression ran past its deadline (stopped in {where})")
