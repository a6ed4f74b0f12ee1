"""The proxy's throughput when its Redis dies mid-load (a measurement, not a test; run it by hand).

    .venv/bin/python -P scripts/redis_outage_proxy.py --seconds 45 --clients 16 [--json out.json] [--md out.md]

It starts a fake upstream, its own ``redis-server`` on a free port and the proxy (``python -m
promptzip.integrations.proxy``, the real ``fast`` preset, ``--warmup``, cache
``redis://127.0.0.1:P/0?timeout=0.2&retry_after=1``), all on 127.0.0.1, using the helpers of
``scripts/loadtest_proxy.py``. It compresses the warm chats once, then runs ONE continuous load of the same mix
(small, warm, stream, cold) for ``--seconds``, cut into three windows of equal length:

    before   Redis up
    outage   redis-server killed with SIGKILL at the window's start
    after    redis-server restarted on the same port (empty: no persistence) at the window's start

Each answer counts in the window in which it arrives. It reports per window and class the requests, req/s,
p50/p99, errors (broken connections, answers other than 200 and 503) and 503s; the ratio of outage to before
req/s for all traffic and for the warm hits (the goal: >= 0.5); the growth of the proxy's cache counters
(``cache_errors_total`` ...) in each window; and the proxy's peak RSS. The exit status is 0 when there was no
error and the overall ratio reached 0.5. Child processes are always stopped; a watchdog bounds the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The load test's helpers, imported from its path.
from loadtest_proxy import (
    ROLES,
    Bodies,
    Connection,
    Stats,
    _watchdog,
    allocate,
    build_request,
    free_port,
    makers,
    metrics,
    rss_kib,
    start_upstream,
    stop_children,
    wait_healthy,
)

WINDOWS = ("before", "outage", "after")
CACHE_COUNTERS = ("hits", "misses", "errors")
GOAL = 0.5  # the bar: throughput during the outage >= 50 % of before


# ------------------------------------------------------------------------------------------------ Redis
def start_redis(port: int, workdir: str) -> subprocess.Popen[bytes]:
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    cmd += ["--dir", workdir]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def redis_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 15.0) -> float:
    """Seconds until the server answers PING (raises when it exits or stays silent)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode} (port {port} taken?)")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("redis-server did not answer PING in time")


def cache_counters(port: int) -> dict[str, float]:
    m = metrics(port)
    return {c: m.get(f"promptzip_proxy_cache_{c}_total", 0.0) for c in CACHE_COUNTERS}


# ------------------------------------------------------------------------------------------------ the load
async def prime(port: int, warm: list[dict[str, Any]]) -> list[str]:
    """Compress each warm chat once, one at a time, so that the load's warm requests are hits."""
    out = []
    for body in warm:
        conn = Connection(port)
        try:
            _, headers, _ = await conn.request(build_request(port, body))
            out.append(headers.get("x-promptzip-status", "-"))
        finally:
            await conn.close()
    return out


async def control_redis(
    redis: dict[str, Any],
    proxy_port: int,
    begun: float,
    width: float,
    counters: list[dict[str, float]],
    events: dict[str, float],
) -> None:
    """At each window's start read the cache counters, and kill (outage) or restart (after) redis-server."""
    for index in range(len(WINDOWS)):
        await asyncio.sleep(max(0.0, begun + index * width - time.monotonic()))
        counters.append(await asyncio.to_thread(cache_counters, proxy_port))
        if WINDOWS[index] == "outage":
            redis["process"].kill()  # SIGKILL: no goodbye to the proxy's connections
            redis["process"].wait()
            events["killed_at_s"] = round(time.monotonic() - begun, 2)
            print(f"  {events['killed_at_s']:.1f} s: redis-server killed", file=sys.stderr, flush=True)
        elif WINDOWS[index] == "after":
            redis["process"] = start_redis(redis["port"], redis["dir"])
            redis["children"].append(redis["process"])
            up = await asyncio.to_thread(redis_ready, redis["port"], redis["process"])
            events["restarted_at_s"] = round(time.monotonic() - begun, 2)
            events["restart_to_ping_s"] = round(up, 2)
            print(f"  {events['restarted_at_s']:.1f} s: redis-server back", file=sys.stderr, flush=True)
    await asyncio.sleep(max(0.0, begun + len(WINDOWS) * width - time.monotonic()))
    counters.append(await asyncio.to_thread(cache_counters, proxy_port))


def summarize(stats: list[dict[str, Stats]], counters: list[dict[str, float]], width: float) -> dict[str, Any]:
    """Per window: each class's summary, all classes together, and how much the cache counters grew."""
    windows: dict[str, Any] = {}
    for index, name in enumerate(WINDOWS):
        every = Stats(span=width)
        for s in stats[index].values():
            s.span = width
            every.latencies += s.latencies
            every.errors += s.errors
            every.shed += s.shed
        classes = {cls: s.summary() for cls, s in sorted(stats[index].items())}
        classes["all"] = every.summary()
        windows[name] = {
            "classes": classes,
            "cache_counters_delta": {c: counters[index + 1][c] - counters[index][c] for c in CACHE_COUNTERS},
        }

    return windows


async def run_outage(args: argparse.Namespace, proxy_port: int, redis: dict[str, Any]) -> dict[str, Any]:
    bodies = Bodies(seed=args.seed)
    warm = [bodies.rag(4000) for _ in range(args.warm_chats)]
    primed = await prime(proxy_port, warm)
    if any(p != "compressed" for p in primed):
        print(f"  warning: not every warm chat was compressed ({primed})", file=sys.stderr)
    make = makers(bodies, warm, "fast")
    roles = allocate(args.clients, ROLES)
    width = args.seconds / 3
    stats: list[dict[str, Stats]] = [{} for _ in WINDOWS]
    counters: list[dict[str, float]] = []
    events: dict[str, float] = {}
    begun = time.monotonic()
    end = begun + args.seconds

    async def client(role: str) -> None:
        conn = Connection(proxy_port)
        try:
            while time.monotonic() < end:
                name, body, extra = make[role]()
                started = time.perf_counter()
                try:
                    status, headers, _ = await asyncio.wait_for(
                        conn.request(build_request(proxy_port, body, extra)), 120
                    )
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
                    status, headers = -1, {}
                    await conn.close()
                index = int((time.monotonic() - begun) / width)
                if index >= len(WINDOWS) and status in (200, 503):
                    continue  # a success after the load's end counts nowhere (each window is `width` long)
                s = stats[min(index, len(WINDOWS) - 1)].setdefault(name, Stats())
                s.errors += status not in (200, 503)
                s.shed += status == 503
                if status != -1:
                    s.latencies.append(time.perf_counter() - started)
                    for counts, header in ((s.statuses, "x-promptzip-status"), (s.cache, "x-promptzip-cache")):
                        counts[headers.get(header, "-")] = counts.get(headers.get(header, "-"), 0) + 1
        finally:
            await conn.close()

    print(f"  {len(roles)} clients for {args.seconds:g} s in 3 windows ...", file=sys.stderr, flush=True)
    await asyncio.gather(
        control_redis(redis, proxy_port, begun, width, counters, events), *(client(role) for role in roles)
    )
    windows = summarize(stats, counters, width)

    def rps(window: str, cls: str) -> float:
        return float(windows[window]["classes"].get(cls, {}).get("rps", 0.0))

    ratio = {
        cls: round(rps("outage", cls) / rps("before", cls), 2) if rps("before", cls) else None
        for cls in ("all", "warm")
    }
    return {
        "warmup_status": primed,
        "roles": {r: roles.count(r) for r in ROLES},
        "window_seconds": round(width, 2),
        "redis_events": events,
        "windows": windows,
        "throughput_ratio_outage_to_before": ratio,
        "goal_met": ratio["all"] is not None and ratio["all"] >= GOAL,
        "errors": sum(w["classes"]["all"]["errors"] for w in windows.values()),
    }


def markdown(results: dict[str, Any]) -> str:
    lines = ["| window | class | requests | req/s | p50 ms | p99 ms | errors | 503 |", "|---" * 8 + "|"]
    for window, w in results["windows"].items():
        for cls, s in w["classes"].items():
            row = [window, cls, s["requests"], s["rps"], s["p50_ms"], s["p99_ms"], s["errors"], s["shed_503"]]
            lines.append("| " + " | ".join(f"**{v}**" if cls == "all" else str(v) for v in row) + " |")
    lines += ["", "| window | cache hits | cache misses | cache_errors_total (growth) |", "|---|---|---|---|"]
    for window, w in results["windows"].items():
        d = w["cache_counters_delta"]
        lines.append(f"| {window} | {d['hits']:g} | {d['misses']:g} | {d['errors']:g} |")
    ratio, ev = results["throughput_ratio_outage_to_before"], results["redis_events"]
    lines += [
        "",
        f"- outage / before req/s: all **{ratio['all']}**, warm hits **{ratio['warm']}** "
        f"(goal >= {GOAL}: {'met' if results['goal_met'] else 'NOT met'})",
        f"- redis-server killed at {ev.get('killed_at_s')} s, back at {ev.get('restarted_at_s')} s "
        f"(windows of {results['window_seconds']} s); cache_errors_total at the end: "
        f"{results['proxy_cache_errors_total']:g}",
        f"- proxy RSS: {results['proxy_rss_mib']['after_start']} MiB after start, "
        f"{results['proxy_rss_mib']['peak']} MiB peak; errors: {results['errors']}",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ the run
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=45.0, help="the whole load, 3 windows (default 45)")
    parser.add_argument("--clients", type=int, default=16, help="clients of the mix (default 16)")
    parser.add_argument("--warm-chats", type=int, default=4, help="distinct warm chats (default 4)")
    parser.add_argument("--rate", type=float, default=0.25, help="the proxy's kept fraction (default 0.25)")
    parser.add_argument("--deadline", type=float, default=60.0, help="--compression-deadline (default 60)")
    parser.add_argument("--redis-options", default="timeout=0.2&retry_after=1", help="query of the cache URL")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--md", type=Path, help="also write the Markdown table here")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 1024 or not 3 <= args.seconds <= 3600:
        parser.error("--clients must be in [1, 1024] and --seconds in [3, 3600]")

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    upstream_port, proxy_port, redis_port = free_port(), free_port(), free_port()
    children: list[subprocess.Popen[bytes]] = []
    signal.signal(signal.SIGALRM, _watchdog)
    signal.alarm(int(args.seconds + 900))  # the whole run stops by itself after this many seconds
    with tempfile.TemporaryDirectory(prefix="promptzip-redis-outage-") as tmp:
        try:
            redis: dict[str, Any] = {"port": redis_port, "dir": tmp, "children": children}
            redis["process"] = start_redis(redis_port, tmp)
            children.append(redis["process"])
            redis_ready(redis_port, redis["process"])
            upstream_url = start_upstream(upstream_port, env, children)
            cache = f"redis://127.0.0.1:{redis_port}/0?{args.redis_options}"
            proxy_args = ["--upstream", upstream_url, "--port", str(proxy_port), "--cache", cache]
            proxy_args += ["--preset", "fast", "--rate", str(args.rate), "--min-tokens", "1024"]
            proxy_args += ["--compression-deadline", str(args.deadline), "--warmup", "--log-level", "warning"]
            proxy = subprocess.Popen([sys.executable, "-P", "-m", "promptzip.integrations.proxy", *proxy_args], env=env)
            children.append(proxy)
            wait_healthy(proxy_port, proxy, timeout=300)
            rss_idle = rss_kib(proxy.pid, "VmRSS")
            print(f"proxy :{proxy_port}, upstream :{upstream_port}, redis :{redis_port}", file=sys.stderr)
            results = asyncio.run(run_outage(args, proxy_port, redis))
            results["proxy_cache_errors_total"] = metrics(proxy_port).get("promptzip_proxy_cache_errors_total", 0.0)
            results["proxy_rss_mib"] = {
                "after_start": round(rss_idle / 1024, 1),
                "peak": round(rss_kib(proxy.pid, "VmHWM") / 1024, 1),
            }
            results["machine"] = {"cpus": os.cpu_count(), "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
            results["settings"] = {k: v for k, v in vars(args).items() if k not in ("json", "md")}
        finally:
            signal.alarm(0)
            stop_children(children)
    table = markdown(results)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if args.md:
        args.md.write_text(table + "\n", encoding="utf-8")
    return 0 if results["errors"] == 0 and results["goal_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
