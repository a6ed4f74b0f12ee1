"""A connection whose request has come is not the one closed to make room, though the proxy has not read it yet.

At ``max_client_connections`` a new connection closes the connection that has waited longest for a request. Under
load the event loop runs late, so that connection's next request can already sit in the kernel's receive queue when
the newcomer is counted in; closing it would reset a request the client had sent, a connection error for a client
with its retries off. Here the loop is held at that moment on purpose: the proxy is served with its own guarded
protocol, subclassed so that the newcomer's ``connection_made`` blocks the loop (before the proxy counts the
connection) until the test has written a request on an idle connection and the proxy's kernel has acknowledged every
byte of it (the client's unacknowledged bytes, ``SIOCOUTQ``, are none). Real uvicorn, real sockets on 127.0.0.1, in
front of :class:`FakeUpstream`; Linux, for ``SIOCOUTQ``.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from proxy_helpers import bm25, raw_answer, settings
from starlette.applications import Starlette
from test_proxy_connections import CHAT, Answers, chat, closed, closed_idle, request, wait_until

from promptzip.integrations.proxy import create_app
from promptzip.integrations.proxy._connections import server_options
from promptzip.integrations.proxy._send_progress import kernel_queue
from promptzip.integrations.proxy.testing import FakeUpstream, live_server

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIOCOUTQ tells when a write has come")

HEALTHZ = request("/healthz", method="GET")


class HeldLoop:
    """The proxy's guarded protocol for ``app`` (:attr:`protocol`, for ``live_server(http=)``), but that the
    connection :meth:`connect` makes holds the server's loop as it is made, before the proxy counts it, until
    :meth:`release`: what a loop running late does, but for as long as the test needs. :attr:`received` counts the
    bytes each connection's protocol was given, in the order the connections were made."""

    def __init__(self, app: Starlette) -> None:
        self._armed, self._holding, self._released = threading.Event(), threading.Event(), threading.Event()
        self.received: list[int] = []
        held = self
        guarded = server_options(app)["http"]

        class Late(guarded):  # type: ignore[misc, valid-type]
            def connection_made(self, transport: Any) -> None:
                if held._armed.is_set():
                    held._armed.clear()
                    held._holding.set()
                    held._released.wait(10)
                self.index = len(held.received)
                held.received.append(0)
                super().connection_made(transport)

            def data_received(self, data: bytes) -> None:
                held.received[self.index] += len(data)
                super().data_received(data)

        self.protocol = Late

    def connect(self, url: str, source: str = "127.0.0.1") -> socket.socket:
        """A new connection from ``source``; returns once the server's loop is held in its ``connection_made``."""
        self._released.clear()
        self._armed.set()
        host, port = url.removeprefix("http://").split(":")
        sock = socket.create_connection((host, int(port)), timeout=10, source_address=(source, 0))
        assert self._holding.wait(10), "the server did not take the connection"
        self._holding.clear()
        return sock

    def release(self) -> None:
        self._released.set()


def capped(upstream: FakeUpstream, cap: int, per_client: int | None = None) -> Starlette:
    limits = {"max_client_connections": cap, "max_connections_per_client": per_client, "timeouts": {"headers": 5.0}}
    return create_app(settings(upstream.url, **limits), zipper_factory=bm25)


def idle(url: str, app: Starlette, source: str = "127.0.0.1") -> socket.socket:
    """A connection that sends nothing, once the proxy has counted it (so connections wait in the order made)."""
    metrics = app.state.proxy.metrics
    before = metrics.connections_open.value()
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10, source_address=(source, 0))
    wait_until(lambda: metrics.connections_open.value() == before + 1, "the connection counted")
    return sock


def arrived(sock: socket.socket, data: bytes) -> None:
    """Send ``data`` and return once the server's kernel has acknowledged all of it: it is in the receive queue of
    the server's socket (its loop, held, cannot have read it)."""
    sock.sendall(data)
    wait_until(lambda: kernel_queue(sock.fileno()) == 0, "the request acknowledged")


@pytest.fixture
def app(upstream: FakeUpstream, request: pytest.FixtureRequest) -> Starlette:
    return capped(upstream, *getattr(request, "param", (3,)))


@pytest.fixture
def held(app: Starlette) -> HeldLoop:
    return HeldLoop(app)


@pytest.fixture
def url(app: Starlette, held: HeldLoop) -> Iterator[str]:
    with live_server(app, http=held.protocol) as url:
        yield url


def test_with_nothing_sent_the_connection_waiting_longest_still_makes_room(
    url: str, app: Starlette, held: HeldLoop
) -> None:
    """The held loop alone changes nothing: the first connection, idle, is the one closed."""
    metrics = app.state.proxy.metrics
    with idle(url, app) as first, idle(url, app) as second, idle(url, app) as third:
        newcomer = held.connect(url)
        held.release()
        with newcomer:
            newcomer.sendall(HEALTHZ)
            assert Answers(newcomer).next()[0] == 200
            assert closed(first, 2), "the connection waiting longest is still open"
            assert not closed(second, 0.2)
            assert not closed(third, 0.2)
    assert closed_idle(app, "max_client_connections") == 1
    assert metrics.connections_refused.value("max_client_connections") == 0


@pytest.mark.parametrize("started", [False, True], ids=["whole-request-unread", "headers-begun-rest-unread"])
def test_a_connection_whose_request_has_come_unread_is_skipped_and_answered(
    url: str, app: Starlette, held: HeldLoop, started: bool
) -> None:
    """The first connection waits longest, but its request is in the kernel when the newcomer is counted in: the
    second, idle, is closed instead, and the first one's request answered. ``started``: part of its headers came
    earlier (the parser holds them, as it holds a slowloris's), the rest is unread."""
    metrics = app.state.proxy.metrics
    ask = request(CHAT, chat())
    with idle(url, app) as first, idle(url, app) as second, idle(url, app) as third:
        if started:
            first.sendall(ask[:20])
            wait_until(lambda: held.received[0] == 20, "the headers' start read")
        newcomer = held.connect(url)
        try:
            arrived(first, ask[20:] if started else ask)
        finally:
            held.release()
        with newcomer:
            status, headers = Answers(first).next()
            assert (status, headers["x-promptzip-status"]) == (200, "compressed")
            assert closed(second, 2), "the idle connection is still open"
            assert not closed(third, 0.2)
            newcomer.sendall(HEALTHZ)
            assert Answers(newcomer).next()[0] == 200
            first.sendall(HEALTHZ)  # still the same connection
            assert Answers(first).next()[0] == 200
            assert metrics.connections_open.value() == 3
    assert closed_idle(app, "max_client_connections") == 1
    assert metrics.connections_refused.value("max_client_connections") == 0


@pytest.mark.parametrize("app", [(2,)], indirect=True)
def test_when_every_waiting_connection_has_a_request_unread_the_newcomer_is_refused(
    url: str, app: Starlette, held: HeldLoop
) -> None:
    """None is truly idle, so none is closed: the newcomer gets the cap's 503, and both requests their answers."""
    metrics = app.state.proxy.metrics
    with idle(url, app) as first, idle(url, app) as second:
        newcomer = held.connect(url)
        try:
            arrived(first, HEALTHZ)
            arrived(second, request(CHAT, chat()))
        finally:
            held.release()
        with newcomer:
            newcomer.sendall(request(CHAT, chat()))
            status, headers, error = raw_answer(newcomer)
        assert (status, headers["retry-after"], headers["connection"]) == (503, "1", "close")
        assert error["error"]["code"] == "overloaded"
        assert "(max_client_connections), all busy" in error["error"]["message"]
        assert Answers(first).next()[0] == 200
        assert Answers(second).next()[0] == 200
        assert metrics.connections_open.value() == 2
    assert metrics.connections_refused.value("max_client_connections") == 1
    assert closed_idle(app, "max_client_connections") == 0


@pytest.mark.parametrize("app", [(4, 2)], indirect=True)
def test_under_a_per_client_cap_the_address_s_next_idle_connection_makes_room(
    url: str, app: Starlette, held: HeldLoop
) -> None:
    """127.0.0.2's connection waits longest and 127.0.0.1's first has a request unread: 127.0.0.1's second goes."""
    with contextlib.ExitStack() as closing:
        other = closing.enter_context(idle(url, app, "127.0.0.2"))
        mine = [closing.enter_context(idle(url, app)) for _ in range(2)]
        newcomer = closing.enter_context(held.connect(url))
        try:
            arrived(mine[0], HEALTHZ)
        finally:
            held.release()
        assert Answers(mine[0]).next()[0] == 200
        assert closed(mine[1], 2), "127.0.0.1's idle connection is still open"
        assert not closed(other, 0.2)
        newcomer.sendall(HEALTHZ)
        assert Answers(newcomer).next()[0] == 200
    assert closed_idle(app, "max_connections_per_client") == 1
    assert closed_idle(app, "max_client_connections") == 0
