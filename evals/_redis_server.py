"""A local ``redis-server`` for benches and tests: a free port on 127.0.0.1, persistence off, killed on exit."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["free_port", "redis_server", "start_redis"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_redis(binary: str, port: int, folder: Path) -> subprocess.Popen[bytes]:
    """``binary`` (a redis-server) on 127.0.0.1:``port``, persistence off, its working folder ``folder``, answering
    pings; a ``RuntimeError`` when it exits or stays silent for 15 s."""
    import redis

    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += ["--dir", str(folder), "--protected-mode", "yes"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    client = redis.Redis(port=port, socket_timeout=1)
    deadline = time.monotonic() + 15
    try:
        while True:
            try:
                if client.ping():
                    return process
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
    finally:
        client.close()


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[int | None]:
    """A ``redis-server`` on a free port (:func:`start_redis`), killed on exit; ``None`` without the binary."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = free_port()
    process = start_redis(binary, port, folder)
    try:
        yield port
    finally:
        process.kill()
        process.wait(10)
