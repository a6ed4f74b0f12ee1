"""``timeouts.send`` drops a client that makes no progress taking its answer, not one that reads slowly: a client that
takes a few KiB at a time gets the whole answer, byte for byte, though the proxy's writes stay paused for many times
``timeouts.send`` (the write buffer never drains to its low-water mark, where the old clock restarted); one that
takes nothing, or stops, is dropped ``timeouts.send`` after its last progress; one slower than
the proxy's ``min_send_rate`` is dropped too.

Raw sockets against uvicorn on 127.0.0.1 serving the proxy as ``serve()`` does, in front of :class:`FakeUpstream`.
The clients' receive buffers are 4 KiB, and the proxy's socket send buffers are held at 4 KiB (set on its listening
socket, which its connections inherit): on loopback Linux would grow them to 4 MiB, far from a slow link's, and a
test would need megabytes to fill them. Every timing has seconds of margin: these tests must pass on a machine
whose CPUs are all busy.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from proxy_helpers import bm25, settings
from starlette.applications import Starlette

from promptzip.evals._trickle_readers import END, whole_body
from promptzip.integrations.proxy import _send_progress, create_app
from promptzip.integrations.proxy._connections import GuardedH11
from promptzip.integrations.proxy.testing import FakeUpstream, live_server

KiB = 1 << 10
SEND = 2.0  # timeouts.send of every proxy here
CHUNKS = 150  # the answer: a stream of that many ~1 KiB SSE events (x-fake-mode: long:N), about 160 KiB
PIECE, EVERY = 2 * KiB, 0.125  # a trickle reader takes at most PIECE bytes every EVERY seconds: 16 KiB/s at most
CHAT = "/v1/chat/completions"
BODY = json.dumps({"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "A long story?"}]})
HEADERS = {"content-type": "application/json", "x-promptzip-disable": "true", "x-fake-mode": f"long:{CHUNKS}"}
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's count is Linux's (SIOCOUTQ)")


def serving(app: Starlette) -> contextlib.AbstractContextManager[str]:
    """``live_server`` with the accepted connections' send buffer held at 4 KiB (see the module docstring)."""
    return live_server(app, send_buffer=4 * KiB)


class Pauses:
    """When the proxy's writes paused and resumed (a spy on the real protocol's flow control)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[str, float]] = []
        pause, resume = GuardedH11.pause_writing, GuardedH11.resume_writing
        monkeypatch.setattr(GuardedH11, "pause_writing", lambda p: (self._note("pause"), pause(p))[1])
        monkeypatch.setattr(GuardedH11, "resume_writing", lambda p: (self._note("resume"), resume(p))[1])

    def _note(self, what: str) -> None:
        self.events.append((what, time.monotonic()))

    @property
    def first(self) -> float:
        return next(at for what, at in self.events if what == "pause")

    def longest(self, until: float) -> float:
        """The longest stretch the writes stayed paused (one still paused: up to ``until``)."""
        longest, since = 0.0, None
        for what, at in self.events:
            if what == "pause" and since is None:
                since = at
            elif what == "resume" and since is not None:
                longest, since = max(longest, at - since), None
        return max(longest, until - since) if since is not None else longest


@pytest.fixture(scope="module")
def expected() -> bytes:
    """The answer's body as a client that reads at once gets it (the fake's stream, relayed as it is)."""
    with (
        FakeUpstream(record=False) as upstream,
        serving(proxy_app(upstream)) as url,
        httpx.stream("POST", url + CHAT, content=BODY, headers=HEADERS, timeout=30) as r,
    ):
        assert r.status_code == 200
        body = b"".join(r.iter_raw())
    assert body.endswith(b"data: [DONE]\n\n")
    assert f"part{CHUNKS - 1} ".encode() in body
    assert len(body) > 128 * KiB  # more than the buffers between the proxy and a client hold
    return body


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(record=False) as fake:
        yield fake


def proxy_app(upstream: FakeUpstream) -> Starlette:
    return create_app(settings(upstream.url, timeouts={"send": SEND}), zipper_factory=bm25)


def ask(url: str) -> socket.socket:
    """A raw connection with a 4 KiB receive buffer that asks for the long streamed answer."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * KiB)  # before connecting: it sets the window
    sock.settimeout(30)
    sock.connect((host, int(port)))
    head = "".join(f"{k}: {v}\r\n" for k, v in {**HEADERS, "content-length": str(len(BODY))}.items())
    sock.sendall(f"POST {CHAT} HTTP/1.1\r\nhost: proxy\r\n{head}\r\n{BODY}".encode())
    return sock


def trickle(sock: socket.socket, until: Callable[[bytes], bool]) -> bytes:
    """Take at most PIECE bytes every EVERY seconds until ``until(what came)``, the answer's end, or the close."""
    data = b""
    while not until(data) and not data.endswith(END):
        try:
            more = sock.recv(PIECE)
        except ConnectionResetError:
            break
        if not more:
            break
        data += more
        time.sleep(EVERY)
    return data


def rest(sock: socket.socket) -> bytes:
    """All that is left on ``sock`` until the proxy's close."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while more := sock.recv(64 * KiB):
            data += more
    return data


def dechunked(answer: bytes) -> bytes:
    """The body of a whole chunked HTTP/1.1 answer, its status 200."""
    assert b"transfer-encoding: chunked" in answer.partition(b"\r\n\r\n")[0].lower(), answer[:200]
    body = whole_body(answer)
    assert body is not None, answer[:200]
    return body


def wait_until(check: Callable[[], bool], what: str, within: float) -> float:
    """Wait until ``check()``; the time it first held."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        time.sleep(0.01)
    return time.monotonic()


def dropped(app: Starlette) -> float:
    return app.state.proxy.metrics.connections_refused.value("timeouts.send")


@linux_only
def test_a_client_that_reads_slowly_gets_its_whole_answer(
    monkeypatch: pytest.MonkeyPatch, upstream: FakeUpstream, expected: bytes
) -> None:
    """16 KiB/s at most, while it takes 32 KiB of a send timeout's 2 s where the write buffer's 48 KiB above its
    low-water mark would have to go: the writes stay paused longer than timeouts.send, and the answer comes whole."""
    pauses = Pauses(monkeypatch)
    app = proxy_app(upstream)
    with serving(app) as url, ask(url) as sock:
        started = time.monotonic()
        answer = trickle(sock, lambda data: False)
        took = time.monotonic() - started
        assert dropped(app) == 0
    assert dechunked(answer) == expected
    assert took > 3 * SEND
    assert pauses.longest(until=started + took) > SEND  # where the old clock dropped it


@linux_only
def test_a_client_that_reads_nothing_is_dropped_and_counted(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, upstream: FakeUpstream, expected: bytes
) -> None:
    pauses = Pauses(monkeypatch)
    app = proxy_app(upstream)
    with caplog.at_level(logging.INFO, "promptzip.proxy"), serving(app) as url, ask(url) as sock:
        wait_until(lambda: bool(pauses.events), "the proxy's writes paused", 20)
        at = wait_until(lambda: dropped(app) == 1, "the client dropped", SEND + 20)
        assert at - pauses.first >= SEND - 0.05
        assert len(rest(sock)) < len(expected)  # what the buffers held, then the close: never the whole answer
    assert f"a client took none of its answer for {SEND:g} s (timeouts.send): disconnected" in caplog.text


@linux_only
def test_a_client_that_reads_then_stops_is_dropped_once_it_stops(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, upstream: FakeUpstream, expected: bytes
) -> None:
    """It trickles through a pause longer than timeouts.send, then takes nothing more: dropped timeouts.send after
    its last progress, within two of them (the clock runs in steps of timeouts.send). Its last progress is the
    window its last reads opened, which TCP announces a few KiB at a time: a read or a few before it stops."""
    pauses = Pauses(monkeypatch)
    app = proxy_app(upstream)
    with caplog.at_level(logging.INFO, "promptzip.proxy"), serving(app) as url, ask(url) as sock:
        taken = trickle(sock, lambda data: bool(pauses.events) and time.monotonic() - pauses.first > 2.5 * SEND)
        stopped = time.monotonic()
        assert dropped(app) == 0
        assert pauses.longest(until=stopped) > SEND
        at = wait_until(lambda: dropped(app) == 1, "the client dropped", 2 * SEND + 20)
        assert at - stopped >= SEND / 2
        assert len(taken + rest(sock)) < len(expected)
    assert "a client took none of its answer" in caplog.text


@linux_only
def test_a_client_slower_than_min_send_rate_is_dropped(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, upstream: FakeUpstream
) -> None:
    """With the floor raised past the trickle reader's 16 KiB/s, it is dropped at the first send timeout that its
    writes stay paused, though it took some of the answer meanwhile."""
    pauses = Pauses(monkeypatch)
    app = create_app(settings(upstream.url, timeouts={"send": SEND}, min_send_rate=64 * KiB), zipper_factory=bm25)
    with caplog.at_level(logging.INFO, "promptzip.proxy"), serving(app) as url, ask(url) as sock:
        trickle(sock, lambda data: dropped(app) == 1)
        assert dropped(app) == 1
        rest(sock)
    assert pauses.events
    assert "bytes of its answer in 2 s, under 65536 bytes/s (timeouts.send, min_send_rate): disconnected" in (
        caplog.text
    )


def test_where_the_kernel_does_not_count_only_the_write_buffer_is_measured(
    monkeypatch: pytest.MonkeyPatch, upstream: FakeUpstream
) -> None:
    """Without the kernel's count (not Linux, or the ioctl fails) a client that takes nothing is dropped as before."""
    monkeypatch.setattr(_send_progress, "kernel_queue", lambda fd: None)
    pauses = Pauses(monkeypatch)
    app = proxy_app(upstream)
    with serving(app) as url, ask(url) as sock:
        wait_until(lambda: bool(pauses.events), "the proxy's writes paused", 20)
        at = wait_until(lambda: dropped(app) == 1, "the client dropped", SEND + 20)
        assert at - pauses.first >= SEND - 0.05
        rest(sock)


@linux_only
def test_the_kernel_counts_what_a_socket_has_not_had_acknowledged() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    with listener, socket.create_connection(listener.getsockname()) as client, listener.accept()[0] as server:
        assert _send_progress.kernel_queue(server.fileno()) == 0
        server.setblocking(False)
        sent = 0
        with contextlib.suppress(BlockingIOError):
            while True:  # until the client's receive buffer and the server's send buffer are full
                sent += server.send(b"x" * 64 * KiB)
        queued = _send_progress.kernel_queue(server.fileno())
        assert queued is not None
        assert 0 < queued <= sent
        client.recv(64 * KiB)
        time.sleep(0.2)
        after = _send_progress.kernel_queue(server.fileno())
        assert after is not None
        assert after < queued
    assert _send_progress.kernel_queue(listener.fileno()) is None  # closed
