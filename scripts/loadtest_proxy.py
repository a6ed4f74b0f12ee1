"""Load test of the proxy on loopback with a realistic mix of traffic (not a test; run it by hand).

    .venv/bin/python -P scripts/loadtest_proxy.py --seconds 20 --clients 16 [--adversarial 4] [--json out.json]

It starts a fake upstream (``promptzip.integrations.proxy.testing``) and the proxy (``python -m
promptzip.integrations.proxy``, the real ``fast`` preset, uvicorn) as separate processes on 127.0.0.1. Each of
``--clients`` keep-alive clients plays one role for the whole phase (so each class has a fixed concurrency, as
in a real deployment, instead of the slow classes soaking up every closed-loop client):

    small    distinct short chats below min_tokens: passed through after the checks
    warm     one of a few ~4k-token RAG chats compressed before the phases: whole-request cache hits
    stream   the same warm chats with "stream": true (the request compressed, the SSE answer relayed)
    cold     distinct RAG chats, ~4k and ~8k tokens in turn (classes cold-4k and cold-8k): every sentence carries a
             random citation marker, so neither the result cache nor the embedding cache can answer them

Phases of ``--seconds`` each: ``direct`` (the mix straight to the fake upstream: the baseline), ``proxy`` (the mix
through the proxy) and, with ``--adversarial N``, ``proxy+adversarial``: the same plus N clients sending distinct
~8k chats with ``x-promptzip-preset`` naming the slowest preset the proxy allows (``--slow-preset``). It reports,
per phase and class, requests/s, latency p50/p90/p99, the ``x-promptzip-status`` and ``x-promptzip-cache``
counts and the mean prompt tokens; the latency the proxy adds per class; the warm hits' p99 with and without the
adversarial clients; the proxy's counters from /metrics; and its RSS after start and at peak. Every loop is
bounded by time and the whole run by a watchdog; the child processes are always stopped. Traffic stays on
127.0.0.1; no GPU and no network are needed.

The client is a minimal HTTP/1.1 client on asyncio streams, so that the load generator's own CPU cost (it shares
the machine's cores with the proxy and the upstream) stays small.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptzip.evals._redis_server import free_port

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "promptzip" / "_sample" / "sotu.txt"
QUESTIONS = (
    "What did the president propose about college tuition?",
    "What is said about Social Security?",
    "Which measures on energy and climate are mentioned?",
    "What does the speech say about jobs and manufacturing?",
    "How does the speech describe the state of the economy?",
)
CHARS_PER_TOKEN = 4.2  # English prose on gpt-4o's tokenizer, near enough to size a chat without counting it
ROLES = {"warm": 4, "small": 3, "stream": 2, "cold": 2}  # share of the clients playing each role
KEY = "Bearer sk-loadtest-not-a-real-key"


# -------------------------------------------------------------------------------------------- the request bodies
def sample_sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.strip()) > 20]


class Bodies:
    """Chat bodies, distinct every time: short chats, and RAG chats in two common layouts."""

    def __init__(self, seed: int = 0, sentences: list[str] | None = None) -> None:
        self.rng = random.Random(seed)
        self.sentences = sentences or sample_sentences(SAMPLE.read_text(encoding="utf-8"))
        self.serial = 0

    def small(self) -> dict[str, Any]:
        self.serial += 1
        return {
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": f"Say hello in five words (#{self.serial})."}],
        }

    def rag(self, tokens: int) -> dict[str, Any]:
        """A ~``tokens``-token RAG chat: documents of consecutive sentences, each with a random citation marker."""
        rng, docs, size = self.rng, [], 0
        while size < tokens * CHARS_PER_TOKEN:
            start = rng.randrange(len(self.sentences))
            doc = " ".join(f"{s} [{rng.randrange(1, 10**6)}]" for s in self.sentences[start : start + 8])
            docs.append(doc)
            size += len(doc) + 40
        question = rng.choice(QUESTIONS)
        if rng.random() < 0.5:  # documents in the system message, as XML (Anthropic's layout)
            xml = "".join(f'<document index="{i}">\n{d}\n</document>\n' for i, d in enumerate(docs))
            system = f"Answer from the documents only.\n\n<documents>\n{xml}</documents>"
            messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
        else:  # context and question in the last user turn
            user = "Context:\n" + "\n\n".join(docs) + f"\n\nQuestion: {question}"
            messages = [{"role": "system", "content": "You answer questions about a speech."}]
            messages.append({"role": "user", "content": user})
        return {"model": "gpt-4o", "messages": messages}


def allocate(clients: int, weights: dict[str, int]) -> list[str]:
    """The role of each client: every role at least once when there are enough clients, the rest by weight."""
    roles = list(weights)[:clients]
    total = sum(weights.values())
    while len(roles) < clients:
        roles.append(max(weights, key=lambda r: weights[r] / total * clients - roles.count(r)))
    return roles


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
        "Authorization": KEY,
        "Content-Length": str(len(payload)),
        **(extra or {}),
    }
    head = "POST /v1/chat/completions HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode("latin-1") + payload


# ------------------------------------------------------------------------------------------------- measuring
@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0  # broken connections and answers other than 200 and 503
    shed: int = 0  # 503: every compression slot was taken (the proxy's designed answer to overload)
    statuses: dict[str, int] = field(default_factory=dict)
    cache: dict[str, int] = field(default_factory=dict)
    tokens_in: list[int] = field(default_factory=list)
    # From the phase's start to this class's last answer: a class's rate is not diluted by a slower class's tail.
    span: float = 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict[str, Any]:
        return {
            "requests": len(self.latencies),
            "errors": self.errors,
            "shed_503": self.shed,
            "rps": round(len(self.latencies) / self.span, 1) if self.span else 0.0,
            **{f"p{int(q * 100)}_ms": round(self.pct(q) * 1000, 1) for q in (0.5, 0.9, 0.99)},
            "x-promptzip-status": self.statuses,
            "x-promptzip-cache": self.cache,
            "mean_tokens_in": round(sum(self.tokens_in) / len(self.tokens_in)) if self.tokens_in else None,
        }


Maker = Callable[[], tuple[str, dict[str, Any], dict[str, str]]]  # () -> (class, body, extra headers)


def makers(bodies: Bodies, warm: list[dict[str, Any]], slow_preset: str) -> dict[str, Maker]:
    turn = {"cold": 0}

    def cold() -> tuple[str, dict[str, Any], dict[str, str]]:
        turn["cold"] += 1
        size = 4000 if turn["cold"] % 2 else 8000
        return f"cold-{size // 1000}k", bodies.rag(size), {}

    return {
        "small": lambda: ("small", bodies.small(), {}),
        "warm": lambda: ("warm", bodies.rng.choice(warm), {}),
        "stream": lambda: ("stream", {**bodies.rng.choice(warm), "stream": True}, {}),
        "cold": cold,
        "adversarial": lambda: ("adversarial", bodies.rag(8000), {"x-promptzip-preset": slow_preset}),
    }


async def run_phase(port: int, roles: list[str], make: dict[str, Maker], seconds: float) -> dict[str, Stats]:
    stats: dict[str, Stats] = {}
    begun = time.monotonic()
    deadline = begun + seconds

    async def client(role: str) -> None:
        conn = Connection(port)
        try:
            while time.monotonic() < deadline:
                name, body, extra = make[role]()
                s = stats.setdefault(name, Stats())
                raw = build_request(port, body, extra)
                started = time.perf_counter()
                try:
                    status, headers, _ = await asyncio.wait_for(conn.request(raw), timeout=120)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
                    s.errors += 1
                    await conn.close()
                    continue
                s.latencies.append(time.perf_counter() - started)
                s.span = time.monotonic() - begun
                s.errors += status not in (200, 503)
                s.shed += status == 503
                for counts, header in ((s.statuses, "x-promptzip-status"), (s.cache, "x-promptzip-cache")):
                    tag = headers.get(header, "-")
                    counts[tag] = counts.get(tag, 0) + 1
                if headers.get("x-promptzip-tokens-in", "").isdigit():
                    s.tokens_in.append(int(headers["x-promptzip-tokens-in"]))
        finally:
            await conn.close()

    await asyncio.gather(*(client(role) for role in roles))
    return dict(sorted(stats.items()))


async def measure(args: argparse.Namespace, upstream_port: int, proxy_port: int) -> dict[str, Any]:
    bodies = Bodies(seed=args.seed)
    warm = [bodies.rag(4000) for _ in range(args.warm_chats)]
    started = time.perf_counter()  # warm the result cache: each warm chat compressed once, one at a time

    async def prime(body: dict[str, Any]) -> str:
        conn = Connection(proxy_port)
        try:
            _, headers, _ = await conn.request(build_request(proxy_port, body))
            return headers.get("x-promptzip-status", "-")
        finally:
            await conn.close()

    primed = [await prime(b) for b in warm]  # one at a time: together they could pass the compression deadline
    if any(p != "compressed" for p in primed):
        print(f"  warning: not every warm chat was compressed ({primed}): warm is not all hits", file=sys.stderr)
    results: dict[str, Any] = {"warmup": {"seconds": round(time.perf_counter() - started, 2), "status": primed}}
    make = makers(bodies, warm, args.slow_preset)
    roles = allocate(args.clients, ROLES)
    plan = [("direct", upstream_port, roles), ("proxy", proxy_port, roles)]
    if args.adversarial:
        plan.append(("proxy+adversarial", proxy_port, roles + ["adversarial"] * args.adversarial))
    raw: dict[str, dict[str, Stats]] = {}
    results["phases"] = {}
    for name, port, who in plan:
        print(f"  {name}: {len(who)} clients for {args.seconds:g} s ...", file=sys.stderr, flush=True)
        raw[name] = await run_phase(port, who, make, args.seconds)
        results["phases"][name] = {cls: s.summary() for cls, s in raw[name].items()}
    results["roles"] = {r: roles.count(r) for r in ROLES}
    results["added_latency_ms"] = {
        cls: {q: round((s.pct(v) - raw["direct"][cls].pct(v)) * 1000, 1) for q, v in (("p50", 0.5), ("p99", 0.99))}
        for cls, s in raw["proxy"].items()
        if cls in raw["direct"]
    }
    with_adv = raw.get("proxy+adversarial", {}).get("warm")
    results["warm_hit_p99_ms"] = {
        "without_adversarial": round(raw["proxy"]["warm"].pct(0.99) * 1000, 1) if "warm" in raw["proxy"] else None,
        "with_adversarial": round(with_adv.pct(0.99) * 1000, 1) if with_adv is not None else None,
    }
    # What counts against the proxy: broken connections and answers other than 200 and 503 in the proxied phases.
    results["proxy_errors"] = sum(s.errors for name, p in raw.items() if name != "direct" for s in p.values())
    return results


# ------------------------------------------------------------------------------------------------ the run
def rss_kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:  # loopback only
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "_bucket" not in line:
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def wait_healthy(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
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


def table(results: dict[str, Any]) -> str:
    lines = [f"{'phase':<18} {'class':<12} {'req':>6} {'rps':>7} {'p50 ms':>9} {'p99 ms':>9} {'err':>4}  status"]
    for phase, classes in results["phases"].items():
        for cls, s in classes.items():
            lines.append(
                f"{phase:<18} {cls:<12} {s['requests']:>6} {s['rps']:>7} {s['p50_ms']:>9} {s['p99_ms']:>9} "
                f"{s['errors']:>4}  {s['x-promptzip-status']}"
            )
    return "\n".join(lines)


def start_upstream(port: int, env: dict[str, str], children: list[subprocess.Popen[bytes]]) -> str:
    """Start the fake upstream on ``port`` as a child process; its base URL (``http://127.0.0.1:PORT/v1``)."""
    upstream = subprocess.Popen(
        [sys.executable, "-P", "-m", "promptzip.integrations.proxy.testing", str(port)],
        stdout=subprocess.PIPE,
        env=env,
    )
    children.append(upstream)
    assert upstream.stdout is not None
    return upstream.stdout.readline().decode().strip()


def stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    """Stop the child processes, newest first: SIGINT, then a kill after 15 s."""
    for child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
    for child in reversed(children):
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)


def _watchdog(signum: int, frame: object) -> None:
    raise TimeoutError("the load test ran past its watchdog")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each measured phase (default 20)")
    parser.add_argument("--clients", type=int, default=16, help="clients of the mix (default 16)")
    parser.add_argument("--adversarial", type=int, default=0, metavar="N", help="add N slow-preset clients")
    parser.add_argument("--slow-preset", default="balanced", help="what adversarial clients ask for (default balanced)")
    parser.add_argument("--warm-chats", type=int, default=4, help="distinct warm chats (default 4)")
    parser.add_argument("--rate", type=float, default=0.25, help="the proxy's kept fraction (default 0.25)")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--deadline", type=float, default=10.0, help="the proxy's compression_deadline (default 10)")
    parser.add_argument("--nice", type=int, default=10, help="the proxy's compression_nice (default 10)")
    parser.add_argument("--cache", default="memory", help="the proxy's cache URL (memory, sqlite:///..., redis://...)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 1024 or not 0 < args.seconds <= 3600 or not 0 <= args.adversarial <= 1024:
        parser.error("--clients must be in [1, 1024], --adversarial in [0, 1024] and --seconds in (0, 3600]")

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    upstream_port, proxy_port = free_port(), free_port()
    children: list[subprocess.Popen[bytes]] = []
    signal.signal(signal.SIGALRM, _watchdog)
    signal.alarm(int(4 * args.seconds + 900))  # the whole run stops by itself after this many seconds
    with tempfile.TemporaryDirectory(prefix="promptzip-loadtest-") as tmp:
        config = Path(tmp) / "proxy.json"
        allowed = sorted({args.preset, args.slow_preset})
        config.write_text(
            json.dumps(
                {"allowed_presets": allowed, "compression_deadline": args.deadline, "compression_nice": args.nice}
            )
        )
        try:
            upstream_url = start_upstream(upstream_port, env, children)
            proxy_args = ["--upstream", upstream_url, "--port", str(proxy_port), "--cache", args.cache]
            proxy_args += ["--preset", args.preset, "--rate", str(args.rate), "--min-tokens", "1024"]
            proxy_args += ["--config", str(config), "--warmup", "--log-level", "warning"]
            proxy = subprocess.Popen([sys.executable, "-P", "-m", "promptzip.integrations.proxy", *proxy_args], env=env)
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
                if k.startswith("promptzip_proxy_")
                and "_seconds" not in k
                and not k.startswith(("promptzip_proxy_requests_in_flight", "promptzip_proxy_tokens"))
            }
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
            stop_children(children)
    print(table(results), file=sys.stderr)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0 if results["proxy_errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
