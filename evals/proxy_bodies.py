"""``proxy-bodies``: a client sending large bodies does not hold up the running proxy's other clients.

    python -P -m promptzip.evals.proxy_bodies   # evals/results/proxy_bodies.{json,md}

Starts ``promptzip proxy --no-warmup`` in its own process in front of the fake upstream on 127.0.0.1 (in a process
of its own too, answering each large body at once without reading it), twice, one after the other in one run:
reading every body on the event loop (``thread_body_bytes`` set past any body, which is what the proxy did before it
had the setting), then with the default (``thread_body_bytes`` 64 KiB: a larger body is parsed, checked, counted
and re-encoded on a thread). Both have ``min_tokens`` set past any chat, so that every chat is read,
checked, counted and forwarded as given: this measures reading bodies, not compressing them. For each it times
ordinary requests (a short chat with ``x-promptzip-disable`` on a new connection, as ``proxy-clients`` does):

* ``baseline``: no other client;
* ``numbers``: ``--clients`` clients each send, one after the other, chats of ``--mb`` megabytes whose one short
  question sits beside an extra field of small numbers (``json`` parses it in C; the body check looks at each
  value), which the proxy reads, checks, counts and forwards;
* ``as given``: the same bodies with ``x-promptzip-disable``, of which the proxy reads only the end user the body
  names (the fair queue's turn): one ``json`` parse, in C;
* ``messages``: chats of as many megabytes made of one-word messages, each checked and counted in Python.

It records each large body's answer and how long it took, the ordinary requests' latency, and the machine's load
average before and after. Counts are deterministic; timings are reported, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
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

from promptzip.evals._client_phases import CHAT, Scale, Target
from promptzip.evals._proxy_runs import load, machine, running_proxy, upstream_process, write_report

__all__ = ["Bodies", "build_report", "main", "markdown", "run_bodies"]

COMMAND = "python -P -m promptzip.evals.proxy_bodies"
NEVER_COMPRESS = 1 << 40
ON_LOOP = 1 << 40  # thread_body_bytes past any body: every body read on the event loop
# The fake upstream answers each large body at once, unread (its own JSON parse would hold up its answers to the
# ordinary requests, which the report would then charge to the proxy).
ANSWER_AT_ONCE = {"x-fake-mode": "status:200"}
SHAPES = {
    "numbers": ("numbers", ANSWER_AT_ONCE),
    "as given": ("numbers", {**ANSWER_AT_ONCE, "x-promptzip-disable": "true"}),
    "messages": ("messages", ANSWER_AT_ONCE),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Bodies:
    """How many clients send large bodies, how large, and the ordinary requests timed beside them."""

    clients: int = 2
    mb: float = 9.0
    requests: int = 60
    over_s: float = 10.0  # the ordinary requests are spread over this many seconds

    def __post_init__(self) -> None:
        if self.clients < 1 or self.requests < 1 or not 0 < self.mb <= 10:
            raise ValueError("at least one client and one ordinary request, and bodies of at most 10 MB")

    def body(self, shape: str = "numbers") -> bytes:
        """About ``mb`` megabytes: a short chat beside an extra field of small numbers (``numbers``), or a chat of
        many one-word messages (``messages``)."""
        chat = {"model": "gpt-4o", "user": "batch-job", "messages": [{"role": "user", "content": "Summarise."}]}
        if shape == "messages":
            turn = {"role": "user", "content": "Go."}
            each = len(json.dumps(turn, separators=(",", ":"))) + 1  # and its comma
            chat["messages"] = [turn] * (int(self.mb * 1e6) // each)
            return json.dumps(chat, separators=(",", ":")).encode()
        count = int(self.mb * 1e6) // 2
        return json.dumps({**chat, "metadata": {"values": [0] * count}}, separators=(",", ":")).encode()


async def _large_client(
    base: str, body: bytes, headers: dict[str, str], stop: asyncio.Event
) -> list[tuple[int, float]]:
    """Send ``body`` again and again on one connection until ``stop``: each answer's status and seconds."""
    sent: list[tuple[int, float]] = []
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                r = await client.post(CHAT, content=body, headers={"content-type": "application/json", **headers})
                status = r.status_code
            except httpx.HTTPError:
                status = 0
            sent.append((status, time.perf_counter() - started))
    return sent


async def _phases(port: int, pid: int, bodies: Bodies) -> list[dict[str, Any]]:
    """The baseline, then each shape's large bodies beside the ordinary requests."""
    limits = httpx.Limits(max_keepalive_connections=0)  # a new connection for each ordinary request
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        t = Target(port, pid, Scale(), client)
        await t.ordinary(1, 0)  # the proxy's first request sets up what later ones reuse
        phases: list[dict[str, Any]] = [
            {"phase": "baseline", "ordinary": await t.ordinary(bodies.requests, bodies.over_s)}
        ]
        for shape, (kind, headers) in SHAPES.items():
            body = bodies.body(kind)
            stop = asyncio.Event()
            senders = [asyncio.create_task(_large_client(t.base, body, headers, stop)) for _ in range(bodies.clients)]
            await asyncio.sleep(0.5)  # each has a body on its way
            ordinary = await t.ordinary(bodies.requests, bodies.over_s)
            stop.set()
            sent = [answer for answers in await asyncio.gather(*senders) for answer in answers]
            seconds = sorted(s for _, s in sent)
            phases.append(
                {
                    "phase": shape,
                    "ordinary": ordinary,
                    "large_bodies": len(sent),
                    "large_statuses": dict(sorted(Counter(str(status) for status, _ in sent).items())),
                    "large_seconds_median": round(statistics.median(seconds), 3),
                    "large_seconds_max": round(seconds[-1], 3),
                }
            )
    return phases


def run_bodies(bodies: Bodies | None = None) -> dict[str, Any]:
    """Both proxies, each through every phase: ``arms`` (``on the loop``, ``on a thread``) and the body's size."""
    bodies = bodies or Bodies()
    started = time.perf_counter()
    arms: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder, upstream_process() as upstream:
        for name, threshold in (("on the loop", ON_LOOP), ("on a thread", None)):
            config = Path(folder) / f"{len(arms)}.json"
            # Chats of any length are forwarded as given once counted: this measures reading them, not compressing.
            limits = {"min_tokens": NEVER_COMPRESS}
            config.write_text(json.dumps(limits if threshold is None else {**limits, "thread_body_bytes": threshold}))
            with running_proxy(upstream, ["--config", str(config)]) as proxy:
                phases = asyncio.run(_phases(proxy.port, proxy.pid, bodies))
            arms.append({"arm": name, "thread_body_bytes": threshold or "default", "phases": phases})
    sizes = {kind: len(bodies.body(kind)) for kind in ("numbers", "messages")}
    return {"arms": arms, "body_bytes": sizes, "seconds": round(time.perf_counter() - started, 1)}


def build_report(bodies: Bodies, command: str = COMMAND) -> dict[str, Any]:
    """:func:`run_bodies` with the command, the date, the machine's load before and after, and the settings."""
    before = load()
    result = run_bodies(bodies)
    return {
        "command": command,
        **machine(before),
        "platform": platform.platform(),
        "settings": asdict(bodies),
        **result,
    }


def markdown(report: dict[str, Any]) -> str:
    s, sizes = report["settings"], report["body_bytes"]
    lines = [
        "# proxy-bodies: large bodies beside ordinary requests",
        "",
        f"Command: `{report['command']}` · {report['date']} · {report['seconds']} s · load average "
        f"{report['load_before']} before, {report['load_after']} after, {report['cpus']} CPUs · Python "
        f"{report['python']} · {report['platform']}.",
        "",
        f"In each phase but the baseline, {s['clients']} clients each send large chats one after the other: "
        f"`numbers`, a short question beside an extra field of small numbers ({sizes['numbers']:,} bytes), read, "
        "checked, counted and forwarded as given; `as given`, the same with `x-promptzip-disable`, of which only "
        f"the end user it names is read; `messages`, {sizes['messages']:,} bytes of one-word messages, each checked "
        "and counted. `min_tokens` is set past any chat in both proxies: nothing is compressed. "
        f"{s['requests']} ordinary requests (a short chat with `x-promptzip-disable` on a new connection, timed "
        f"from connecting to the answer) are spread over {s['over_s']} s beside them. `on the loop`: every body is "
        "read on the event loop (`thread_body_bytes` past any body, as before the setting); `on a thread`: the "
        "default, a body past 64 KiB is read on a thread. The fake upstream runs in its own process and "
        "answers each large body at once, unread.",
        "",
        "| proxy | phase | ordinary answered 200 | median ms | p95 ms | max ms | large bodies answered | "
        "large body s, median / max |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for arm in report["arms"]:
        for p in arm["phases"]:
            o = p["ordinary"]
            large = "–" if "large_bodies" not in p else ", ".join(f"{k}: {v}" for k, v in p["large_statuses"].items())
            took = "–" if "large_bodies" not in p else f"{p['large_seconds_median']} / {p['large_seconds_max']}"
            lines.append(
                f"| {arm['arm']} | {p['phase']} | {o['answered_200']} / {o['requests']} | {o['median_ms']} | "
                f"{o['p95_ms']} | {o['max_ms']} | {large} | {took} |"
            )
    lines += [
        "",
        "## Side by side",
        "",
        "| phase | p95 ms, loop / thread | max ms, loop / thread |",
        "| --- | --- | --- |",
    ]
    loop, thread = ({p["phase"]: p["ordinary"] for p in arm["phases"]} for arm in report["arms"])
    for phase in loop:
        a, b = loop[phase], thread[phase]
        lines.append(
            f"| {phase} | {a['p95_ms']} / {b['p95_ms']} ({_ratio(a['p95_ms'], b['p95_ms'])}) | "
            f"{a['max_ms']} / {b['max_ms']} ({_ratio(a['max_ms'], b['max_ms'])}) |"
        )
    return "\n".join([*lines, "", "The ordinary requests' p95 is by nearest rank."]) + "\n"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b else "–"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n")[0] if __doc__ else None)
    default = Bodies()
    parser.add_argument("--clients", type=int, default=default.clients, help="clients sending large bodies (2)")
    parser.add_argument("--mb", type=float, default=default.mb, help="megabytes per large body (9)")
    parser.add_argument("--requests", type=int, default=default.requests, help="ordinary requests per phase (60)")
    parser.add_argument("--over", type=float, default=default.over_s, help="seconds they are spread over (10)")
    parser.add_argument("--out", type=Path, default=Path("evals/results"), help="folder (default evals/results)")
    args = parser.parse_args(argv)
    bodies = Bodies(clients=args.clients, mb=args.mb, requests=args.requests, over_s=args.over)
    report = build_report(bodies, " ".join([COMMAND, *(sys.argv[1:] if argv is None else argv)]))
    write_report(args.out, "proxy_bodies", report, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
