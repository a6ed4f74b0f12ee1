"""Load test of the proxy on loopback: the figures for the reliability note (not a test; run it by hand).

    .venv/bin/python -P scripts/loadtest_proxy.py --seconds 60 [--clients 64] [--cache memory] [--json out.json]

It starts a fake upstream (``promptzip.integrations.proxy.testing``) and the proxy (``python -m
promptzip.integrations.proxy``, the real ``fast`` preset, uvicorn) as separate processes on 127.0.0.1, then runs
four phases of ``--clients`` concurrent keep-alive clients for ``--seconds`` each:

    direct-small   a small chat straight to the fake upstream           (baseline)
    proxy-small    the same chat through the proxy: below min_tokens, so passed through after checks
    direct-8k      an ~8k-token chat straight to the fake upstream      (baseline)
    proxy-8k       the same chat through the proxy, compressed to 2,000 tokens, with a warm cache

It reports requests/s and latency percentiles per phase, the latency the proxy adds (proxy minus direct, at p50
and p99), errors (any non-200 answer or broken connection through the proxy counts against it), the proxy's own
error counters from /metrics, and the proxy's peak RSS. Every loop is bounded by time and the whole run by a
watchdog; the child processes are always stopped. Traffic goes to 127.0.0.1 only.

The client is a minimal HTTP/1.1 client on asyncio streams, so that the load generator's own CPU cost (it shares
the machine's cores with the proxy and the upstream) stays small.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "promptzip" / "_sample" / "sotu.txt"
QUESTION = "What did the president propose about college tuition and about Social Security?"


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict[str, Any]:
        return {
            "requests": len(self.latencies),
            "errors": self.errors,
            "rps": round(len(self.latencies) / self.elapsed, 1) if self.elapsed else 0.0,
            "p50_ms": round(self.pct(0.50) * 1000, 2),
            "p90_ms": round(self.pct(0.90) * 1000, 2),
            "p99_ms": round(self.pct(0.99) * 1000, 2),
            "mean_ms": round(statistics.fmean(self.latencies) * 1000, 2) if self.latencies else None,
            "x-promptzip-status": self.statuses,
        }


# ---------------------------------------------------------------------------------------- a tiny HTTP client
class Connection:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                data = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                parts.append(data[:-2])
            body = b"".join(parts)
        else:
            body = await self.reader.read()
        return status, headers, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def build_request(port: int, body: dict[str, Any], extra: dict[str, str] | None = None) -> bytes:
    payload = json.dumps(body).encode()
    headers = {
        "Host": f"127.0.0.1:{port}",
        "Content-Type": "application/json",
        "Authorization": "Bearer sk-loadtest-not-a-real-key",
        "Content-Length": str(len(payload)),
        **(extra or {}),
    }
    head = "POST /v1/chat/completions HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode("latin-1") + payload


async def run_phase(name: str, port: int, raw: bytes, clients: int, seconds: float) -> Phase:
    phase = Phase(name)
    deadline = time.monotonic() + seconds

    async def client() -> None:
        conn = Connection(port)
        try:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    status, headers, _ = await asyncio.wait_for(conn.request(raw), timeout=30)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
                    phase.errors += 1
                    await conn.close()
                    continue
                phase.latencies.append(time.perf_counter() - started)
                if status != 200:
                    phase.errors += 1
                tag = headers.get("x-promptzip-status", "-")
                phase.statuses[tag] = phase.statuses.get(tag, 0) + 1
        finally:
            await conn.close()

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    phase.elapsed = time.monotonic() - started
    return phase


# ------------------------------------------------------------------------------------------------ the run
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def eight_k_chat(tokens: int) -> dict[str, Any]:
    from promptzip._tokenizers import get_tokenizer

    tok = get_tokenizer("gpt-4o")
    text = SAMPLE.read_text(encoding="utf-8")
    ids = tok.encode(text + "\n\n" + text)[:tokens]
    return {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Answer from the speech only."},
            {"role": "user", "content": tok.decode(ids)},
            {"role": "assistant", "content": "I have read the speech."},
            {"role": "user", "content": QUESTION},
        ],
    }


def small_chat() -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello in five words."}]}


def rss_kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def metrics(port: int) -> dict[str, float]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:  # loopback only
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "_bucket" not in line:
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def wait_healthy(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the proxy exited during start-up")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the proxy did not become healthy in time")


async def measure(args: argparse.Namespace, upstream_port: int, proxy_port: int) -> dict[str, Any]:
    big, small = eight_k_chat(args.prompt_tokens), small_chat()
    results: dict[str, Any] = {}
    # Warm the cache for the big chat: the first compression is cold (embeddings computed, result stored).
    conn = Connection(proxy_port)
    started = time.perf_counter()
    status, headers, _ = await conn.request(build_request(proxy_port, big))
    results["cold_8k"] = {
        "status": status,
        "seconds": round(time.perf_counter() - started, 3),
        "tokens_in": headers.get("x-promptzip-tokens-in"),
        "tokens_out": headers.get("x-promptzip-tokens-out"),
        "x-promptzip-status": headers.get("x-promptzip-status"),
    }
    await conn.close()
    plan = [
        ("direct-small", upstream_port, build_request(upstream_port, small)),
        ("proxy-small", proxy_port, build_request(proxy_port, small)),
        ("direct-8k", upstream_port, build_request(upstream_port, big)),
        ("proxy-8k", proxy_port, build_request(proxy_port, big)),
    ]
    phases: dict[str, Phase] = {}
    for name, port, raw in plan:
        print(f"  {name}: {args.clients} clients for {args.seconds:g} s ...", file=sys.stderr, flush=True)
        phases[name] = await run_phase(name, port, raw, args.clients, args.seconds)
    results["phases"] = {name: p.summary() for name, p in phases.items()}
    results["added_latency_ms"] = {
        kind: {
            q: round((phases[f"proxy-{kind}"].pct(v) - phases[f"direct-{kind}"].pct(v)) * 1000, 2)
            for q, v in (("p50", 0.5), ("p99", 0.99))
        }
        for kind in ("small", "8k")
    }
    results["proxy_errors"] = phases["proxy-small"].errors + phases["proxy-8k"].errors
    return results


def _watchdog(signum: int, frame: object) -> None:
    raise TimeoutError("the load test ran past its watchdog")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each measured phase (default 60)")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=8000)
    parser.add_argument("--budget", type=int, default=2000, help="the proxy's budget for the big chat")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--cache", default="memory", help="the proxy's cache URL (memory, sqlite:///..., redis://...)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 1024 or not 0 < args.seconds <= 3600:
        parser.error("--clients must be in [1, 1024] and --seconds in (0, 3600]")

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    upstream_port, proxy_port = free_port(), free_port()
    children: list[subprocess.Popen[bytes]] = []
    watchdog = 4 * args.seconds + 600  # the whole run stops by itself after this many seconds
    signal.signal(signal.SIGALRM, _watchdog)
    signal.alarm(int(watchdog))
    try:
        upstream = subprocess.Popen(
            [sys.executable, "-P", "-m", "promptzip.integrations.proxy.testing", str(upstream_port)],
            stdout=subprocess.PIPE,
            env=env,
        )
        children.append(upstream)
        assert upstream.stdout is not None
        upstream_url = upstream.stdout.readline().decode().strip()
        proxy_args = ["--upstream", upstream_url, "--port", str(proxy_port), "--cache", args.cache]
        proxy_args += ["--preset", args.preset, "--budget", str(args.budget), "--min-tokens", "1024"]
        proxy = subprocess.Popen(
            [
                sys.executable,
                "-P",
                "-m",
                "promptzip.integrations.proxy",
                *proxy_args,
                "--warmup",
                "--log-level",
                "warning",
            ],
            env=env,
        )
        children.append(proxy)
        wait_healthy(proxy_port, proxy, timeout=300)
        rss_idle = rss_kib(proxy.pid, "VmRSS")
        load_before = os.getloadavg()
        print(f"proxy pid {proxy.pid} on :{proxy_port}, fake upstream on :{upstream_port}", file=sys.stderr)
        results = asyncio.run(measure(args, upstream_port, proxy_port))
        m = metrics(proxy_port)
        results["proxy_metrics"] = {
            k: v
            for k, v in m.items()
            if k.startswith(
                (
                    "promptzip_proxy_requests_total",
                    "promptzip_proxy_upstream_errors_total",
                    "promptzip_proxy_fail_open_total",
                    "promptzip_proxy_cache_",
                    "promptzip_proxy_result_cache_total",
                    "promptzip_proxy_compressions_total",
                )
            )
        }
        non_200 = sum(
            v for k, v in m.items() if k.startswith("promptzip_proxy_requests_total") and 'status="200"' not in k
        )
        upstream_errors = sum(v for k, v in m.items() if k.startswith("promptzip_proxy_upstream_errors_total"))
        results["zero_proxy_errors"] = (
            results["proxy_errors"] == 0
            and non_200 == 0
            and upstream_errors == 0
            and m.get("promptzip_proxy_fail_open_total", 0) == 0
        )
        results["proxy_rss_mib"] = {
            "after_start": round(rss_idle / 1024, 1),
            "peak": round(rss_kib(proxy.pid, "VmHWM") / 1024, 1),
        }
        results["machine"] = {
            "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        }
        results["settings"] = {k: v for k, v in vars(args).items() if k != "json"}
    finally:
        signal.alarm(0)
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in reversed(children):
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0 if results["zero_proxy_errors"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
