"""The memory request bodies may take: ``max_buffered_bytes``, for every body the proxy holds, all requests together.

Each request takes a :class:`Reservation` of the app's :class:`BodyBudget` and gives it back when its handler is
done, whatever its end: by then nothing holds its body any more. The reservation covers what the proxy holds of the
body (:mod:`._bodies`): one read whole (a compressed route's, a batch's, a ``/v1/files`` upload it can read) from its
declared ``content-length`` before a byte of it is read, or a chunked one as it grows; of one forwarded as it
arrives, only the part read before it is forwarded. A body sent upstream is let go as it is sent (httpx pulls it
from a one-shot stream and keeps none of it, :class:`~._bodies.OneShot`), and the handler is done as soon as the
answer's headers are in, so the reservation is held while the body is sent and given back before the answer is
relayed: a long streamed answer holds none of the budget.

A body that does not fit is refused at once with 503 + ``retry-after``, in its route's error style
(:class:`~._errors.Overloaded`, code ``overloaded``, ``setting`` ``max_buffered_bytes``): without the bound, many
clients each sending a body just under ``max_body_bytes``, slowly, would make the proxy hold all of them at once.
``max_buffered_bytes`` is at least ``max_body_bytes``, so the largest body the proxy reads fits an idle proxy.
"""

from __future__ import annotations

from types import TracebackType

from promptzip.integrations.proxy._errors import Overloaded

__all__ = ["RETRY_AFTER_S", "BodyBudget", "Reservation"]

# Bodies held are given back as they are sent upstream, which mostly takes moments, not a compression's deadline.
RETRY_AFTER_S = 1


class BodyBudget:
    """``limit`` bytes of request bodies, shared by an app's requests; ``held`` is what their reservations cover.

    Only the event loop touches it, and no ``await`` separates a check from the update it allows, so a plain
    counter needs no lock.
    """

    __slots__ = ("held", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def reservation(self) -> Reservation:
        """A new, empty reservation; use it as a context manager, which gives it back on the way out."""
        return Reservation(self)


class Reservation:
    """One request's share of a :class:`BodyBudget`: it grows to cover the body as it arrives, and is given back
    whole by :meth:`release` (idempotent), which leaving its ``with`` block calls."""

    __slots__ = ("_budget", "size")

    def __init__(self, budget: BodyBudget) -> None:
        self._budget = budget
        self.size = 0

    def cover(self, size: int) -> None:
        """Make the reservation cover ``size`` bytes; :class:`~._errors.Overloaded` when they do not fit what is
        left (the reservation is then as it was)."""
        more = size - self.size
        if more <= 0:
            return
        budget = self._budget
        if budget.held + more > budget.limit:
            raise Overloaded(
                RETRY_AFTER_S,
                "the proxy holds as many request bodies as it may (max_buffered_bytes); retry later",
                setting="max_buffered_bytes",
            )
        budget.held += more
        self.size = size

    def release(self) -> None:
        self._budget.held -= self.size
        self.size = 0

    def __enter__(self) -> Reservation:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()
