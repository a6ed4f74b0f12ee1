"""A proxy no client can stall with its connections: a request's headers must be complete within
``timeouts.headers`` of the connection's start or of the previous answer (408 ``header_timeout``, or closed when
nothing came), and at most ``max_client_connections`` connections are open: one more closes the connection that has
waited longest for a request to make room, or, when every open one is busy, gets 503 in its route's error style and
is closed; keep-alive, pipelining, slow bodies and long answers are untouched.

Raw sockets against uvicorn on 127.0.0.1 serving the proxy as ``serve()`` does (``live_server`` passes the same
guarded protocol), in front of :class:`FakeUpstream`. Timeouts are fractions of a second: the bounds, not the
minutes, are under test.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from proxy_helpers import REPORT, bm25, raw_answer, settings
from starlette.applications import Starlette

from promptzip.integrations.proxy import ProxySettings, create_app
from promptzip.integrations.proxy._cli import add_proxy_command
from promptzip.integrations.proxy._connections import REFUSED_WAIT_S, GuardedH11
from promptzip.integrations.proxy.testing import FakeUpstream, live_server

HEADERS = 0.5  # the live proxy's timeouts.headers
CAP = 3  # its max_client_connections
CHAT, MESSAGES = "/v1/chat/completions", "/v1/messages"


@pytest.fixture(scope="module")
def app(upstream: FakeUpstream) -> Starlette:
    limits = {"max_client_connections": CAP, "timeouts": {"headers": HEADERS, "write": 2.0}}
    return create_app(settings(upstream.url, **limits), zipper_factory=bm25)


@pytest.fixture(scope="module")
def proxy(app: Starlette) -> Iterator[str]:
    with live_server(app) as url:
        yield url


@pytest.fixture(autouse=True)
def all_closed(app: Starlette) -> Iterator[None]:
    """Each test starts and ends with no connection open, so the cap counts only its own."""
    metrics = app.state.proxy.metrics
    wait_until(lambda: metrics.connections_open.value() == 0, "no connection open")
    yield
    wait_until(lambda: metrics.connections_open.value() == 0, "the test's connections closed")


def wait_until(check: Callable[[], bool], what: str, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        time.sleep(0.005)


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def request(path: str, body: bytes = b"", method: str = "POST") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nhost: proxy\r\ncontent-type: application/json\r\n"
    return (head + f"content-length: {len(body)}\r\n\r\n").encode("latin-1") + body


def closed(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` within ``within`` seconds, sending nothing (what it sends is read)."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        if select.select([sock], [], [], left)[0]:
            try:
                return sock.recv(65536) == b""
            except ConnectionResetError:
                return True
    return False


def chat(size: int = 4000) -> bytes:
    context = (REPORT + " ") * (size // len(REPORT) + 1)
    content = f"Context: {context[:size]}\nQuestion: Year 12?"
    return json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}).encode()


class Answers:
    """The answers, each with a content-length, on a connection that stays open (pipelined ones included)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.data = sock, b""

    def _more(self) -> None:
        more = self.sock.recv(65536)
        assert more, "closed before an answer"
        self.data += more

    def next(self) -> tuple[int, dict[str, str]]:
        while b"\r\n\r\n" not in self.data:
            self._more()
        head, _, self.data = self.data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        while len(self.data) < int(headers["content-length"]):
            self._more()
        self.data = self.data[int(headers["content-length"]) :]
        return int(lines[0].split(" ", 2)[1]), headers


def refused(app: Starlette, limit: str) -> float:
    return float(app.state.proxy.metrics.connections_refused.value(limit))


# ------------------------------------------------------------------------------------------------- headers
def test_a_client_that_trickles_its_headers_gets_408_and_is_closed(proxy: str, app: Starlette) -> None:
    before = refused(app, "timeouts.headers")
    sock = connect(proxy)
    started = time.monotonic()
    head = f"POST {CHAT} HTTP/1.1\r\nhost: proxy\r\n" + "x-slow: " + "a" * 200
    answered = False
    for byte in head.encode():  # a byte every 50 ms: never silent, never done (for 10 s at most)
        if select.select([sock], [], [], 0.05)[0]:
            answered = True
            break
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            break
    assert answered, "the proxy still waits for the headers after 10 s"
    status, headers, error = raw_answer(sock)
    assert HEADERS - 0.05 <= time.monotonic() - started < HEADERS + 2
    assert (status, headers["connection"]) == (408, "close")
    assert error["error"]["code"] == "header_timeout"
    assert error["error"]["type"] == "invalid_request_error"
    assert f"{HEADERS:g} s (timeouts.headers)" in error["error"]["message"]
    assert refused(app, "timeouts.headers") == before + 1


def test_a_connection_that_sends_nothing_is_closed(proxy: str, app: Starlette) -> None:
    before = refused(app, "timeouts.headers")
    with connect(proxy) as sock:
        started = time.monotonic()
        assert closed(sock, 10), "an idle connection is still open after 10 s"
        assert HEADERS - 0.05 <= time.monotonic() - started < HEADERS + 2
    assert refused(app, "timeouts.headers") == before + 1


def test_keep_alive_pipelining_slow_bodies_and_long_answers_are_untouched(
    proxy: str, app: Starlette, upstream: FakeUpstream
) -> None:
    before = refused(app, "timeouts.headers")
    with connect(proxy) as sock:
        answers = Answers(sock)
        for _ in range(3):  # each sent just under the bound after the last answer: 3 of them, well past it
            time.sleep(HEADERS * 0.6)
            sock.sendall(request("/healthz", method="GET"))
            assert answers.next()[0] == 200
        sock.sendall(request("/healthz", method="GET") * 3)  # pipelined: three requests in one write
        assert [answers.next()[0] for _ in range(3)] == [200] * 3
        body = chat()
        sock.sendall(request(CHAT, body)[: -len(body)])  # the headers, then the body over twice the bound
        for at in range(0, len(body), len(body) // 4 + 1):
            time.sleep(HEADERS / 2)
            sock.sendall(body[at : at + len(body) // 4 + 1])
        status, headers = answers.next()
        assert (status, headers["x-promptzip-status"]) == (200, "compressed")
        slow = request("/v1/models", method="GET").replace(b"\r\n\r\n", b"\r\nx-fake-mode: slow:1.0\r\n\r\n")
        sock.sendall(slow)  # an answer that takes twice the bound
        assert answers.next()[0] == 200
        sock.sendall(request("/healthz", method="GET"))  # and the connection is still the same one
        assert answers.next()[0] == 200
    assert refused(app, "timeouts.headers") == before


def test_a_body_the_proxy_did_not_read_is_not_drained_forever(proxy: str, app: Starlette) -> None:
    """Answered 413 on its declared length, the body's rest would be read by the server for as long as it comes."""
    too_large = 64 << 20  # the proxy's default max_body_bytes is 10 MiB
    with connect(proxy) as sock:
        sock.sendall(f"POST {CHAT} HTTP/1.1\r\nhost: proxy\r\ncontent-length: {too_large}\r\n\r\n".encode())
        assert Answers(sock).next()[0] == 413
        started = time.monotonic()
        while time.monotonic() - started < 10:  # then the body, slowly
            if select.select([sock], [], [], 0.05)[0]:
                break
            try:
                sock.sendall(b"{" * 64)
            except OSError:
                break
        assert closed(sock, 0.5), "the proxy still drains the body after 10 s"
        assert time.monotonic() - started < HEADERS + 2


# ----------------------------------------------------------------------------------------------- answers
SEND = 1.0  # timeouts.send of the apps below


@contextlib.contextmanager
def streaming(size: int, send: float = SEND) -> Iterator[tuple[Starlette, str]]:
    """A proxy app (``timeouts.send``: ``send``) and its URL, in front of an upstream whose streamed chat answers are
    ``size`` SSE chunks long."""
    with FakeUpstream(chunks=size, record=False) as upstream:
        app = create_app(settings(upstream.url, timeouts={"send": send}), zipper_factory=bm25)
        with live_server(app) as url:
            yield app, url


def ask_stream(url: str) -> socket.socket:
    """A raw connection with a small receive buffer that asks for a streamed chat answer."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: it sets the window
    sock.settimeout(10)
    sock.connect((host, int(port)))
    body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "Tell me a long story?"}]}
    sock.sendall(request(CHAT, json.dumps(body).encode()))
    return sock


def test_a_client_that_stops_taking_its_answer_is_dropped_and_its_upstream_connection_freed() -> None:
    """A client that asks for a long streamed answer and reads none of it would hold the relay, and the upstream
    connection it reads from, for ever: once nothing has moved for timeouts.send, its connection is dropped."""
    with streaming(50_000) as (app, url), ask_stream(url) as sock:  # MBs: more than the buffers between them hold
        metrics = app.state.proxy.metrics
        in_flight(app, 1)
        started = time.monotonic()
        wait_until(lambda: metrics.connections_refused.value("timeouts.send") == 1, "the stalled client dropped", 20)
        assert time.monotonic() - started >= SEND - 0.05
        in_flight(app, 0)  # the relay ended, and with it the upstream request
        taken = 0
        with contextlib.suppress(ConnectionResetError):
            while more := sock.recv(1 << 20):
                taken += len(more)
        assert 0 < taken < 4 << 20  # what the buffers held, then the end: never the whole answer
        with connect(url) as other:  # and the proxy serves on
            other.sendall(request("/healthz", method="GET"))
            assert Answers(other).next()[0] == 200


def test_a_client_that_takes_its_answer_in_bursts_is_never_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read two megabytes at a time, then nothing for up to 3 s, under a timeouts.send of 8 s: the answer fills the
    proxy's buffers (its writes pause: counted by a spy on the real protocol), and arrives whole. (The clock
    restarts when the proxy can write again, once the client has taken enough to make room: a burst's worth.) In a
    long test session the fake upstream, in this process, can take more than a second to fill the buffers."""
    pauses = []
    real = GuardedH11.pause_writing
    monkeypatch.setattr(GuardedH11, "pause_writing", lambda self: (pauses.append(1), real(self))[1])
    with streaming(50_000, send=8.0) as (app, url), ask_stream(url) as sock:
        metrics = app.state.proxy.metrics
        data, burst = b"", 0
        while not data.endswith(b"0\r\n\r\n"):
            more = sock.recv(1 << 20)
            assert more, "closed before the answer's end"
            data, burst = data + more, burst + len(more)
            if burst >= 2 << 20:  # then leave the rest until the proxy's writes pause, or for 3 s
                burst, paused, deadline = 0, len(pauses), time.monotonic() + 3.0
                while len(pauses) == paused and time.monotonic() < deadline:
                    time.sleep(0.01)
        assert b"data: [DONE]" in data
        assert pauses  # the buffers filled while it slept
        assert metrics.connections_refused.value("timeouts.send") == 0


# ------------------------------------------------------------------------------------------------ the cap
BUSY_S = 3.0  # how long a busy connection's request takes (the fake upstream answers it that late)


def busy(url: str, source: str = "127.0.0.1") -> socket.socket:
    """A connection whose request is on its way (the upstream answers it after BUSY_S): not one to close for room."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10, source_address=(source, 0))
    slow = request("/v1/models", method="GET").replace(b"\r\n\r\n", f"\r\nx-fake-mode: slow:{BUSY_S}\r\n\r\n".encode())
    sock.sendall(slow)
    return sock


def capped(upstream: FakeUpstream, cap: int, per_client: int | None = None) -> Starlette:
    """An app of its own with a cap, and a header timeout long enough that no waiting connection times out first."""
    limits = {"max_client_connections": cap, "max_connections_per_client": per_client, "timeouts": {"headers": 5.0}}
    return create_app(settings(upstream.url, **limits), zipper_factory=bm25)


def closed_idle(app: Starlette, limit: str) -> float:
    return float(app.state.proxy.metrics.connections_closed_idle.value(limit))


def in_flight(app: Starlette, n: int) -> None:
    wait_until(lambda: app.state.proxy.metrics.in_flight.value() == n, f"{n} requests in flight")


@pytest.mark.parametrize(
    ("path", "kind", "code"), [(CHAT, "server_error", "overloaded"), (MESSAGES, "overloaded_error", None)]
)
def test_a_connection_past_a_cap_of_busy_ones_gets_503_in_its_route_style_and_is_closed(
    proxy: str, app: Starlette, path: str, kind: str, code: str | None
) -> None:
    metrics = app.state.proxy.metrics
    before = refused(app, "max_client_connections")
    held = [busy(proxy) for _ in range(CAP)]
    try:
        in_flight(app, CAP)
        extra = connect(proxy)
        extra.sendall(request(path, chat()))
        status, headers, error = raw_answer(extra)
        assert (status, headers["retry-after"], headers["connection"]) == (503, "1", "close")
        assert error["error"]["type"] == kind
        if code is not None:
            assert error["error"]["code"] == code
        assert "(max_client_connections), all busy" in error["error"]["message"]
        assert refused(app, "max_client_connections") == before + 1
        assert closed_idle(app, "max_client_connections") == 0
        assert metrics.connections_open.value() == CAP  # the refused one never counted
        assert [Answers(sock).next()[0] for sock in held] == [200] * CAP  # the busy ones were never cut
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: metrics.connections_open.value() == 0, "the held connections closed")
    with connect(proxy) as sock:  # room again
        sock.sendall(request("/healthz", method="GET"))
        assert Answers(sock).next()[0] == 200


def test_past_the_cap_the_probes_are_still_answered_and_their_connections_closed(proxy: str, app: Starlette) -> None:
    """A liveness probe must not find a proxy that sheds connections dead, nor monitoring go blind meanwhile."""
    metrics = app.state.proxy.metrics
    before = refused(app, "max_client_connections")
    held = [busy(proxy) for _ in range(CAP)]
    try:
        in_flight(app, CAP)
        for path in ("/healthz", "/metrics"):
            with connect(proxy) as extra:
                extra.sendall(request(path, method="GET"))
                status, headers = Answers(extra).next()
                assert (status, headers["connection"]) == (200, "close")
                assert closed(extra, 2)
        assert refused(app, "max_client_connections") == before + 2  # still counted as refused connections
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: metrics.connections_open.value() == 0, "the held connections closed")


def test_at_the_cap_the_connection_that_has_waited_longest_for_a_request_makes_room(upstream: FakeUpstream) -> None:
    """Connections that hold a slot without a request in progress cannot keep a client out: the one waiting longest
    (since it opened, or since its last answer: not the oldest connection) is closed, and the new one answered."""
    app = capped(upstream, 3)
    metrics = app.state.proxy.metrics
    with live_server(app) as url, connect(url) as first, connect(url) as second, connect(url) as third:
        wait_until(lambda: metrics.connections_open.value() == 3, "three connections open")
        first.sendall(request("/healthz", method="GET"))  # first now waits since this answer: second waits longest
        assert Answers(first).next()[0] == 200
        with connect(url) as newcomer:
            newcomer.sendall(request(CHAT, chat()))
            status, headers = Answers(newcomer).next()
            assert (status, headers["x-promptzip-status"]) == (200, "compressed")
            assert closed(second, 2), "the connection waiting longest is still open"
            assert not closed(first, 0.2)
            assert not closed(third, 0.2)
            assert metrics.connections_open.value() == 3
        assert closed_idle(app, "max_client_connections") == 1
        assert metrics.connections_refused.value("max_client_connections") == 0
        first.sendall(request("/healthz", method="GET"))  # the others still serve
        assert Answers(first).next()[0] == 200


def test_an_sdk_whose_idle_keep_alive_connection_made_room_just_connects_again(upstream: FakeUpstream) -> None:
    """The real ``openai`` client, retries off: its pooled connection, idle since its answer, is closed to make room
    for another client; its next call finds the connection closed, opens a new one, and gets its answer."""
    openai = pytest.importorskip("openai")
    app = capped(upstream, 2)
    metrics = app.state.proxy.metrics
    with live_server(app) as url, openai.OpenAI(base_url=url + "/v1", api_key="sk-test", max_retries=0) as client:
        ask = {"model": "gpt-4o", "messages": [{"role": "user", "content": "What is the capital of France?"}]}
        assert client.chat.completions.create(**ask).choices
        with connect(url) as other:
            wait_until(lambda: metrics.connections_open.value() == 2, "the SDK's and another connection open")
            with connect(url) as newcomer:  # the SDK's connection has waited longest: since its answer
                wait_until(lambda: closed_idle(app, "max_client_connections") == 1, "the SDK's connection closed")
                assert not closed(other, 0.5)  # meanwhile the close reaches the SDK's socket (on the loop's next turn)
                assert client.chat.completions.create(**ask).choices  # a new connection: closes `other` for room
                assert closed(other, 2)
                newcomer.sendall(request("/healthz", method="GET"))
                assert Answers(newcomer).next()[0] == 200
        assert metrics.connections_refused.value("max_client_connections") == 0


def test_a_slowloris_closed_to_make_room_is_told_so_and_busy_ones_are_skipped(upstream: FakeUpstream) -> None:
    """A connection that sent part of a request's headers gets 503 overloaded before it is closed for room; a
    connection whose request is on its way is never the one closed, even when it opened first."""
    app = capped(upstream, 2)
    with live_server(app) as url, contextlib.ExitStack() as closing:
        working = closing.enter_context(busy(url))
        in_flight(app, 1)
        slow = closing.enter_context(connect(url))
        slow.sendall(f"POST {CHAT} HTTP/1.1\r\nhost: proxy\r\nx-slow: aaa".encode())
        time.sleep(0.1)
        with connect(url) as newcomer:
            status, headers, error = raw_answer(slow)
            assert (status, headers["retry-after"], headers["connection"]) == (503, "1", "close")
            assert error["error"]["code"] == "overloaded"
            newcomer.sendall(request("/healthz", method="GET"))
            assert Answers(newcomer).next()[0] == 200
        assert Answers(working).next()[0] == 200
        assert closed_idle(app, "max_client_connections") == 1


def test_one_address_cannot_take_every_slot_under_a_per_client_cap(upstream: FakeUpstream) -> None:
    """Two busy connections from 127.0.0.1 fill its share; one from 127.0.0.2 (another address on the loopback) still
    gets in under the overall cap, and 127.0.0.1 gets in again once one of its own closes."""
    app = capped(upstream, 4, per_client=2)
    metrics = app.state.proxy.metrics
    with live_server(app) as url, contextlib.ExitStack() as closing:
        host, port = url.removeprefix("http://").split(":")
        mine = [closing.enter_context(busy(url)) for _ in range(2)]
        in_flight(app, 2)
        with connect(url) as third:
            third.sendall(request(CHAT, chat()))
            status, headers, error = raw_answer(third)
        assert (status, headers["retry-after"], headers["connection"]) == (503, "1", "close")
        assert "(max_connections_per_client)" in error["error"]["message"]
        assert metrics.connections_refused.value("max_connections_per_client") == 1
        assert metrics.connections_refused.value("max_client_connections") == 0
        with socket.create_connection((host, int(port)), timeout=10, source_address=("127.0.0.2", 0)) as other:
            other.sendall(request("/healthz", method="GET"))
            assert Answers(other).next()[0] == 200
            assert metrics.connections_open.value() == 3  # admitted: another address
        mine[0].close()
        wait_until(lambda: metrics.connections_open.value() == 1, "one of 127.0.0.1's closed")
        with connect(url) as again:
            again.sendall(request("/healthz", method="GET"))
            assert Answers(again).next()[0] == 200


def test_under_a_per_client_cap_only_the_address_s_own_waiting_connection_makes_room(upstream: FakeUpstream) -> None:
    """127.0.0.2's connection waits longest, but 127.0.0.1 at its share closes one of its own."""
    app = capped(upstream, 4, per_client=2)
    metrics = app.state.proxy.metrics
    with live_server(app) as url, contextlib.ExitStack() as closing:
        host, port = url.removeprefix("http://").split(":")
        other = closing.enter_context(socket.create_connection((host, int(port)), 10, ("127.0.0.2", 0)))
        mine = [closing.enter_context(connect(url)) for _ in range(2)]
        wait_until(lambda: metrics.connections_open.value() == 3, "three connections open")
        with connect(url) as newcomer:
            newcomer.sendall(request("/healthz", method="GET"))
            assert Answers(newcomer).next()[0] == 200
            assert closed(mine[0], 2), "127.0.0.1's connection waiting longest is still open"
            assert not closed(other, 0.2)
            assert not closed(mine[1], 0.2)
        assert closed_idle(app, "max_connections_per_client") == 1
        assert closed_idle(app, "max_client_connections") == 0


def test_a_refused_connection_that_sends_nothing_is_closed_at_once(upstream: FakeUpstream) -> None:
    """Refused connections are not counted, so none may linger: each waits for its request REFUSED_WAIT_S only."""
    app = capped(upstream, 1)
    metrics = app.state.proxy.metrics
    with live_server(app) as url, busy(url):
        in_flight(app, 1)
        with connect(url) as extra:
            started = time.monotonic()
            assert closed(extra, 5)
            assert time.monotonic() - started < REFUSED_WAIT_S + 1 < BUSY_S
        assert metrics.connections_refused.value("max_client_connections") == 1
        assert metrics.connections_refused.value("timeouts.headers") == 0


# ------------------------------------------------------------------------------------------- wiring, settings
def test_serve_runs_uvicorn_with_the_guarded_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from promptzip.integrations.proxy import serve

    configs: list[Any] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: configs.append(self.config))
    serve(ProxySettings(upstream="http://127.0.0.1:1/v1", max_client_connections=7, timeouts={"headers": 3.0}))
    (config,) = configs
    assert issubclass(config.http, GuardedH11)
    assert (config.http.guard.limit, config.http.guard.headers_s, config.ws) == (7, 3.0, "none")


def test_serve_raises_the_open_files_limit_to_fit_the_cap() -> None:
    script = """
import resource
from promptzip.integrations.proxy import ProxySettings
from promptzip.integrations.proxy._connections import raise_descriptor_limit
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
settings = ProxySettings(upstream="http://127.0.0.1:1/v1", max_client_connections=1000, max_connections=100)
print(raise_descriptor_limit(settings), resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)
"""
    out = subprocess.run(
        [sys.executable, "-P", "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    returned, soft, hard = (int(v) for v in out)
    expected = 1000 + 100 + 64 if hard < 0 or hard >= 1164 else hard  # hard < 0: RLIM_INFINITY
    assert returned == soft == expected


def test_connection_settings() -> None:
    default = ProxySettings(upstream="http://127.0.0.1:1/v1")
    assert (default.max_client_connections, default.timeouts.headers, default.timeouts.send) == (1024, 10.0, 60.0)
    assert default.max_connections_per_client is None  # off: behind a load balancer every client has its address
    assert ProxySettings(upstream="http://127.0.0.1:1/v1", max_client_connections=None).max_client_connections is None
    bads = [{"max_client_connections": 0}, {"max_connections_per_client": 0}, {"timeouts": {"headers": 0}}]
    for bad in [*bads, {"timeouts": {"send": 0}}]:
        with pytest.raises(ValueError, match=r"max_client_connections|max_connections_per_client|headers|send"):
            ProxySettings(upstream="http://127.0.0.1:1/v1", **bad)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], (1024, 10.0, 300.0, 16384, None)),
        (["--max-client-connections", "64", "--header-timeout", "2.5"], (64, 2.5, 300.0, 16384, None)),
        (
            ["--max-client-connections", "none", "--body-timeout", "60", "--min-body-rate", "1024"],
            (None, 10, 60, 1024, None),
        ),
        (["--max-connections-per-client", "16"], (1024, 10.0, 300.0, 16384, 16)),
        (["--max-connections-per-client", "none"], (1024, 10.0, 300.0, 16384, None)),
        (["--send-timeout", "30"], (1024, 10.0, 300.0, 16384, None, 30.0)),
        (["--min-send-rate", "4096"], (1024, 10.0, 300.0, 16384, None, 60.0, 4096)),
    ],
)
def test_cli_connection_and_body_time_flags(
    monkeypatch: pytest.MonkeyPatch, flags: list[str], expected: tuple[Any, ...]
) -> None:
    seen: list[ProxySettings] = []
    monkeypatch.setattr("promptzip.integrations.proxy._app.serve", lambda s, **kw: seen.append(s))
    parser = argparse.ArgumentParser()
    add_proxy_command(parser.add_subparsers())
    args = parser.parse_args(["proxy", "--no-warmup", "--upstream", "http://127.0.0.1:1/v1", *flags])
    assert args.func(args, io.StringIO(), io.StringIO()) == 0
    s = seen[0]
    got = (s.max_client_connections, s.timeouts.headers, s.timeouts.body, s.min_body_rate, s.max_connections_per_client)
    assert got == expected[:5]
    assert s.timeouts.send == (expected[5] if len(expected) > 5 else 60.0)
    assert s.min_send_rate == (expected[6] if len(expected) > 6 else 512)
