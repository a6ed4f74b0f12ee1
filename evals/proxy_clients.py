"""``proxy-clients``: slow clients and many clients cannot stall the running proxy.

    python -P -m promptzip.evals.proxy_clients   # evals/results/proxy_clients.{json,md}

Starts ``promptzip proxy --no-warmup`` in its own process in front of the recording fake upstream on 127.0.0.1, with
small limits (``--header-timeout 5 --body-timeout 5 --send-timeout 5 --min-body-rate 1024
--max-client-connections 250``; each
chunk of a body keeps ``timeouts.write``'s 60 s), and times an ordinary request (a short chat with
``x-promptzip-disable``, each on a new connection, so it also waits for a connection to be taken) in these phases,
one after the other, in one run:

* ``baseline``: no other client;
* ``slowloris``: 200 connections that each send a request line one byte every 0.5 s, never finishing it: the proxy
  should close each at ``--header-timeout`` with 408, its open files and memory come back once they are gone;
* ``body trickle``: 50 chats that send their headers, then one byte of body a second (under ``timeouts.write``):
  each should get 408 at ``--body-timeout`` plus one second per ``--min-body-rate`` bytes it sent;
* ``slow readers``: 20 clients with a 4 KiB receive buffer each ask for a streamed answer of megabytes and take none
  of it: the proxy should drop each once its writes have stalled for ``--send-timeout``, freeing the upstream
  connection its relay held;
* ``idle flood``: 250 idle connections take every slot, then 50 more connect, and one more before each ordinary
  request (the attacker keeps every slot taken): each new connection should close the one that has waited longest
  for a request, so the ordinary requests are answered; the rest are closed at ``--header-timeout``;
* ``busy flood``: 250 chats whose headers are sent and whose bodies never come take every slot with a request in
  progress, then 50 more connections each send a request: each of those gets 503, and so does an ordinary request,
  until the busy ones get 408 at ``--body-timeout`` (a health check is answered meanwhile, on a connection that then
  closes); then (``after the flood``) ordinary requests are answered again;
* ``trickle readers``: 10 clients with a 4 KiB receive buffer each take a streamed answer of 3.5 MB at most 48 KiB a
  second, a fraction of what must be taken per ``--send-timeout`` for the proxy's paused writes to resume
  (:mod:`._trickle_readers`; ``--trickle-readers``, ``--trickle-rate``), while 10 clients beside them (``--stalled``)
  ask for the same and take none of it: each trickle reader should get its whole answer, byte for byte (as a client
  that reads at once gets it), though it takes over a minute; each of the others should be dropped at
  ``--send-timeout``.

It records the attackers' answers and how long each connection lasted, the proxy's open files (``/proc/PID/fd``)
and resident memory during and after each phase, the ``/metrics`` counters the limits feed, what the upstream
received (the ordinary requests only), and the machine's load average before and after. Counts are deterministic;
timings are reported, not asserted. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from promptzip.evals._client_phases import CHAT, WRITE_S, Scale, run_phases
from promptzip.evals._proxy_runs import load, machine, running_proxy, write_report
from promptzip.evals._trickle_readers import Trickle, trickle_phase
from promptzip.integrations.proxy.testing import FakeUpstream

__all__ = ["Scale", "Trickle", "build_report", "main", "markdown", "run_clients"]

COMMAND = "python -P -m promptzip.evals.proxy_clients"


def _fit_descriptors(scale: Scale) -> None:
    """Let this process open the flood's sockets (a soft limit of 1024 is common)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = scale.flood + 256
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need if hard == resource.RLIM_INFINITY else min(need, hard), hard))


def run_clients(scale: Scale | None = None, trickle: Trickle | None = None) -> dict[str, Any]:
    """The phases through one fresh proxy process: ``phases``, the ``/metrics`` counters at the end and what they
    should read (``expected_metrics``), the ordinary requests the upstream received, and the proxy's log lines."""
    scale, trickle = scale or Scale(), trickle or Trickle()
    _fit_descriptors(scale)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder, FakeUpstream() as upstream:
        log = Path(folder) / "proxy.log"
        limits = [
            *("--header-timeout", str(scale.headers_s), "--body-timeout", str(scale.body_s)),
            *("--send-timeout", str(scale.send_s)),
            *("--min-body-rate", str(scale.min_body_rate), "--max-client-connections", str(scale.cap)),
        ]
        with running_proxy(upstream.url, limits, log=log) as proxy:
            serving = log.stat().st_size  # the lines after are what serving logged
            phases, metrics = asyncio.run(_all_phases(proxy.port, proxy.pid, scale, trickle, upstream))
        log_lines = log.read_bytes()[serving:].decode("utf-8", errors="replace").splitlines()
        received = [r for r in upstream.requests if r.target.split("?")[0] == CHAT]
    return {
        "phases": phases,
        "metrics": metrics,
        "expected_metrics": _expected(scale, trickle, phases),
        "ordinary_answered_200": sum(p["ordinary"]["answered_200"] for p in phases),
        "upstream_received": {"chats": len(received), "all requests": len(upstream.requests)},
        "proxy_log_lines": len(log_lines),  # while serving, at warning level or above
        "proxy_log_head": log_lines[:10],
        "seconds": round(time.perf_counter() - started, 1),
    }


async def _all_phases(
    port: int, pid: int, scale: Scale, trickle: Trickle, upstream: FakeUpstream
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    phases, _ = await run_phases(port, pid, scale, upstream)
    last, metrics = await trickle_phase(port, pid, scale, trickle)
    return [*phases, last], metrics


def _expected(scale: Scale, trickle: Trickle, phases: Sequence[dict[str, Any]]) -> dict[str, int]:
    """What the proxy's counters should read at the end, from what the attackers saw: each idle flood connection
    that was closed early made room, and the rest met the header timeout."""
    made_room, timed_out = next(p for p in phases if p["phase"] == "idle flood")["attackers"]
    return {
        "connections_closed_idle{max_client_connections}": made_room["closed_by_proxy"],
        # every connection made while busy ones hold every slot: the extras, one ordinary, one health check
        "connections_refused{max_client_connections}": scale.flood - scale.cap + 2,
        "connections_refused{timeouts.headers}": scale.slowloris + timed_out["closed_by_proxy"],
        "connections_refused{timeouts.send}": scale.readers + trickle.stalled,  # never a trickle reader
        "bodies_refused{timeouts.body}": scale.trickle + scale.cap,
        "bodies_refused{timeouts.write}": 0,
    }


def _settings(scale: Scale, trickle: Trickle) -> dict[str, Any]:
    return {
        "timeouts.headers": scale.headers_s,
        "timeouts.body": scale.body_s,
        "timeouts.send": scale.send_s,
        "timeouts.write": WRITE_S,
        "min_body_rate": scale.min_body_rate,
        "max_client_connections": scale.cap,
        "scale": asdict(scale),
        "trickle": asdict(trickle),
    }


def _counts(counts: dict[str, int], skip: str = "") -> str:
    return ", ".join(f"{k}: {v}" for k, v in counts.items() if k != skip) or "none"


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown page: the run, then a section per table."""
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
        f"`timeouts.send` {s['timeouts.send']} s, "
        f"`max_client_connections` {s['max_client_connections']}. An ordinary request is a short chat with "
        "`x-promptzip-disable` on a new connection, timed from connecting to the answer; the attackers of a phase "
        "are all open while they run.",
        *_ordinary(report),
        *_attackers(report),
        *_trickle(report),
        *_process(report),
        *_metrics(report),
    ]
    return "\n".join(lines) + "\n"


def _ordinary(report: dict[str, Any]) -> list[str]:
    lines = [
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
    return lines


def _attackers(report: dict[str, Any]) -> list[str]:
    lines = [
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
    return [
        *lines,
        "",
        "Seconds from connecting to the proxy's close (body trickle: to the 408, the headers sent at once; over the "
        "cap: to the 503). Expected: the header timeout; the body timeout plus the median body bytes sent / "
        "`min_body_rate`; the send timeout, once the buffers between a slow reader and the proxy are full; a refused "
        "connection waits at most 1 s for its request. In the idle flood "
        f"{idle['idle_connections']} idle connections were opened, at least {idle['made_room_at_least']} of them "
        "(one for each connection made at the cap) to be closed to make room. `GET /healthz` was answered "
        f"{idle['healthz_status']} during the idle flood and {busy['healthz_status']} while busy connections held "
        "every slot.",
    ]


def _trickle(report: dict[str, Any]) -> list[str]:
    phase = next(p for p in report["phases"] if p["phase"] == "trickle readers")
    r, send_s = phase["trickle_readers"], report["settings"]["timeouts.send"]
    took = " / ".join(str(v) for v in r["seconds"].values())
    return [
        "",
        "## Trickle readers",
        "",
        "| readers | whole answers, byte for byte | answer bytes | at most bytes/s | at most bytes per send timeout | "
        "seconds min / median / max | median bytes/s |",
        "| ---: | ---: | ---: | ---: | ---: | --- | ---: |",
        f"| {r['count']} | {r['whole_answers']} | {r['answer_bytes']} | {r['rate_cap']} | "
        f"{r['taken_per_send_timeout_at_most']} | {took} | {r['rate_median']} |",
        "",
        f"Each took its answer at most {r['rate_cap']} bytes a second ({r['taken_per_send_timeout_at_most']} bytes "
        f"per {send_s} s send timeout), all at once with the stalled clients of the same phase; whole means the body "
        "of its answer equals the one a client that reads at once got.",
    ]


def _process(report: dict[str, Any]) -> list[str]:
    lines = [
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
    return lines


def _metrics(report: dict[str, Any]) -> list[str]:
    lines = ["", "## /metrics at the end", "", "| counter | value | expected |", "| --- | ---: | ---: |"]
    for key, want in report["expected_metrics"].items():
        lines.append(f"| `{key}` | {report['metrics'][key]:g} | {want} |")
    upstream, answered = report["upstream_received"], report["ordinary_answered_200"]
    readers = report["settings"]["scale"]["readers"]
    trickle = report["settings"]["trickle"]
    long = readers + trickle["readers"] + trickle["stalled"] + 1
    clean = upstream["chats"] == upstream["all requests"] == answered + long
    return [
        *lines,
        "",
        f"The upstream received {upstream['chats']} chats ({upstream['all requests']} requests in all): the "
        f"{answered} ordinary requests answered 200, and {long} long streamed answers (complete requests, answered at "
        f"length): the {readers} slow readers', the {trickle['readers']} trickle readers', the {trickle['stalled']} "
        f"stalled clients' beside them and the one read at once: "
        f"{'nothing else from an attacker' if clean else 'NOT only those'}. While serving, the proxy "
        f"logged {report['proxy_log_lines']} lines at warning level or above.",
    ]


def build_report(scale: Scale, command: str = COMMAND, trickle: Trickle | None = None) -> dict[str, Any]:
    """:func:`run_clients` with what the report says about its run: the command, the date, the machine's load
    average before and after, the Python, the platform and the settings."""
    trickle = trickle or Trickle()
    before = load()
    result = run_clients(scale, trickle)
    return {
        "command": command,
        **machine(before),
        "platform": platform.platform(),
        "settings": _settings(scale, trickle),
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
    parser.add_argument("--send-timeout", type=float, default=default.send_s, help="seconds (5)")
    parser.add_argument("--readers", type=int, default=default.readers, help="clients that take no answer (20)")
    trickle = Trickle()
    parser.add_argument("--trickle-readers", type=int, default=trickle.readers, help="slow, steady readers (10)")
    parser.add_argument("--trickle-rate", type=int, default=trickle.rate, help="their bytes/s at most (49152)")
    parser.add_argument("--stalled", type=int, default=trickle.stalled, help="beside them, take no answer (10)")
    parser.add_argument("--out", type=Path, default=Path("evals/results"), help="folder (default evals/results)")
    args = parser.parse_args(argv)
    scale = Scale(
        slowloris=args.slowloris,
        trickle=args.trickle,
        cap=args.cap,
        flood=args.flood,
        headers_s=args.header_timeout,
        body_s=args.body_timeout,
        send_s=args.send_timeout,
        readers=args.readers,
    )
    trickle = Trickle(readers=args.trickle_readers, rate=args.trickle_rate, stalled=args.stalled)
    report = build_report(scale, " ".join([COMMAND, *(sys.argv[1:] if argv is None else argv)]), trickle)
    write_report(args.out, "proxy_clients", report, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
