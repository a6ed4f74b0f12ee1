"""A real redis-server for the tests: started on a free port of 127.0.0.1 with persistence off, in a temporary
folder, killed at the end. Without the binary a test skips with the reason, except under CI (``CI`` set), where it
fails: CI installs Debian's ``redis-server``. ``redis_server`` (one per module) and ``own_redis`` (one a test may
kill) are fixtures in ``conftest.py``."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from promptzip.evals._redis_server import free_port, start_redis

redis = pytest.importorskip("redis")

__all__ = ["RedisServer", "free_port", "redis_server_in"]


class RedisServer:
    """One redis-server process on 127.0.0.1 that a test may kill and start again on the same port."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.binary, self.folder, self.port = binary, folder, free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = start_redis(self.binary, self.port, self.folder)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def client(self) -> Any:
        return redis.Redis(port=self.port, socket_timeout=2)


def redis_server_in(folder: Path) -> RedisServer:
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "redis-server is not installed (Debian: apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return RedisServer(binary, folder)
