"""Raw client connections for ``proxy-clients``: what each sent and got, and when it was opened, first answered and
closed; sending a request a byte at a time; and a group of them summed up for the report."""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast

__all__ = ["RawConnection", "attackers", "bytes_of", "closed", "drip", "seconds"]


class RawConnection(asyncio.Protocol):
    """One raw client connection: what it sent and received, and when it was opened (set by who connects it),
    first answered and closed."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.opened = self.answered = self.closed = 0.0
        self.sent = 0
        self.data = bytearray()
        self.by_us = False
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # what create_connection makes

    def data_received(self, data: bytes) -> None:
        if not self.data:
            self.answered = time.monotonic()
        self.data += data

    def eof_received(self) -> bool:
        return False  # the proxy is done with it: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = time.monotonic()
        if not self.done.done():
            self.done.set_result(None)

    def send(self, data: bytes) -> None:
        """Send ``data`` unless the proxy has answered or closed (an answer is not lost to a reset)."""
        if self.transport is not None and not self.transport.is_closing() and not self.data:
            self.transport.write(data)
            self.sent += len(data)

    def stop_reading(self) -> None:
        """Take nothing more of what the proxy sends: it piles up in the socket buffers, then in the proxy."""
        if self.transport is not None:
            self.transport.pause_reading()

    def abort(self) -> None:
        if self.transport is not None and not self.done.done():
            self.by_us = True
            self.transport.abort()

    @property
    def status(self) -> int | None:
        found = re.match(rb"HTTP/1\.1 (\d{3}) ", bytes(self.data))
        return int(found[1]) if found else None


async def drip(conn: RawConnection, pieces: Iterable[bytes], every: float, give_up: float) -> None:
    """Send ``pieces`` one every ``every`` seconds until the proxy answers or closes, or ``give_up`` passes."""
    for piece in pieces:
        if conn.done.done() or conn.data or time.monotonic() - conn.opened >= give_up:
            break
        conn.send(piece)
        await asyncio.wait([conn.done], timeout=every)
    await closed([conn], give_up)


async def closed(conns: Sequence[RawConnection], give_up: float) -> None:
    """Wait for the proxy to close ``conns``, at most ``give_up`` seconds from each one's start; abort the rest."""
    for conn in conns:
        left = conn.opened + give_up - time.monotonic()
        if left > 0:
            await asyncio.wait([conn.done], timeout=left)
        conn.abort()
    await asyncio.gather(*(c.done for c in conns))


def bytes_of(data: bytes) -> Iterator[bytes]:
    return (data[i : i + 1] for i in range(len(data)))


def seconds(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": round(min(values), 2), "median": round(statistics.median(values), 2), "max": round(max(values), 2)}


def attackers(
    what: str, conns: Sequence[RawConnection], expected_s: float, *, to_answer: bool = False, at_most: bool = False
) -> dict[str, Any]:
    """A group of attackers: how many the proxy closed, its answers, and the seconds each lasted (from connecting to
    the close, or with ``to_answer`` from sending the headers to the answer), against ``expected_s`` (about that,
    or ``at_most`` that)."""
    by_proxy = [c for c in conns if not c.by_us]
    answers = Counter(str(c.status) if c.status is not None else "none" for c in by_proxy)
    lasted = [(c.answered if to_answer and c.answered else c.closed) - c.opened for c in by_proxy]
    return {
        "what": what,
        "count": len(conns),
        "closed_by_proxy": len(by_proxy),
        "answers": dict(sorted(answers.items())),
        "seconds": seconds(lasted),
        "expected_s": round(expected_s, 3),
        "bound": "at most" if at_most else "about",
    }
