"""The phases of ``proxy-clients`` (:mod:`promptzip.evals.proxy_clients`): how many attackers of each kind, and
what each phase does to the running proxy and measures of it (ordinary requests, the attackers' fates, the
proxy's open files and memory)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from promptzip.evals._proxy_runs import HOST
from promptzip.evals._raw_clients import RawConnection, attackers, bytes_of, closed, drip, seconds
from promptzip.integrations.proxy.testing import FakeUpstream

__all__ = ["CHAT", "WRITE_S", "Scale", "Target", "run_phases"]

CHAT = "/v1/chat/completions"
WRITE_S = 60.0  # timeouts.write, left at its default: each trickled byte comes well within it
QUIET_SPACING_S = 0.05  # between ordinary requests with no attacker
REFUSED_WAIT_S = 1.0  # _connections.REFUSED_WAIT_S: a refused connection's wait for its request (for the report)
EARLY_S = 0.5  # an idle connection closed this much before the header timeout was closed to make room
ORDINARY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "What is the capital of France?"}]}
SLOW_REQUEST = b"GET /v1/models HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slowloris: "  # then b"a" forever
TRICKLE_LENGTH = 1 << 16  # the trickled chat's declared content-length: it never gets there
TRICKLE_HEAD = (
    f"POST {CHAT} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nx-promptzip-disable: true\r\n"
    f"content-length: {TRICKLE_LENGTH}\r\n\r\n"
).encode()
FLOOD_REQUEST = b"GET /v1/models HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
LONG_CHUNKS = 6_000  # a slow reader's streamed answer, in the fake's 1 KiB chunks: more than the buffers hold
_LONG = json.dumps({**ORDINARY, "stream": True}).encode()
LONG_REQUEST = (
    f"POST {CHAT} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nx-promptzip-disable: true\r\n"
    f"x-fake-mode: long:{LONG_CHUNKS}\r\ncontent-length: {len(_LONG)}\r\n\r\n"
).encode() + _LONG
READER_BUFFER = 4096  # a slow reader's receive buffer (SO_RCVBUF): its TCP window stays small


@dataclass(frozen=True, slots=True, kw_only=True)
class Scale:
    """How many attackers, and the proxy's limits (seconds, bytes per second, connections). The ordinary requests
    need a free slot during the slowloris and the trickle, so each must leave one under ``cap``."""

    slowloris: int = 200
    trickle: int = 50
    readers: int = 20  # clients that ask for a long streamed answer and take none of it
    cap: int = 250
    flood: int = 300
    headers_s: float = 5.0
    body_s: float = 5.0
    send_s: float = 5.0
    min_body_rate: int = 1024
    requests: int = 20
    drip_s: float = 0.5  # a slowloris byte every drip_s
    trickle_s: float = 1.0  # a trickled body byte every trickle_s

    def __post_init__(self) -> None:
        if min(self.slowloris, self.trickle, self.readers, self.requests) < 1:
            raise ValueError("at least one attacker of each kind and one ordinary request")
        if max(self.slowloris, self.trickle, self.readers) >= self.cap:
            raise ValueError(f"cap ({self.cap}) must leave a slot for the ordinary requests beside the attackers")
        if self.flood <= self.cap:
            raise ValueError(f"the flood ({self.flood}) must open more connections than the cap ({self.cap})")
        if self.trickle_s >= WRITE_S:
            raise ValueError(f"a trickled byte must come within timeouts.write ({WRITE_S} s)")

    @property
    def give_up_s(self) -> float:
        """How long an attacker lasts when the proxy does not close it: far past every bound it should meet."""
        return 3 * max(self.headers_s, self.send_s, self.body_s + TRICKLE_LENGTH / self.min_body_rate) + 5


def _peak(samples: Sequence[dict[str, float]]) -> dict[str, float]:
    return {key: max(s[key] for s in samples) for key in samples[0]}


@dataclass(frozen=True, slots=True)
class Target:
    """The proxy under test, as the phases reach it: its port and process, and a client that makes a new connection
    for each request, as a new client would."""

    port: int
    pid: int
    scale: Scale
    client: httpx.AsyncClient

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def resources(self) -> dict[str, float]:
        """The proxy process's open files and resident memory."""
        status = Path(f"/proc/{self.pid}/status").read_text(encoding="ascii")
        found = re.search(r"VmRSS:\s+(\d+) kB", status)
        if found is None:
            raise RuntimeError("no VmRSS in /proc: this eval needs Linux")
        return {"open_files": len(os.listdir(f"/proc/{self.pid}/fd")), "rss_mib": round(int(found[1]) / 1024, 1)}

    async def connect(self, n: int) -> list[RawConnection]:
        """``n`` raw connections, one after the other: the proxy takes them in this order. Each is timed from
        before it connects, so that no bound of the proxy's can look shorter than it is."""
        loop = asyncio.get_running_loop()
        conns = []
        for _ in range(n):
            started = time.monotonic()
            conn = (await loop.create_connection(RawConnection, HOST, self.port))[1]
            conn.opened = started
            conns.append(conn)
        return conns

    async def connect_reader(self) -> RawConnection:
        """A raw connection with a receive buffer of :data:`READER_BUFFER` bytes (set before connecting: it sets
        the TCP window)."""
        import socket

        loop = asyncio.get_running_loop()
        started = time.monotonic()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, READER_BUFFER)
        sock.setblocking(False)
        await loop.sock_connect(sock, (HOST, self.port))
        conn = (await loop.create_connection(RawConnection, sock=sock))[1]
        conn.opened = started
        return conn

    async def status(self, path: str) -> int:
        try:
            return (await self.client.get(self.base + path)).status_code
        except httpx.HTTPError:
            return 0

    async def metrics(self) -> dict[str, float]:
        """The counters the limits feed, and the connections open (this one included)."""
        text = (await self.client.get(self.base + "/metrics")).text
        found = {}
        for key, series in _METRICS.items():
            match = re.search(r"^promptzip_proxy_" + re.escape(series) + r" (\S+)$", text, re.MULTILINE)
            found[key] = float(match[1]) if match else 0.0
        return found

    async def settled(self) -> None:
        """Wait until the proxy has no connection open but the one asking, and that one has closed too."""
        deadline = time.monotonic() + 30
        while (await self.metrics())["connections_open"] > 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)

    async def ordinary(self, n: int, over_s: float) -> dict[str, Any]:
        """``n`` ordinary chats, one at a time, spread over ``over_s`` seconds: their statuses (0: no answer) and
        latency, connecting included."""
        results: list[tuple[int, float]] = []
        for i in range(n):
            started = time.perf_counter()
            try:
                r = await self.client.post(self.base + CHAT, json=ORDINARY, headers={"x-promptzip-disable": "true"})
                status = r.status_code
            except httpx.HTTPError:
                status = 0
            took = time.perf_counter() - started
            results.append((status, took))
            if i < n - 1:
                await asyncio.sleep(max(0.0, over_s / n - took))
        ms = sorted(1000 * s for _, s in results)
        return {
            "requests": n,
            "answered_200": sum(status == 200 for status, _ in results),
            "statuses": dict(sorted(Counter(str(status) for status, _ in results).items())),
            "median_ms": round(statistics.median(ms), 1),
            "p95_ms": round(ms[max(0, -(-95 * n // 100) - 1)], 1),  # nearest rank
            "max_ms": round(ms[-1], 1),
        }


_METRICS = {
    "connections_closed_idle{max_client_connections}": 'connections_closed_idle_total{limit="max_client_connections"}',
    "connections_refused{max_client_connections}": 'connections_refused_total{limit="max_client_connections"}',
    "connections_refused{timeouts.headers}": 'connections_refused_total{limit="timeouts.headers"}',
    "connections_refused{timeouts.send}": 'connections_refused_total{limit="timeouts.send"}',
    "bodies_refused{timeouts.body}": 'bodies_refused_total{limit="timeouts.body"}',
    "bodies_refused{timeouts.write}": 'bodies_refused_total{limit="timeouts.write"}',
    "connections_open": "connections_open",
    "requests_in_flight": "requests_in_flight",
}


async def _baseline(t: Target) -> dict[str, Any]:
    ordinary = await t.ordinary(t.scale.requests, QUIET_SPACING_S * t.scale.requests)
    resources = t.resources()
    return {"phase": "baseline", "ordinary": ordinary, "proxy_during": resources, "proxy_after": resources}


async def _slowloris(t: Target) -> dict[str, Any]:
    """Every attacker has sent a byte or two before the ordinary requests, spread over half the header timeout (as
    the trickle's over half the body timeout): they end before the proxy closes the attackers."""
    scale = t.scale
    conns = await t.connect(scale.slowloris)
    slow = (itertools.chain(bytes_of(SLOW_REQUEST), itertools.repeat(b"a")) for _ in conns)
    drips = [asyncio.create_task(drip(c, next(slow), scale.drip_s, scale.give_up_s)) for c in conns]
    await asyncio.sleep(min(scale.drip_s, scale.headers_s / 4))
    samples = [t.resources()]
    connections_open = (await t.metrics())["connections_open"]
    ordinary = await t.ordinary(scale.requests, scale.headers_s / 2)
    samples.append(t.resources())
    still_open = sum(not c.done.done() for c in conns)
    await asyncio.gather(*drips)
    await t.settled()
    return {
        "phase": "slowloris",
        "ordinary": ordinary,
        "attackers_open_at_end": still_open,
        "attackers_opened": len(conns),
        "proxy_connections_open": connections_open,
        "attackers": [attackers("request line, a byte at a time", conns, scale.headers_s)],
        "proxy_during": _peak(samples),
        "proxy_after": t.resources(),
    }


async def _trickle(t: Target) -> dict[str, Any]:
    """Headers at once, then a byte of body every ``trickle_s``; each 408 is timed from the headers."""
    scale = t.scale
    conns = await t.connect(scale.trickle)
    body = json.dumps(ORDINARY).encode() * (TRICKLE_LENGTH // len(json.dumps(ORDINARY)))
    trickles = (itertools.chain([TRICKLE_HEAD], bytes_of(body)) for _ in conns)
    drips = [asyncio.create_task(drip(c, next(trickles), scale.trickle_s, scale.give_up_s)) for c in conns]
    await asyncio.sleep(min(scale.trickle_s, scale.body_s) / 4)
    samples = [t.resources()]
    connections_open = (await t.metrics())["connections_open"]
    ordinary = await t.ordinary(scale.requests, scale.body_s / 2)
    samples.append(t.resources())
    still_open = sum(not c.done.done() for c in conns)
    await asyncio.gather(*drips)
    await t.settled()
    body_bytes = statistics.median(c.sent - len(TRICKLE_HEAD) for c in conns)
    expected = scale.body_s + body_bytes / scale.min_body_rate
    trickled = attackers("headers, then a body byte each trickle_s", conns, expected, to_answer=True)
    return {
        "phase": "body trickle",
        "ordinary": ordinary,
        "attackers_open_at_end": still_open,
        "attackers_opened": len(conns),
        "proxy_connections_open": connections_open,
        "attackers": [{**trickled, "median_body_bytes": body_bytes}],
        "proxy_during": _peak(samples),
        "proxy_after": t.resources(),
    }


async def _slow_readers(t: Target) -> dict[str, Any]:
    """``readers`` clients each ask for a streamed answer of megabytes and take none of it (they stop reading at
    once): the proxy should drop each once its writes have stalled for ``--send-timeout``, and with it the relay and
    the upstream connection it read from (its open files come back). A client that reads nothing cannot see its
    connection dropped (the proxy's kernel still holds what it could not send), so each drop is timed by the proxy's
    counter, polled, from the readers' start."""
    scale = t.scale
    base = (await t.metrics())["connections_refused{timeouts.send}"]
    started = time.monotonic()
    readers = [await t.connect_reader() for _ in range(scale.readers)]
    for conn in readers:
        conn.stop_reading()
        conn.send(LONG_REQUEST)
    await asyncio.sleep(min(1.0, scale.send_s / 4))  # their answers fill the buffers between the proxy and them
    samples = [t.resources()]
    connections_open = (await t.metrics())["connections_open"]
    ordinary = await t.ordinary(scale.requests, scale.send_s / 2)
    samples.append(t.resources())
    dropped_at: list[float] = []  # seconds from the start, one per drop the counter shows (at most that)
    still_open = None
    while len(dropped_at) < scale.readers and time.monotonic() - started < scale.give_up_s:
        count = int((await t.metrics())["connections_refused{timeouts.send}"] - base)
        still_open = scale.readers - count if still_open is None else still_open
        dropped_at += [round(time.monotonic() - started, 2)] * (count - len(dropped_at))
        await asyncio.sleep(0.05)
    for conn in readers:
        conn.abort()
    await t.settled()
    return {
        "phase": "slow readers",
        "ordinary": ordinary,
        "attackers_open_at_end": still_open,
        "attackers_opened": len(readers),
        "proxy_connections_open": connections_open,
        "attackers": [
            {  # as attackers() sums a group up, the seconds from the proxy's counter
                "what": "a long streamed answer, none of it taken",
                "count": len(readers),
                "closed_by_proxy": len(dropped_at),
                "answers": {"none (never read)": len(dropped_at)},
                "seconds": seconds(dropped_at),
                "expected_s": scale.send_s,
                "bound": "about",
            }
        ],
        "proxy_during": _peak(samples),
        "proxy_after": t.resources(),
    }


async def _idle_flood(t: Target) -> dict[str, Any]:
    """``cap`` idle connections take every slot, then ``flood - cap`` more connect, and before each ordinary request
    one more (the attacker keeps every slot taken): each should close the connection waiting longest. Those closed
    before the header timeout made room (it cannot fire earlier); the rest are closed at it."""
    scale = t.scale
    idle = await t.connect(scale.cap)
    idle += await t.connect(scale.flood - scale.cap)
    await asyncio.sleep(0.2)
    during = t.resources()
    connections_open = (await t.metrics())["connections_open"]
    results = []
    for _ in range(scale.requests):
        idle += await t.connect(1)
        results.append(await t.ordinary(1, 0))
    healthz = await t.status("/healthz")
    still_open = sum(not c.done.done() for c in idle)
    await closed(idle, scale.give_up_s)
    await t.settled()
    made_room = [c for c in idle if not c.by_us and c.closed - c.opened < scale.headers_s - EARLY_S]
    timed_out = [c for c in idle if c not in made_room]
    return {
        "phase": "idle flood",
        "ordinary": _merged(results),
        "healthz_status": healthz,
        "attackers_open_at_end": still_open,
        "attackers_opened": len(idle),
        "proxy_connections_open": connections_open,
        "attackers": [
            attackers("idle, closed to make room", made_room, scale.headers_s, at_most=True),
            attackers("idle, closed at the header timeout", timed_out, scale.headers_s),
        ],
        "idle_connections": len(idle),
        # the flood's newcomers, and each ordinary request (the attacker's next connection takes the slot the previous
        # one freed, so each finds every slot taken)
        "made_room_at_least": scale.flood - scale.cap + scale.requests,
        "proxy_during": during,
        "proxy_after": t.resources(),
    }


async def _busy_flood(t: Target) -> list[dict[str, Any]]:
    """``cap`` chats whose headers are sent and whose bodies never come take every slot with a request in progress,
    then the rest each send a request at once: 503, as does an ordinary request, while a health check is answered;
    the busy ones get 408 at the body timeout. Then, once they are gone, ordinary requests again (a phase of its
    own)."""
    scale = t.scale
    holders = await t.connect(scale.cap - 1)
    for conn in holders:
        conn.send(TRICKLE_HEAD)
    # Each must be busy before the extras come, or it would be closed to make room for them: the /metrics request
    # that checks takes the last slot, then the last holder does.
    deadline = time.monotonic() + 30
    while (await t.metrics())["requests_in_flight"] < len(holders) + 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    holders += await t.connect(1)
    holders[-1].send(TRICKLE_HEAD)
    await asyncio.sleep(0.3)
    extras = await t.connect(scale.flood - scale.cap)
    for conn in extras:
        conn.send(FLOOD_REQUEST)
    await closed(extras, 10 + REFUSED_WAIT_S)
    during = t.resources()
    ordinary = await t.ordinary(1, 0)
    healthz = await t.status("/healthz")
    still_open = sum(not c.done.done() for c in holders)
    await closed(holders, scale.give_up_s)
    await t.settled()
    after = t.resources()
    flood = {
        "phase": "busy flood",
        "ordinary": ordinary,
        "healthz_status": healthz,
        "attackers_open_at_end": still_open,
        "attackers_opened": len(holders),
        "attackers": [
            attackers("busy, a body that never comes", holders, scale.body_s),
            attackers("over the cap, each sending a request", extras, REFUSED_WAIT_S, at_most=True),
        ],
        "proxy_during": during,
        "proxy_after": after,
    }
    ordinary = await t.ordinary(scale.requests, QUIET_SPACING_S * scale.requests)
    return [flood, {"phase": "after the flood", "ordinary": ordinary, "proxy_during": after, "proxy_after": after}]


def _merged(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One summary of single ordinary requests made one at a time (:meth:`Target.ordinary` with ``n=1``)."""
    ms = sorted(r["median_ms"] for r in results)
    statuses: Counter[str] = Counter()
    for r in results:
        statuses.update(r["statuses"])
    return {
        "requests": len(results),
        "answered_200": sum(r["answered_200"] for r in results),
        "statuses": dict(sorted(statuses.items())),
        "median_ms": round(statistics.median(ms), 1),
        "p95_ms": ms[max(0, -(-95 * len(ms) // 100) - 1)],
        "max_ms": ms[-1],
    }


async def run_phases(
    port: int, pid: int, scale: Scale, upstream: FakeUpstream
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Every phase, one after the other, and the proxy's counters at the end."""
    limits = httpx.Limits(max_keepalive_connections=0)  # a new connection for each request
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        t = Target(port, pid, scale, client)
        await t.ordinary(1, 0)  # the proxy's first request sets up what later ones reuse
        upstream.requests.clear()  # from here on, what it receives is the report's
        phases = [
            await _baseline(t),
            await _slowloris(t),
            await _trickle(t),
            await _slow_readers(t),
            await _idle_flood(t),
            *await _busy_flood(t),
        ]
        return phases, await t.metrics()
