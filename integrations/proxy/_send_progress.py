"""Whether a client is taking its answer, for ``timeouts.send`` (:mod:`._connections`): the bytes written to its
connection that it has not yet taken, and the clock that drops the connection when they stop falling.

asyncio pauses a protocol's writes once its transport's buffer passes its high-water mark (64 KiB) and resumes them
once the buffer is under its low-water mark (16 KiB); in between uvicorn writes nothing more. What the proxy has
written that the client has not taken is then the transport's buffer plus what the kernel holds for the socket,
unsent or sent and not acknowledged: Linux counts the latter for a TCP socket (``ioctl(SIOCOUTQ)``, the same number
as ``TIOCOUTQ``). It falls as the client's TCP stack acknowledges bytes, which it can only do while its receive
buffer has room, so while the client reads (one that stops is dropped once its receive buffer is full and
``timeouts.send`` has passed). The sum so falls as the client takes its answer, a few KiB at a time, long before the
transport's buffer is drained to its low-water mark: that needs the kernel's queue to have room for it, about a
third of the socket's send buffer free, and Linux grows a send buffer up to 4 MiB (``net.ipv4.tcp_wmem``).

Where the kernel's count cannot be had (not Linux, a socket the ioctl does not know, or it fails), the transport's
buffer alone is measured. It falls only when the kernel takes more of it, about a third of the socket's send buffer
at a time, so a client must take about that much in each ``timeouts.send``, as nginx's ``send_timeout`` asks (and
this bound did, when its clock restarted only once the writes resumed).

The floor, the proxy's ``min_send_rate`` (:data:`MIN_SEND_RATE` by default): a client must take at least that many
bytes a second, counted over each ``timeouts.send`` (30 KiB a minute at the defaults). Otherwise a client that takes
a byte a minute would hold its connection, the relay and the upstream connection it reads from for as long as it
likes; at the floor an answer of ``n`` bytes holds them at most about ``n / MIN_SEND_RATE`` seconds (a MiB: 34
minutes), while the slowest links people read on (GPRS, a few KB/s) are many times faster. Uploads have the same kind
of floor, ``min_body_rate`` (:mod:`._bodies`).
"""

from __future__ import annotations

import asyncio
import math
import struct
import sys
from collections.abc import Callable

__all__ = ["MIN_SEND_RATE", "SendClock", "floor_bytes", "kernel_queue", "socket_count"]

MIN_SEND_RATE = 512  # the default min_send_rate: bytes a second a client must take of its answer


def floor_bytes(seconds: float, rate: int = MIN_SEND_RATE) -> int:
    """The bytes a client must take in ``seconds`` (``timeouts.send``) to be making progress at ``rate`` bytes a
    second: at least one."""
    return max(1, math.ceil(rate * seconds))


def kernel_queue(fd: int) -> int | None:
    """The bytes the kernel holds for the socket ``fd``, unsent or unacknowledged, or ``None`` where it does not say
    (not Linux, not a connected stream socket, or a closed one)."""
    if not sys.platform.startswith("linux"):
        return None
    return socket_count(fd, "TIOCOUTQ")


def socket_count(fd: int, request: str) -> int | None:
    """The count the ``termios`` ioctl ``request`` gives for the socket ``fd`` (``TIOCOUTQ``: what it has not sent
    or had acknowledged; ``FIONREAD``: what has come and is not read), or ``None`` where it does not say (no
    ``fcntl``, as on Windows; a closed socket; the ioctl fails). The ioctl needs only the descriptor, so it works
    whatever socket object a transport hands out, and reads nothing."""
    if fd < 0:
        return None
    try:
        import fcntl
        import termios
    except ImportError:
        return None
    try:
        count: int = struct.unpack("i", fcntl.ioctl(fd, getattr(termios, request), bytes(4)))[0]
    except (OSError, AttributeError):
        return None
    return count


class SendClock:
    """The ``timeouts.send`` clock of one connection: :meth:`start` it when its writes pause, :meth:`stop` it when
    they resume or the connection is lost. Each time ``seconds`` pass, the client must have taken at least ``floor``
    bytes since the last time, or ``late(taken)`` is called (the bytes it took, perhaps 0) and the clock stops."""

    __slots__ = ("_fd", "_floor", "_late", "_loop", "_queued", "_seconds", "_timer", "_transport")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        transport: asyncio.WriteTransport,
        seconds: float,
        floor: int,
        late: Callable[[int], None],
    ) -> None:
        self._loop = loop
        self._transport = transport
        self._seconds = seconds
        self._floor = floor
        self._late = late
        sock = transport.get_extra_info("socket")
        self._fd: int = sock.fileno() if sock is not None else -1
        self._timer: asyncio.TimerHandle | None = None
        self._queued: tuple[int, int | None] = (0, None)  # the transport's buffer and the kernel's, when last set

    def start(self) -> None:
        if self._timer is None:
            self._set()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _set(self) -> None:
        self._queued = self._measure()
        self._timer = self._loop.call_later(self._seconds, self._check)

    def _measure(self) -> tuple[int, int | None]:
        return self._transport.get_write_buffer_size(), kernel_queue(self._fd)

    def _check(self) -> None:
        self._timer = None
        (buffered, kernel), (buffered_now, kernel_now) = self._queued, self._measure()
        # Nothing is written while the writes are paused, so what is queued only falls, as the client takes it.
        taken = buffered - buffered_now
        if kernel is not None and kernel_now is not None:
            taken += kernel - kernel_now
        if taken >= self._floor:
            self._set()
        else:
            self._late(max(taken, 0))
