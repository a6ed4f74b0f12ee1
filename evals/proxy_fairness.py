"""``proxy-fairness``: one client flooding the proxy, another sending one request at a time.

    python -P -m promptzip.evals.proxy_fairness                # evals/results/proxy_fairness.{json,md}
    python -P -m promptzip.evals.proxy_fairness --shared-key   # evals/results/proxy_fairness_users.{json,md}

Runs the same load twice, each through a fresh ``promptzip proxy`` process (the real ``fast`` preset, its models
loaded by one compression before timing, a memory cache) in front of the recording fake upstream on 127.0.0.1:
once with ``--fair-queue`` (the default: turns by client, :mod:`promptzip.integrations.proxy._fair`) and once with
``--no-fair-queue`` (first come, first served: the proxy before it). Each run has two phases, one after the other:

* **compression**: the *flooder* (one API key) keeps ``--flood`` chats in flight for ``--seconds``, and on until the
  quiet client has had its answers: each loop sends a
  distinct RAG chat and, on a 503, waits ``--retry-s`` (not the ``retry-after`` it was given) and sends the next;
  the *quiet client* (another API key) sends ``--quiet`` distinct chats of the same size one at a time, starting
  ``--quiet-after`` seconds into the flood, ``--pause-s`` apart. Every sentence of every chat carries its own
  random citation marker, so neither the result cache nor the embedding memo can answer one: each is a compression.
* **upstream**: with ``--connections`` upstream connections (``max_connections``), the flooder keeps
  ``--upstream-flood`` requests in flight whose answers the upstream holds ``--slow-s`` seconds each (streamed
  answers of a long generation, say; ``x-promptzip-disable``, so no compression), and the quiet client sends
  ``--quiet`` requests answered at once, one at a time, ``--pause-s`` apart, from ``--quiet-after`` seconds on.

With ``--shared-key`` both clients send with one API key and name themselves in the body's ``user`` (an app that
serves many people with one key): only the compression phase runs (a chat sent with ``x-promptzip-disable`` is not
read, so its user is not known upstream), and the turns are the end users' inside the key's.

The report gives, per run, phase and client, the answers by HTTP status and ``x-promptzip-status`` (``compressed``,
``fail-open`` past the deadline, ``error`` for a 503, ``passthrough``), each request's seconds, the proxy's
``/metrics`` counters (``overloaded``, ``compressions_shed``, ``upstream_errors``), and the machine's load before and
after. Timings are reported, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import httpx

from promptzip.evals._proxy_runs import load as load_average
from promptzip.evals._proxy_runs import machine, running_proxy, write_report
from promptzip.integrations.proxy.testing import FakeUpstream

__all__ = ["Load", "build_report", "main", "markdown", "run_fairness"]

COMMAND = "python -P -m promptzip.evals.proxy_fairness"
ROUTE = "/v1/chat/completions"
FLOODER = "sk-flooder-000000000000000000000000000000"
QUIET = "sk-quiet-1111111111111111111111111111111111"
SHORT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Tell me a long story."}]}
QUESTIONS = (
    "What did the president propose about college tuition?",
    "What is said about Social Security?",
    "Which measures on energy and climate are mentioned?",
    "What does the speech say about jobs and manufacturing?",
)


@dataclass(frozen=True, slots=True)
class Load:
    """The workload and the proxy's limits of one run."""

    flood: int = 24  # the flooder's chats in flight
    quiet: int = 10  # the quiet client's chats, one at a time
    seconds: float = 45.0  # how long the flooder keeps sending
    quiet_after: float = 5.0  # seconds into the flood before the quiet client starts
    pause_s: float = 1.0  # between two of the quiet client's chats
    retry_s: float = 0.5  # the flooder's wait after a 503
    chars: int = 6000  # about 1,400 tokens of documents per chat
    threads: int = 4  # compression_threads
    queue: int = 16  # compression_queue
    deadline: float = 10.0  # compression_deadline, seconds
    upstream_flood: int = 24  # the flooder's slow upstream requests in flight
    connections: int = 8  # max_connections
    slow_s: float = 2.0  # how long the upstream holds each of them
    upstream_seconds: float = 20.0  # how long the flooder keeps them coming
    seed: int = 0
    shared_key: bool = False  # one API key for both clients, each named by the body's "user"


class Chats:
    """Distinct RAG chats from the bundled speech: consecutive sentences, each with a random citation marker."""

    def __init__(self, seed: int, chars: int) -> None:
        text = resources.files("promptzip").joinpath("_sample/sotu.txt").read_text(encoding="utf-8")
        self.sentences = [s for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if len(s) > 20]
        self.rng, self.chars = random.Random(seed), chars

    def next(self) -> dict[str, Any]:
        rng = self.rng
        start = rng.randrange(len(self.sentences))
        picked: list[str] = []
        while sum(len(s) for s in picked) < self.chars:
            sentence = self.sentences[(start + len(picked)) % len(self.sentences)]
            picked.append(f"{sentence} [{rng.randrange(16**8):08x}]")
        user = "Context:\n" + " ".join(picked) + f"\n\nQuestion: {rng.choice(QUESTIONS)}"
        messages = [{"role": "system", "content": "You answer questions about a speech."}]
        return {"model": "gpt-4o", "messages": [*messages, {"role": "user", "content": user}]}


@dataclass(frozen=True, slots=True)
class Answer:
    phase: str  # compression | upstream
    client: str
    status: int
    outcome: str  # x-promptzip-status, or the error's kind when the request failed
    sent_at: float  # seconds into the run
    seconds: float


async def _send(
    http: httpx.AsyncClient,
    at: tuple[str, str, float],
    key: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> Answer:
    phase, client, t0 = at
    sent = time.monotonic()
    try:
        given = {"authorization": f"Bearer {key}", **(headers or {"x-promptzip-rate": "0.3"})}
        r = await http.post(ROUTE, json=body, headers=given)
        status, outcome = r.status_code, r.headers.get("x-promptzip-status", "none")
    except httpx.HTTPError as exc:
        status, outcome = 0, type(exc).__name__
    return Answer(phase, client, status, outcome, round(sent - t0, 3), time.monotonic() - sent)


async def _flood_beside_quiet(
    answers: list[Answer],
    phase: str,
    load: Load,
    loops: int,
    seconds: float,
    send: Callable[[str, float], Awaitable[Answer]],
) -> None:
    """``loops`` flooder loops for ``seconds`` and until the quiet client is done (each waiting ``retry_s`` after an
    answer other than 200) beside the quiet client's ``quiet`` requests, one at a time; ``send(client, t0)`` sends
    one."""
    t0 = time.monotonic()
    end = t0 + seconds
    quiet_done = asyncio.Event()

    async def flooder() -> None:
        while time.monotonic() < end or not quiet_done.is_set():
            answer = await send("flooder", t0)
            answers.append(answer)
            if answer.status != 200:
                await asyncio.sleep(load.retry_s)

    async def quiet() -> None:
        await asyncio.sleep(load.quiet_after)
        for _ in range(load.quiet):
            answers.append(await send("quiet", t0))
            await asyncio.sleep(load.pause_s)
        quiet_done.set()

    await asyncio.gather(quiet(), *(flooder() for _ in range(loops)))


async def _load(base: str, load: Load) -> list[Answer]:
    chats = Chats(load.seed, load.chars)
    answers: list[Answer] = []
    size = max(load.flood, load.upstream_flood) + 4
    keys = {"flooder": FLOODER, "quiet": FLOODER if load.shared_key else QUIET}
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=httpx.Limits(max_connections=size)) as http:
        warm = await _send(http, ("warm-up", "quiet", time.monotonic()), QUIET, chats.next())  # the models load
        if warm.status != 200:
            raise RuntimeError(f"the warm-up chat was answered {warm.status} ({warm.outcome})")

        async def compress(client: str, t0: float) -> Answer:
            named = {"user": f"{client}-user"} if load.shared_key else {}
            return await _send(http, ("compression", client, t0), keys[client], {**chats.next(), **named})

        async def relay(client: str, t0: float) -> Answer:
            mode = f"slow:{load.slow_s:g}" if client == "flooder" else "ok"
            headers = {"x-promptzip-disable": "true", "x-fake-mode": mode}
            return await _send(http, ("upstream", client, t0), keys[client], SHORT, headers)

        await _flood_beside_quiet(answers, "compression", load, load.flood, load.seconds, compress)
        if not load.shared_key:
            await _flood_beside_quiet(answers, "upstream", load, load.upstream_flood, load.upstream_seconds, relay)
    return answers


def _metrics(base: str) -> dict[str, float]:
    wanted = ("overloaded_total", "compressions_shed_total", "deadline_exceeded_total", "fail_open_total")
    found: dict[str, float] = {}
    for line in httpx.get(base + "/metrics", timeout=10).text.splitlines():
        for name in wanted:
            if line.startswith(f"promptzip_proxy_{name} "):
                found[name] = float(line.split()[-1])
        if line.startswith("promptzip_proxy_upstream_errors_total{"):
            kind = line.split('kind="', 1)[1].split('"', 1)[0]
            found[f"upstream_errors_total{{{kind}}}"] = float(line.split()[-1])
    return found


def _summary(answers: Sequence[Answer], phase: str, client: str) -> dict[str, Any]:
    mine = [a for a in answers if a.phase == phase and a.client == client]
    compressed = sorted(a.seconds for a in mine if a.status == 200 and a.outcome == "compressed")
    every = sorted(a.seconds for a in mine)
    return {
        "requests": len(mine),
        "statuses": dict(sorted(Counter(str(a.status) for a in mine).items())),
        "outcomes": dict(sorted(Counter(a.outcome for a in mine).items())),
        "compressed": len(compressed),
        "seconds_all": _spread(every),
        "seconds_compressed": _spread(compressed),
    }


def _spread(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), 3),
        "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 3),
        "max": round(ordered[-1], 3),
    }


def _flags(load: Load, fair: bool, folder: Path) -> list[str]:
    config = folder / ("fair.toml" if fair else "fifo.toml")
    settings = f"compression_threads = {load.threads}\nmax_connections = {load.connections}\nupstream_pools = 1\n"
    config.write_text(settings, encoding="utf-8")
    return [
        "--config",
        str(config),
        "--cache",
        "memory",
        "--compression-queue",
        str(load.queue),
        "--compression-deadline",
        str(load.deadline),
        "--fair-queue" if fair else "--no-fair-queue",
    ]


def run_fairness(load: Load | None = None) -> dict[str, Any]:
    """Both runs, fair queue first: per run the two clients' summaries, every answer, and the proxy's counters."""
    load = load or Load()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder, FakeUpstream() as upstream:
        for fair in (True, False):
            log = Path(folder) / f"proxy-{fair}.log"
            started = time.perf_counter()
            with running_proxy(upstream.url, _flags(load, fair, Path(folder)), log=log) as proxy:
                answers = asyncio.run(_load(proxy.base, load))
                counters = _metrics(proxy.base)
            runs.append(
                {
                    "fair_queue": fair,
                    "seconds": round(time.perf_counter() - started, 1),
                    "phases": {
                        phase: {client: _summary(answers, phase, client) for client in ("quiet", "flooder")}
                        for phase in _phases(load)
                    },
                    "metrics": counters,
                    "answers": [asdict(a) for a in answers],
                }
            )
    return {"runs": runs}


def _phases(load: Load) -> tuple[str, ...]:
    return ("compression",) if load.shared_key else ("compression", "upstream")


def build_report(load: Load, command: str = COMMAND) -> dict[str, Any]:
    """:func:`run_fairness` with what the report says about its run: the command, the date, the machine's load
    average before and after, the Python, the platform and the workload."""
    before = load_average()
    result = run_fairness(load)
    return {"command": command, **machine(before), "platform": platform.platform(), "load": asdict(load), **result}


def markdown(report: dict[str, Any]) -> str:
    cfg = report["load"]
    shared = cfg.get("shared_key", False)
    who = (
        "one API key for both clients, each named by the body's `user`: the turns are the users' inside the key's"
        if shared
        else "one API key per client"
    )
    upstream_phase = (
        ""
        if shared
        else f" **upstream**: the flooder keeps {cfg['upstream_flood']} requests in flight for "
        f"{cfg['upstream_seconds']:g} s whose answers the upstream holds {cfg['slow_s']:g} s; the quiet client sends "
        f"{cfg['quiet']} answered at once, one at a time, {cfg['pause_s']:g} s apart."
    )
    lines = [
        "# Proxy: one user of an API key floods it, another user of the same key sends one request at a time"
        if shared
        else "# Proxy: one client floods it, another sends one request at a time",
        "",
        f"Command: `{report['command']}` · {report['date']} · {report['cpus']} CPUs, shared by the load generator, "
        f"the fake upstream and the proxy · load average before {report['load_before']}, after "
        f"{report['load_after']} · Python {report['python']}.",
        "",
        f"The proxy: the `fast` preset, rate 0.3, {cfg['threads']} compression threads, queue {cfg['queue']}, "
        f"deadline {cfg['deadline']:g} s, {cfg['connections']} upstream connections, memory cache; {who}. "
        "**compression**: "
        f"the flooder keeps {cfg['flood']} distinct chats (about {cfg['chars']:,} characters of documents each, "
        f"every sentence with a random marker: no cache answers) in flight for {cfg['seconds']:g} s (and on until the "
        "quiet client is done, in both phases) and waits "
        f"{cfg['retry_s']:g} s after a 503; the quiet client sends {cfg['quiet']} such chats one at a time from "
        f"{cfg['quiet_after']:g} s on, {cfg['pause_s']:g} s apart.{upstream_phase} No request is cached.",
        "",
        "| phase | queue | client | requests | HTTP status | x-promptzip-status | median s | p90 s | max s |",
        "|---|---|---|---:|---|---|---:|---:|---:|",
    ]
    for phase in report["runs"][0]["phases"]:
        for run in report["runs"]:
            name = "fair (default)" if run["fair_queue"] else "by arrival (--no-fair-queue)"
            for client in ("quiet", "flooder"):
                s = run["phases"][phase][client]
                spread = s["seconds_all"] or {"median": 0.0, "p90": 0.0, "max": 0.0}
                lines.append(
                    f"| {phase} | {name} | {client} | {s['requests']} | {_counts(s['statuses'])} | "
                    f"{_counts(s['outcomes'])} | {spread['median']:.2f} | {spread['p90']:.2f} | {spread['max']:.2f} |"
                )
    lines += ["", "Seconds are each request's, from sending it to its answer, whatever the answer.", ""]
    for run in report["runs"]:
        name = "fair" if run["fair_queue"] else "by arrival"
        compression, upstream = run["phases"]["compression"], run["phases"].get("upstream")
        q = compression["quiet"]
        done = q["seconds_compressed"]
        took = f"median {done['median']:.2f} s, max {done['max']:.2f} s" if done else "none"
        relayed = upstream["quiet"]["seconds_all"] if upstream else None
        waited = f"median {relayed['median']:.2f} s, max {relayed['max']:.2f} s" if relayed else "none"
        answered = (
            f"; the quiet client's upstream requests answered 200 {upstream['quiet']['statuses'].get('200', 0)} of "
            f"{upstream['quiet']['requests']} ({waited})"
            if upstream
            else ""
        )
        counters = ", ".join(f"{k} {v:g}" for k, v in sorted(run["metrics"].items()))
        lines.append(
            f"- {name}: the quiet client's chats compressed {q['compressed']} of {q['requests']} ({took}), the "
            f"flooder's {compression['flooder']['compressed']} of {compression['flooder']['requests']}{answered}; "
            f"/metrics: {counters}; run {run['seconds']:g} s"
        )
    return "\n".join(lines) + "\n"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n")[0] if __doc__ else None)
    d = Load()
    parser.add_argument("--flood", type=int, default=d.flood, help=f"the flooder's chats in flight ({d.flood})")
    parser.add_argument("--quiet", type=int, default=d.quiet, help=f"the quiet client's chats ({d.quiet})")
    parser.add_argument("--seconds", type=float, default=d.seconds, help=f"the flood's length ({d.seconds:g})")
    parser.add_argument("--quiet-after", type=float, default=d.quiet_after, help=f"seconds ({d.quiet_after:g})")
    parser.add_argument("--pause-s", type=float, default=d.pause_s, help=f"between quiet chats ({d.pause_s:g})")
    parser.add_argument("--retry-s", type=float, default=d.retry_s, help=f"the flooder's wait ({d.retry_s:g})")
    parser.add_argument("--chars", type=int, default=d.chars, help=f"document characters per chat ({d.chars})")
    parser.add_argument("--threads", type=int, default=d.threads, help=f"compression_threads ({d.threads})")
    parser.add_argument("--queue", type=int, default=d.queue, help=f"compression_queue ({d.queue})")
    parser.add_argument("--deadline", type=float, default=d.deadline, help=f"compression_deadline ({d.deadline:g})")
    parser.add_argument("--upstream-flood", type=int, default=d.upstream_flood, help=f"({d.upstream_flood})")
    parser.add_argument("--connections", type=int, default=d.connections, help=f"max_connections ({d.connections})")
    parser.add_argument("--slow-s", type=float, default=d.slow_s, help=f"the upstream's hold ({d.slow_s:g})")
    parser.add_argument(
        "--upstream-seconds", type=float, default=d.upstream_seconds, help="the upstream flood's length"
    )
    parser.add_argument(
        "--shared-key", action="store_true", help="one API key, the clients named by the body's user (compression)"
    )
    parser.add_argument("--out", type=Path, default=Path("evals/results"), help="folder (default evals/results)")
    args = parser.parse_args(argv)
    load = Load(
        flood=args.flood,
        quiet=args.quiet,
        seconds=args.seconds,
        quiet_after=args.quiet_after,
        pause_s=args.pause_s,
        retry_s=args.retry_s,
        chars=args.chars,
        threads=args.threads,
        queue=args.queue,
        deadline=args.deadline,
        upstream_flood=args.upstream_flood,
        connections=args.connections,
        slow_s=args.slow_s,
        upstream_seconds=args.upstream_seconds,
        shared_key=args.shared_key,
    )
    report = build_report(load, " ".join([COMMAND, *(sys.argv[1:] if argv is None else argv)]))
    write_report(args.out, "proxy_fairness_users" if load.shared_key else "proxy_fairness", report, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
