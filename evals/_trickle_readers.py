"""The ``trickle readers`` phase of ``proxy-clients`` (:mod:`promptzip.evals.proxy_clients`): clients that take a long
streamed answer slowly, far under what the buffers between them and the proxy hold per ``--send-timeout``, must get
all of it, byte for byte, while clients beside them that take none of theirs are dropped at the send timeout.

On Linux's loopback the proxy's socket send buffer grows to 4 MiB, and asyncio's write buffer holds 64 KiB more: the
proxy's writes pause with megabytes queued, and resume only once the kernel has room for the write buffer again,
about a megabyte later. A send timeout that restarts only then (nginx's ``send_timeout``, and the proxy's before
it measured progress) drops a client that takes less than that per timeout; the readers here take a fraction of it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import time
from dataclasses import dataclass
from typing import Any

import httpx

from promptzip.evals._client_phases import CHAT, ORDINARY, READER_BUFFER, Scale, Target
from promptzip.evals._proxy_runs import HOST
from promptzip.evals._raw_clients import RawConnection, seconds

__all__ = ["END", "Trickle", "trickle_phase", "whole_body"]

TICK_S = 0.125  # a trickle reader takes its next piece every TICK_S
END = b"\r\n0\r\n\r\n"  # the last chunk of a chunked answer


@dataclass(frozen=True, slots=True, kw_only=True)
class Trickle:
    """The trickle readers: how many, how fast each takes its answer at most (bytes a second), how long that answer
    is (in the fake upstream's chunks of about 1.2 KB: more than the buffers between the proxy and a client hold),
    and how many clients beside them take none of theirs."""

    readers: int = 10
    rate: int = 48 << 10
    chunks: int = 3_000
    stalled: int = 10

    def __post_init__(self) -> None:
        if min(self.readers, self.stalled, self.chunks) < 1 or self.rate < 1 / TICK_S:
            raise ValueError("at least one trickle reader, one stalled client, one chunk, and a byte per tick")

    def request(self) -> bytes:
        body = json.dumps({**ORDINARY, "stream": True}).encode()
        head = (
            f"POST {CHAT} HTTP/1.1\r\nhost: {HOST}\r\ncontent-type: application/json\r\nx-promptzip-disable: true\r\n"
            f"x-fake-mode: long:{self.chunks}\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body


def whole_body(answer: bytes) -> bytes | None:
    """The body of a whole chunked answer with status 200, or ``None`` (another status, or cut short)."""
    head, _, rest = answer.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200 ") or not answer.endswith(END):
        return None
    parts: list[bytes] = []
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return b"".join(parts)
        parts.append(rest[:size])
        rest = rest[size + 2 :]


async def _read_slowly(port: int, request: bytes, rate: int, give_up: float) -> tuple[bytes, float]:
    """One trickle reader: a connection with a :data:`READER_BUFFER` receive buffer that asks for the long answer and
    takes at most ``rate * TICK_S`` bytes every ``TICK_S``, until the answer ends, the proxy closes, or ``give_up``
    seconds pass. What it got, and the seconds it took."""
    loop = asyncio.get_running_loop()
    piece = max(1, int(rate * TICK_S))
    data = bytearray()
    started = time.monotonic()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, READER_BUFFER)
        sock.setblocking(False)
        await loop.sock_connect(sock, (HOST, port))
        await loop.sock_sendall(sock, request)
        tick, over = 0, False
        while not over and not data.endswith(END):
            got = 0
            while got < piece and not data.endswith(END):
                left = started + give_up - time.monotonic()
                try:
                    more = await asyncio.wait_for(loop.sock_recv(sock, piece - got), max(left, 0.001))
                except (OSError, TimeoutError):
                    more = b""
                if not more:
                    over = True
                    break
                data += more
                got += len(more)
            tick += 1
            await asyncio.sleep(max(0.0, started + tick * TICK_S - time.monotonic()))
    return bytes(data), time.monotonic() - started


async def trickle_phase(port: int, pid: int, scale: Scale, trickle: Trickle) -> tuple[dict[str, Any], dict[str, float]]:
    """The phase, on its own client, after the others; and the proxy's counters at its end."""
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        t = Target(port, pid, scale, client)
        phase = await _trickle_readers(t, trickle)
        return phase, await t.metrics()


async def _trickle_readers(t: Target, trickle: Trickle) -> dict[str, Any]:
    """The answer as a client that reads at once gets it; then the stalled clients, which stop reading at once, and
    the trickle readers, all together, with ordinary requests beside them. The stalled clients' drops are timed by
    the proxy's counter, as in ``slow readers``."""
    scale, request = t.scale, trickle.request()
    async with t.client.stream(
        "POST", t.base + CHAT, content=request.partition(b"\r\n\r\n")[2], headers=_head(request)
    ) as r:
        expected = b"".join([part async for part in r.aiter_raw()]) if r.status_code == 200 else b""
    give_up = 3 * len(expected) / trickle.rate + 30
    base = (await t.metrics())["connections_refused{timeouts.send}"]
    started = time.monotonic()
    stalled: list[RawConnection] = [await t.connect_reader() for _ in range(trickle.stalled)]
    for conn in stalled:
        conn.stop_reading()
        conn.send(request)
    readers = [
        asyncio.create_task(_read_slowly(t.port, request, trickle.rate, give_up)) for _ in range(trickle.readers)
    ]
    await asyncio.sleep(min(1.0, scale.send_s / 4))
    samples = [t.resources()]
    connections_open = (await t.metrics())["connections_open"]
    ordinary = await t.ordinary(scale.requests, scale.send_s / 2)
    samples.append(t.resources())
    dropped_at: list[float] = []  # by the counter, which a trickle reader's drop would move too (none should)
    still_open = None
    while len(dropped_at) < trickle.stalled and time.monotonic() - started < scale.give_up_s:
        count = int((await t.metrics())["connections_refused{timeouts.send}"] - base)
        still_open = max(0, trickle.stalled - count) if still_open is None else still_open
        dropped_at += [round(time.monotonic() - started, 2)] * (min(count, trickle.stalled) - len(dropped_at))
        await asyncio.sleep(0.05)
    results = await asyncio.gather(*readers)
    samples.append(t.resources())
    for conn in stalled:
        conn.abort()
    await t.settled()
    whole = sum(bool(expected) and whole_body(data) == expected for data, _ in results)
    took = [s for _, s in results]
    return {
        "phase": "trickle readers",
        "ordinary": ordinary,
        "attackers_open_at_end": still_open,
        "attackers_opened": len(stalled),
        "proxy_connections_open": connections_open,
        "attackers": [
            {
                "what": "a long streamed answer, none of it taken, beside the trickle readers",
                "count": len(stalled),
                "closed_by_proxy": len(dropped_at),
                "answers": {"none (never read)": len(dropped_at)},
                "seconds": seconds(dropped_at),
                "expected_s": scale.send_s,
                "bound": "about",
            }
        ],
        "trickle_readers": {
            "count": trickle.readers,
            "whole_answers": whole,
            "answer_bytes": len(expected),
            "rate_cap": trickle.rate,
            "taken_per_send_timeout_at_most": round(trickle.rate * scale.send_s),
            "seconds": seconds(took),
            "rate_median": round(statistics.median(len(data) / s for data, s in results)),
        },
        "proxy_during": {key: max(s[key] for s in samples) for key in samples[0]},
        "proxy_after": t.resources(),
    }


def _head(request: bytes) -> dict[str, str]:
    """The headers of a raw request, but its host and length (httpx sets them)."""
    lines = request.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]
    pairs = (line.split(": ", 1) for line in lines)
    return {k: v for k, v in pairs if k not in ("host", "content-length")}
