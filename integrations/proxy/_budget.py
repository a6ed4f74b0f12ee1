"""The memory request bodies may take: ``max_buffered_bytes``, for every body the proxy holds, all requests together.

Each request takes a :class:`Reservation` of the app's :class:`BodyBudget` and gives it back once nothing holds its
body any more. The reservation covers what the proxy holds of the body (:mod:`._bodies`): one read whole (a
compressed route's, a batch's, a ``/v1/files`` upload it can read) from its declared ``content-length`` before a
byte of it is read, or a chunked one as it grows; of one forwarded as it arrives, only the part read before it is
forwarded. A body refused or abandoned is given back when the handler is done. A body forwarded is not let go
then: the httpx request it went upstream as keeps it until the answer is relayed. So the answer's
:class:`~._relay.Relay` takes the reservation over (:func:`hand_over`: the handler's reservation is found in a
context variable, set while its ``with`` block runs), cuts it down to what that request still holds (the bytes
sent from memory, which for a compressed chat are the compressed body; nothing of a body forwarded as it arrived,
whose chunks were let go as sent), and gives it back once the answer is relayed, however that ends. A long
streamed answer keeps its body's share that long: the memory is held that long.

A body that does not fit is refused at once with 503 + ``retry-after``, in its route's error style
(:class:`~._errors.Overloaded`, code ``overloaded``, ``setting`` ``max_buffered_bytes``): without the bound, many
clients each sending a body just under ``max_body_bytes``, slowly, would make the proxy hold all of them at once.
``max_buffered_bytes`` is at least ``max_body_bytes``, so the largest body the proxy reads fits an idle proxy.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from types import TracebackType

from promptzip.integrations.proxy._errors import Overloaded

__all__ = ["RETRY_AFTER_S", "BodyBudget", "Reservation", "hand_over"]

# Bodies held are given back as their requests are answered, which mostly takes moments, not a compression's deadline.
RETRY_AFTER_S = 1

# The reservation of the request whose handler runs in this context (set by ``with reservation``), if any.
_CURRENT: ContextVar[Reservation | None] = ContextVar("promptzip_body_reservation", default=None)


def hand_over() -> Reservation | None:
    """Take over the current request's reservation: its ``with`` block no longer gives it back on a normal exit,
    and the caller must :meth:`~Reservation.release` it (the response that still holds the body does, when it is
    done). ``None`` when no reservation is current, or it was already handed over."""
    held = _CURRENT.get()
    if held is None or held.handed_over:
        return None
    held.handed_over = True
    return held


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
    whole by :meth:`release` (idempotent). As a context manager it is the current request's (:func:`hand_over`)."""

    __slots__ = ("_budget", "_token", "handed_over", "size")

    def __init__(self, budget: BodyBudget) -> None:
        self._budget = budget
        self._token: Token[Reservation | None] | None = None
        self.handed_over = False
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

    def trim(self, size: int) -> None:
        """Give back all but ``size`` bytes (what is still held of the body once it was sent)."""
        less = self.size - max(0, size)
        if less > 0:
            self._budget.held -= less
            self.size -= less

    def release(self) -> None:
        self.trim(0)

    def __enter__(self) -> Reservation:
        self._token = _CURRENT.set(self)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._token is not None:
            _CURRENT.reset(self._token)
            self._token = None
        if not self.handed_over or kind is not None:  # a handler that failed returns no response to release it
            self.release()
