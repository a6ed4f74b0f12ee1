"""``proxy-clients``: slow clients and many clients cannot stall the running proxy.

    python -P -m promptzip.evals.proxy_clients   # evals/results/proxy_clients.{json,md}

Starts ``promptzip proxy --no-warmup`` in its own process in front of the recording fake upstream on 127.0.0.1, with
small limits (``--header-timeout 5 --body-timeout 5 --min-body-rate 1024 --max-client-connections 250``; each
chunk of a body keeps ``timeouts.write``'s 60 s), and times an ordinary request (a short chat with
``x-promptzip-disable``, each on a new connection, so it also waits for a connection to be taken) in four phases,
one after the other, in one run:

* ``baseline``: no other client;
* ``slowloris``: 200 connections that each send a request line one byte every 0.5 s, never finishing it: the proxy
  should close each at ``--header-timeout`` with 408, its open files and memory come back once they are gone;
* ``body trickle``: 50 chats that send their headers, then one byte of body a second (under ``timeouts.write``):
  each should get 408 at ``--body-timeout`` plus one second per ``--min-body-rate`` bytes it sent;
* ``idle flood``: 250 idle connections take every slot, then 50 more connect, and one more before each ordinary
  request (the attacker keeps every slot taken): each new connection should close the one that has waited longest
  for a request, so the ordinary requests are answered; the rest are closed at ``--header-timeout``;
* ``busy flood``: 250 chats whose headers are sent and whose bodies never come take every slot with a request in
  progress, then 50 more connections each send a request: each of those gets 503, and so does an ordinary request,
  until the busy ones get 408 at ``--body-timeout`` (a health check is answered meanwhile, on a connection that then
  closes); then (``after the flood``) ordinary requests are answered again.

It records the attackers' answers and how long each connection lasted, the proxy's open files (``/proc/PID/fd``)
and resident memory during and after each phase, the ``/metrics`` counters the limits feed, what the upstream
received (the ordinary requests only), and the machine's load average before and after. Counts are deterministic;
timings are reported, not asserted. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from promptzip.evals._proxy_runs import HOST, load, machine, running_proxy, write_report
from promptzip.evals._raw_clients import RawConnection, attackers, bytes_of, closed, drip
from promptzip.integrations.proxy.testing import FakeUpstream

__all__ = ["Scale", "build_report", "main", "markdown", "run_clients"]

COMMAND = "python -P -m promptzip.evals.proxy_clients"
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Scale:
    """How many attackers, and the proxy's limits (seconds, bytes per second, connections). The ordinary requests
    need a free slot during the slowloris and the trickle, so each must leave one under ``cap``."""

    slowloris: int = 200
    trickle: int = 50
    cap: int = 250
    flood: int = 300
    headers_s: float = 5.0
    body_s: float = 5.0
    min_body_rate: int = 1024
    requests: int = 20
    drip_s: float = 0.5  # a slowloris byte every drip_s
    trickle_s: float = 1.0  # a trickled body byte every trickle_s

    def __post_init__(self) -> None:
        if min(self.slowloris, self.trickle, self.requests) < 1:
            raise ValueError("at least one attacker of each kind and one ordinary request")
        if max(self.slowloris, self.trickle) >= self.cap:
            raise ValueError(f"cap ({self.cap}) must leave a slot for the ordinary requests beside the attackers")
        if self.flood <= self.cap:
            raise ValueError(f"the flood ({self.flood}) must open more connections than the cap ({self.cap})")
        if self.trickle_s >= WRITE_S:
            raise ValueError(f"a trickled byte must come within timeouts.write ({WRITE_S} s)")

    @property
    def give_up_s(self) -> float:
        """How long an attacker lasts when the proxy does not close it: far past every bound it should meet."""
        return 3 * max(self.headers_s, self.body_s + TRICKLE_LENGTH / self.min_body_rate) + 5


def _peak(samples: Sequence[dict[str, float]]) -> dict[str, float]:
    return {key: max(s[key] for s in samples) for key in samples[0]}


@dataclass(frozen=True, slots=True)
class _Target:
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
    "bodies_refused{timeouts.body}": 'bodies_refused_total{limit="timeouts.body"}',
    "bodies_refused{timeouts.write}": 'bodies_refused_total{limit="timeouts.write"}',
    "connections_open": "connections_open",
    "requests_in_flight": "requests_in_flight",
}


async def _baseline(t: _Target) -> dict[str, Any]:
    ordinary = await t.ordinary(t.scale.requests, QUIET_SPACING_S * t.scale.requests)
    resources = t.resources()
    return {"phase": "baseline", "ordinary": ordinary, "proxy_during": resources, "proxy_after": resources}


async def _slowloris(t: _Target) -> dict[str, Any]:
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


async def _trickle(t: _Target) -> dict[str, Any]:
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


async def _idle_flood(t: _Target) -> dict[str, Any]:
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


async def _busy_flood(t: _Target) -> list[dict[str, Any]]:
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
    """One summary of single ordinary requests made one at a time (:meth:`_Target.ordinary` with ``n=1``)."""
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


async def _phases(
    port: int, pid: int, scale: Scale, upstream: FakeUpstream
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Every phase, one after the other, and the proxy's counters at the end."""
    limits = httpx.Limits(max_keepalive_connections=0)  # a new connection for each request
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        t = _Target(port, pid, scale, client)
        await t.ordinary(1, 0)  # the proxy's first request sets up what later ones reuse
        upstream.requests.clear()  # from here on, what it receives is the report's
        phases = [
            await _baseline(t),
            await _slowloris(t),
            await _trickle(t),
            await _idle_flood(t),
            *await _busy_flood(t),
        ]
        return phases, await t.metrics()


def _fit_descriptors(scale: Scale) -> None:
    """Let this process open the flood's sockets (a soft limit of 1024 is common)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = scale.flood + 256
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need if hard == resource.RLIM_INFINITY else min(need, hard), hard))


def run_clients(scale: Scale | None = None) -> dict[str, Any]:
    """The phases through one fresh proxy process: ``phases``, the ``/metrics`` counters at the end and what they
    should read (``expected_metrics``), the ordinary requests the upstream received, and the proxy's log lines."""
    scale = scale or Scale()
    _fit_descriptors(scale)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder, FakeUpstream() as upstream:
        log = Path(folder) / "proxy.log"
        limits = [
            *("--header-timeout", str(scale.headers_s), "--body-timeout", str(scale.body_s)),
            *("--min-body-rate", str(scale.min_body_rate), "--max-client-connections", str(scale.cap)),
        ]
        with running_proxy(upstream.url, limits, log=log) as proxy:
            serving = log.stat().st_size  # the lines after are what serving logged
            phases, metrics = asyncio.run(_phases(proxy.port, proxy.pid, scale, upstream))
        log_lines = log.read_bytes()[serving:].decode("utf-8", errors="replace").splitlines()
        received = [r for r in upstream.requests if r.target.split("?")[0] == CHAT]
    return {
        "phases": phases,
        "metrics": metrics,
        "expected_metrics": _expected(scale, phases),
        "ordinary_answered_200": sum(p["ordinary"]["answered_200"] for p in phases),
        "upstream_received": {"chats": len(received), "all requests": len(upstream.requests)},
        "proxy_log_lines": len(log_lines),  # while serving, at warning level or above
        "proxy_log_head": log_lines[:10],
        "seconds": round(time.perf_counter() - started, 1),
    }


def _expected(scale: Scale, phases: Sequence[dict[str, Any]]) -> dict[str, int]:
    """What the proxy's counters should read at the end, from what the attackers saw: each idle flood connection
    that was closed early made room, and the rest met the header timeout."""
    made_room, timed_out = next(p for p in phases if p["phase"] == "idle flood")["attackers"]
    return {
        "connections_closed_idle{max_client_connections}": made_room["closed_by_proxy"],
        # every connection made while busy ones hold every slot: the extras, one ordinary, one health check
        "connections_refused{max_client_connections}": scale.flood - scale.cap + 2,
        "connections_refused{timeouts.headers}": scale.slowloris + timed_out["closed_by_proxy"],
        "bodies_refused{timeouts.body}": scale.trickle + scale.cap,
        "bodies_refused{timeouts.write}": 0,
    }


def _settings(scale: Scale) -> dict[str, Any]:
    return {
        "timeouts.headers": scale.headers_s,
        "timeouts.body": scale.body_s,
        "timeouts.write": WRITE_S,
        "min_body_rate": scale.min_body_rate,
        "max_client_connections": scale.cap,
        "scale": asdict(scale),
    }


def _counts(counts: dict[str, int], skip: str = "") -> str:
    return ", ".join(f"{k}: {v}" for k, v in counts.items() if k != skip) or "none"


def markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        "# proxy-clients: slow and many clients against the running proxy",
        "",
        f"Command: `{report['command']}` · {report['date']} · {report['seconds']} s · load average "
        f"{report['load_before']} before, {report['load_after']} after, {report['cpus']} CPUs · Python "
        f"{report['python']} · {report['platform']}.",
        "",
        f"Proxy limits: `timeouts.headers` {s['timeouts.headers']} s, `timeouts.body` {s['timeouts.body']} s + 1 s "
        f"per `min_body_rate` {s['min_body_rate']} bytes, `timeouts.write` {s['timeouts.write']} s, "
        f"`max_client_connections` {s['max_client_connections']}. An ordinary request is a short chat with "
        "`x-promptzip-disable` on a new connection, timed from connecting to the answer; the attackers of a phase "
        "are all open while they run.",
        "",
        "## Ordinary requests",
        "",
        "| phase | requests | answered 200 | other statuses | median ms | p95 ms | max ms | attackers still open |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for p in report["phases"]:
        o = p["ordinary"]
        still = p.get("attackers_open_at_end")
        opened = "–" if still is None else f"{still} / {p['attackers_opened']}"
        lines.append(
            f"| {p['phase']} | {o['requests']} | {o['answered_200']} | {_counts(o['statuses'], '200')} | "
            f"{o['median_ms']} | {o['p95_ms']} | {o['max_ms']} | {opened} |"
        )
    lines += [
        "",
        "## Attackers",
        "",
        "| phase | attackers | closed by the proxy | answers | seconds min / median / max | expected s |",
        "| --- | --- | ---: | --- | --- | ---: |",
    ]
    for p in report["phases"]:
        for a in p.get("attackers", []):
            took = " / ".join(str(v) for v in a["seconds"].values()) if a["seconds"] else "–"
            bound = "≤ " if a["bound"] == "at most" else ""
            lines.append(
                f"| {p['phase']} | {a['count']} {a['what']} | {a['closed_by_proxy']} | {_counts(a['answers'])} | "
                f"{took} | {bound}{a['expected_s']} |"
            )
    idle = next(p for p in report["phases"] if p["phase"] == "idle flood")
    busy = next(p for p in report["phases"] if p["phase"] == "busy flood")
    lines += [
        "",
        "Seconds from connecting to the proxy's close (body trickle: to the 408, the headers sent at once; over the "
        "cap: to the 503). Expected: the header timeout; the body timeout plus the median body bytes sent / "
        "`min_body_rate`; a refused connection waits at most 1 s for its request. In the idle flood "
        f"{idle['idle_connections']} idle connections were opened, at least {idle['made_room_at_least']} of them "
        "(one for each connection made at the cap) to be closed to make room. `GET /healthz` was answered "
        f"{idle['healthz_status']} during the idle flood and {busy['healthz_status']} while busy connections held "
        "every slot.",
        "",
        "## The proxy process",
        "",
        "| phase | open files during → after | RSS MiB during → after | connections open (gauge) |",
        "| --- | --- | --- | ---: |",
    ]
    for p in report["phases"]:
        d, a = p["proxy_during"], p["proxy_after"]
        gauge = p.get("proxy_connections_open")
        lines.append(
            f"| {p['phase']} | {d['open_files']} → {a['open_files']} | {d['rss_mib']} → {a['rss_mib']} | "
            f"{'–' if gauge is None else f'{gauge:g}'} |"
        )
    lines += ["", "## /metrics at the end", "", "| counter | value | expected |", "| --- | ---: | ---: |"]
    for key, want in report["expected_metrics"].items():
        lines.append(f"| `{key}` | {report['metrics'][key]:g} | {want} |")
    upstream, answered = report["upstream_received"], report["ordinary_answered_200"]
    clean = upstream["chats"] == upstream["all requests"] == answered
    lines += [
        "",
        f"The upstream received {upstream['chats']} chats ({upstream['all requests']} requests in all) for "
        f"{answered} ordinary requests answered 200: "
        f"{'nothing from an attacker' if clean else 'NOT only the ordinary requests'}. While serving, the proxy "
        f"logged {report['proxy_log_lines']} lines at warning level or above.",
    ]
    return "\n".join(lines) + "\n"


def build_report(scale: Scale, command: str = COMMAND) -> dict[str, Any]:
    """:func:`run_clients` with what the report says about its run: the command, the date, the machine's load
    average before and after, the Python, the platform and the settings."""
    before = load()
    result = run_clients(scale)
    return {
        "command": command,
        **machine(before),
        "platform": platform.platform(),
        "settings": _settings(scale),
        **result,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n")[0] if __doc__ else None)
    default = Scale()
    parser.add_argument("--slowloris", type=int, default=default.slowloris, help="slowloris connections (200)")
    parser.add_argument("--trickle", type=int, default=default.trickle, help="trickled bodies (50)")
    parser.add_argument("--cap", type=int, default=default.cap, help="--max-client-connections (250)")
    parser.add_argument("--flood", type=int, default=default.flood, help="connections the flood opens (300)")
    parser.add_argument("--header-timeout", type=float, default=default.headers_s, help="seconds (5)")
    parser.add_argument("--body-timeout", type=float, default=default.body_s, help="seconds (5)")
    parser.add_argument("--out", type=Path, default=Path("evals/results"), help="folder (default evals/results)")
    args = parser.parse_args(argv)
    scale = Scale(
        slowloris=args.slowloris,
        trickle=args.trickle,
        cap=args.cap,
        flood=args.flood,
        headers_s=args.header_timeout,
        body_s=args.body_timeout,
    )
    report = build_report(scale, " ".join([COMMAND, *(sys.argv[1:] if argv is None else argv)]))
    write_report(args.out, "proxy_clients", report, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
