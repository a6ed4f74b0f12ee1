"""The proxy on uvloop, the event loop ``uvicorn[standard]`` brings and uvicorn then picks by itself: ``serve()``
leaves uvicorn's choice alone, so where uvloop is installed the proxy runs on it, and its connection guards (the
send clock of a closing answer, the unread check when making room, the body and header deadlines) read the
transports and sockets uvloop gives them. The guard tests run here again on uvloop, in a child pytest; the rest of
the suite serves on asyncio's own loop (``live_server``'s default)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptzip.evals._proxy_runs import running_proxy
from promptzip.integrations.proxy.testing import FakeUpstream, live_server

uvloop = pytest.importorskip("uvloop")

TESTS = Path(__file__).resolve().parent
# The guard tests that read the transport and the socket under the loop (uvloop's are its own, not asyncio's).
GUARDS = ["test_proxy_closing_answers.py", "test_proxy_eviction_race.py"]


async def _loop_name(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app that answers with the module of the event loop it runs on."""
    if scope["type"] == "lifespan":
        while True:
            kind = (await receive())["type"]  # lifespan.startup, then lifespan.shutdown
            await send({"type": f"{kind}.complete"})
            if kind == "lifespan.shutdown":
                return
    name = type(asyncio.get_running_loop()).__module__.encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": name})


@pytest.mark.parametrize(
    ("env", "loop", "expected"),
    [
        (None, None, "asyncio"),
        ("uvloop", None, "uvloop"),  # how the child run below serves
        ("uvloop", "asyncio", "asyncio"),
        (None, "uvloop", "uvloop"),
    ],
)
def test_live_server_serves_on_the_loop_it_is_given(
    env: str | None, loop: str | None, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if env is None:
        monkeypatch.delenv("PROMPTZIP_LIVE_LOOP", raising=False)
    else:
        monkeypatch.setenv("PROMPTZIP_LIVE_LOOP", env)
    with live_server(_loop_name, loop=loop) as url:
        assert httpx.get(url, timeout=10).text.split(".")[0] == expected


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the proxy's mapped libraries from /proc")
def test_the_served_proxy_runs_on_uvloop_where_it_is_installed(upstream: FakeUpstream) -> None:
    with running_proxy(upstream.url) as proxy:
        chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
        assert httpx.post(proxy.base + "/v1/chat/completions", json=chat, timeout=30).status_code == 200
        maps = Path(f"/proc/{proxy.pid}/maps").read_text()
    assert "uvloop" in maps


@pytest.mark.slow
def test_the_connection_guards_hold_on_uvloop() -> None:
    env = {**os.environ, "PROMPTZIP_LIVE_LOOP": "uvloop"}
    command = [sys.executable, "-P", "-m", "pytest", "-q", "-p", "no:cacheprovider", *(str(TESTS / g) for g in GUARDS)]
    done = subprocess.run(command, env=env, cwd=TESTS.parent, capture_output=True, text=True, timeout=600)
    said = done.stdout[-3000:] + done.stderr[-2000:]
    assert done.returncode == 0, said
    assert " passed" in said
    assert "failed" not in said
    assert "skipped" not in said
