"""A connection the proxy closes (its keep-alive wait over) while part of an answer still waits in its write buffer
is timed by ``timeouts.send`` like one whose writes are paused: asyncio keeps it open until the client has taken
the rest, so a client that takes none would otherwise hold its descriptor, its slot and the buffer's memory for
good; one that takes its answer slowly but steadily still gets all of it.

The answer is one written in a single piece, the proxy's own ``GET /v1/promptzip/expand/{id}`` of a large original,
so it ends at once however little the client took. Raw sockets with 4 KiB receive buffers against uvicorn on
127.0.0.1 serving the proxy as ``serve()`` does, its connections' send buffers held at 4 KiB (``live_server``)."""

from __future__ import annotations

import contextlib
import json
import random
import re
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from proxy_helpers import bm25, settings

from promptzip.integrations.proxy import create_app
from promptzip.integrations.proxy.testing import FakeUpstream, live_server

KiB = 1 << 10
SEND, HEADERS = 1.5, 0.5  # timeouts.send, and timeouts.headers: the keep-alive wait that closes the connection
KEY = "sk-alice-00000000000000000000000000000000"
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's count is Linux's (SIOCOUTQ)")


class Served:
    def __init__(self, url: str, app: Any) -> None:
        self.url, self.app = url, app

    def store(self, size: int) -> tuple[str, str]:
        """An original of about ``size`` bytes in the expand store, for KEY: (its id, its text)."""
        rng = random.Random(size)
        lines, total = [], 0
        while total < size:
            line = f"2024-05-0{rng.randint(1, 9)} INFO worker-{rng.randint(1, 64)} handled job {len(lines)}"
            lines.append(line)
            total += len(line) + 1
        text = "\n".join(lines)
        expansions = self.app.state.proxy.expansions
        return expansions.put(text, expansions.scope_of({"authorization": f"Bearer {KEY}"})), text

    def ask(self, id: str) -> socket.socket:
        host, port = self.url.removeprefix("http://").split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * KiB)  # before connecting: it sets the window
        sock.settimeout(30)
        sock.connect((host, int(port)))
        request = f"GET /v1/promptzip/expand/{id} HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {KEY}\r\n\r\n"
        sock.sendall(request.encode())
        return sock

    def metric(self, name: str) -> float:
        text = httpx.get(self.url + "/metrics", timeout=10).text
        found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0


@pytest.fixture
def served() -> Iterator[Served]:
    with FakeUpstream(record=False) as upstream:
        app = create_app(settings(upstream.url, timeouts={"send": SEND, "headers": HEADERS}), zipper_factory=bm25)
        with live_server(app, send_buffer=4 * KiB) as url:
            yield Served(url, app)


def open_connections(served: Served) -> float:
    return served.metric("promptzip_proxy_connections_open") - 1  # less the /metrics request's own


@linux_only
def test_a_client_that_takes_none_of_a_closed_answer_is_dropped(served: Served) -> None:
    id, _ = served.store(2 << 20)
    sock = served.ask(id)
    try:
        end = time.monotonic() + HEADERS + 4 * SEND + 5
        while open_connections(served) > 0 and time.monotonic() < end:  # held open forever before
            time.sleep(0.2)
        assert open_connections(served) == 0
        dropped = 'promptzip_proxy_connections_refused_total{limit="timeouts.send"}'
        assert served.metric(dropped) == 1
        got = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(64 * KiB):
                got += chunk
        assert got.startswith(b"HTTP/1.1 200")
        assert len(got) < 2 << 20  # what the kernel had queued, then the end: the rest was given up
    finally:
        sock.close()


@linux_only
def test_a_client_that_takes_a_closed_answer_steadily_gets_all_of_it(served: Served) -> None:
    id, text = served.store(160 * KiB)
    sock = served.ask(id)
    try:
        started, got = time.monotonic(), b""
        while chunk := sock.recv(2 * KiB):  # 16 KiB a second at most: many send timeouts after the close
            got += chunk
            time.sleep(0.125)
        took = time.monotonic() - started
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert json.loads(body)["text"] == text
        assert took > HEADERS + 2 * SEND  # the connection was closed, and timed, long before the end
        assert served.metric('promptzip_proxy_connections_refused_total{limit="timeouts.send"}') == 0
    finally:
        sock.close()
