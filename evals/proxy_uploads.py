"""``proxy-uploads``: what a large request body costs the running proxy in memory, streamed or read whole.

    python -P -m promptzip.evals.proxy_uploads [--mib 256]   # evals/results/proxy_uploads.{json,md}

Starts ``promptzip proxy --no-warmup`` in its own process in front of the recording fake upstream on 127.0.0.1 and
sends, one after the other, in one run:

* ``streamed``: a ``--mib`` MiB body (random bytes, with its ``content-length``) to ``/v1/audio/transcriptions``,
  a route the proxy does not read, so it forwards the body as it arrives;
* ``read whole``: a chat of about 9 MiB (under ``max_body_bytes``, 10 MiB) to ``/v1/chat/completions`` with
  ``x-promptzip-disable``, which the proxy reads whole before forwarding it unchanged.

For each it records the status, that the upstream received the body byte for byte, the wall seconds, and the
proxy's peak resident memory (``VmHWM`` of its process) before and after, so the growth per MiB of body sits side
by side: a streamed body should add a small constant, one read whole about its own size. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from promptzip.evals._proxy_runs import RunningProxy, load, machine, running_proxy, write_report
from promptzip.integrations.proxy.testing import FakeUpstream

__all__ = ["main", "markdown", "run_uploads"]

MIB = 1 << 20
COMMAND = "python -P -m promptzip.evals.proxy_uploads"


def _peak_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    if found is None:
        raise RuntimeError("no VmHWM in /proc: this eval needs Linux")
    return int(found[1]) / 1024


def _random_body(mib: int) -> Iterator[bytes]:
    block = os.urandom(MIB)
    for _ in range(mib):
        yield block


def _send(proxy: RunningProxy, upstream: FakeUpstream, case: str, mib: int) -> dict[str, Any]:
    base, pid = proxy.base, proxy.pid
    before = _peak_mib(pid)
    started = time.perf_counter()
    if case == "streamed":
        headers = {"content-type": "application/octet-stream", "content-length": str(mib * MIB)}
        r = httpx.post(base + "/v1/audio/transcriptions", content=_random_body(mib), headers=headers, timeout=600)
        size = mib * MIB
    else:
        text = "Harbour log entry. " * (mib * MIB // 19)
        body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}).encode()
        headers = {"content-type": "application/json", "x-promptzip-disable": "true"}
        r = httpx.post(base + "/v1/chat/completions", content=body, headers=headers, timeout=600)
        size = len(body)
    seconds = time.perf_counter() - started
    after = _peak_mib(pid)
    got = upstream.requests[-1].body
    return {
        "case": case,
        "body_mib": round(size / MIB, 2),
        "status": r.status_code,
        "upstream_received_whole": len(got) == size,
        "seconds": round(seconds, 2),
        "peak_rss_before_mib": round(before, 1),
        "peak_rss_after_mib": round(after, 1),
        "peak_rss_growth_mib": round(after - before, 1),
    }


def run_uploads(mib: int = 256, *, whole_mib: int = 9) -> list[dict[str, Any]]:
    """The two cases through one fresh proxy process, streamed first (its peak cannot hide the other's)."""
    with FakeUpstream() as upstream, running_proxy(upstream.url) as proxy:
        return [_send(proxy, upstream, "streamed", mib), _send(proxy, upstream, "read whole", whole_mib)]


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# proxy-uploads: the running proxy's memory for a large request body",
        "",
        f"Command: `{report['command']}` · {report['date']} · load average {report['load_before']} before, "
        f"{report['load_after']} after, {report['cpus']} CPUs · Python {report['python']}.",
        "",
        "| case | body MiB | status | upstream got it whole | seconds | peak RSS before → after MiB | growth MiB |",
        "| --- | ---: | ---: | --- | ---: | --- | ---: |",
    ]
    for c in report["cases"]:
        lines.append(
            f"| {c['case']} | {c['body_mib']} | {c['status']} | {'yes' if c['upstream_received_whole'] else 'NO'} | "
            f"{c['seconds']} | {c['peak_rss_before_mib']} → {c['peak_rss_after_mib']} | {c['peak_rss_growth_mib']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--mib", type=int, default=256, help="size of the streamed upload (default 256)")
    parser.add_argument("--out", type=Path, default=Path("evals/results"), help="folder (default evals/results)")
    args = parser.parse_args(argv)
    before = load()
    cases = run_uploads(args.mib)
    report = {
        "command": COMMAND + (f" --mib {args.mib}" if args.mib != 256 else ""),
        **machine(before),
        "cases": cases,
    }
    write_report(args.out, "proxy_uploads", report, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
