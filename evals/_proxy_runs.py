"""What the evals of the running proxy share (``proxy-uploads``, ``proxy-clients``, ``proxy-bodies``): a fresh
``promptzip proxy`` process in front of a fake upstream, the fake upstream in a process of its own, and the facts of
the machine a report was measured on."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

__all__ = ["HOST", "RunningProxy", "load", "machine", "running_proxy", "upstream_process", "write_report"]

HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class RunningProxy:
    """A proxy process serving on ``HOST:port``."""

    port: int
    pid: int

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"


@contextlib.contextmanager
def running_proxy(
    upstream: str, flags: Sequence[str] = (), *, log: Path | None = None, wait_s: float = 60.0
) -> Iterator[RunningProxy]:
    """``promptzip proxy --no-warmup`` in its own process on a free port of the loopback, in front of ``upstream``,
    with ``flags``; its warnings and errors go to ``log`` (else nowhere). Yields its port and process id once
    ``/healthz`` answers (a ``RuntimeError`` if it exits first or takes longer than ``wait_s``), and stops it after."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
    executable = Path(sys.executable).with_name("promptzip")
    command = [str(executable), "proxy", "--no-warmup", "--upstream", upstream, "--port", str(port), *flags]
    with log.open("wb") if log is not None else contextlib.nullcontext(subprocess.DEVNULL) as errors:
        proc = subprocess.Popen([*command, "--log-level", "warning"], stderr=errors)
    try:
        proxy = RunningProxy(port, proc.pid)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                if httpx.get(proxy.base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                if proc.poll() is not None:
                    said = log.read_text(errors="replace")[-2000:] if log is not None else ""
                    raise RuntimeError(f"the proxy exited ({proc.returncode}): {said}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the proxy did not answer /healthz within {wait_s:g} s") from None
                time.sleep(0.1)
        yield proxy
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def upstream_process() -> Iterator[str]:
    """The fake upstream (``python -m promptzip.integrations.proxy.testing``) in its own process, recording nothing,
    so that what it does takes no time from this process's clients (``proxy-bodies``): its URL."""
    command = [sys.executable, "-P", "-m", "promptzip.integrations.proxy.testing"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().decode("ascii").strip()
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def load() -> str:
    """The machine's load average, as the reports state it."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def machine(load_before: str) -> dict[str, Any]:
    """What a report says about the machine its run was measured on, the load average before it given, after it now."""
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_before": load_before,
        "load_after": load(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def write_report(out: Path, name: str, report: dict[str, Any], markdown: Callable[[dict[str, Any]], str]) -> None:
    """``report`` as ``out/name.json`` and, rendered by ``markdown``, ``out/name.md`` (also printed)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    text = markdown(report)
    (out / f"{name}.md").write_text(text, encoding="utf-8")
    print(text)
