"""A proxy no client can stall: each chunk of every request body must arrive within ``timeouts.write``, and the
whole body within ``timeouts.body`` plus a second per ``min_body_rate`` bytes (408 ``body_timeout``, and the
connection is closed), and the bodies held in memory, all requests together, are bounded by ``max_buffered_bytes``
(503 + ``retry-after``, code ``overloaded``) until they are sent upstream, each answered in its route's error
style. (Connections and request headers: ``test_proxy_connections``.)

Real sockets where the wire matters (uvicorn on 127.0.0.1 in front of :class:`FakeUpstream`); the choreographies of
several clients at once drive the ASGI app directly, each client's body handed over piece by piece, so what holds
what at each moment is known rather than timed. Sizes are small: the limits, not the megabytes, are under test.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import select
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from proxy_helpers import REPORT, bm25, raw_answer, settings
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.types import Message

from promptzip._errors import ConfigError
from promptzip.integrations.proxy import ProxySettings, create_app, load_settings
from promptzip.integrations.proxy._bodies import SMALL_BODY
from promptzip.integrations.proxy._budget import BodyBudget
from promptzip.integrations.proxy._cli import add_proxy_command
from promptzip.integrations.proxy._errors import Overloaded
from promptzip.integrations.proxy.testing import FakeUpstream, live_server

KiB, MiB = 1 << 10, 1 << 20
READ = 64 * KiB  # max_body_bytes of every proxy here
HELD = 3 * 60 * KiB + 12 * KiB  # max_buffered_bytes of the crowded ones: three 60 KiB bodies, and 12 KiB left
STALL = 1.0  # the live proxy's timeouts.write
CHAT, MESSAGES = "/v1/chat/completions", "/v1/messages"
# A route, whose API's style its errors take, and a content-type that route reads its body as.
ROUTES = [
    (CHAT, "openai", "application/json"),
    (MESSAGES, "anthropic", "application/json"),
    (MESSAGES + "/batches", "anthropic", "application/json"),
    ("/v1/files", "openai", "multipart/form-data; boundary=b"),
    ("/v1/embeddings", "openai", "application/json"),  # not compressed: read up to SMALL_BODY, else streamed
]


def chat(size: int) -> bytes:
    """A valid chat body (OpenAI's and Anthropic's alike) of about ``size`` bytes: the report, then a question."""
    context = (REPORT + " ") * (size // (len(REPORT) + 1) + 1)
    body = {
        "model": "gpt-4o",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": f"Context: {context[: max(0, size - 200)]}\nQuestion: Year 12?"}],
    }
    return json.dumps(body).encode()


def error_of(style: str, status: int, body: Any) -> tuple[str, str]:
    """(code or type, message) of an error answer in ``style``, checking its shape."""
    if style == "anthropic":
        assert set(body) == {"type", "error"}, body
        assert body["type"] == "error"
        return body["error"]["type"], body["error"]["message"]
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == ("server_error" if status >= 500 else "invalid_request_error")
    return body["error"]["code"], body["error"]["message"]


# ------------------------------------------------------------------------------------------------ over sockets
@pytest.fixture(scope="module")
def live_app(upstream: FakeUpstream) -> Starlette:
    limits = {"max_body_bytes": READ, "max_buffered_bytes": HELD, "timeouts": {"write": STALL}}
    return create_app(settings(upstream.url, **limits), zipper_factory=bm25)


@pytest.fixture(scope="module")
def proxy(live_app: Starlette) -> Iterator[str]:
    with live_server(live_app) as url:
        yield url


def connect(url: str, path: str, length: int | None, body: bytes = b"") -> socket.socket:
    """A connection on which a POST to ``path`` (``length``: its content-length, ``None``: chunked) and the first
    ``body`` bytes of it were sent."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    framing = f"content-length: {length}" if length is not None else "transfer-encoding: chunked"
    head = f"POST {path} HTTP/1.1\r\nhost: proxy\r\ncontent-type: application/json\r\n{framing}\r\n\r\n"
    sock.sendall(head.encode("latin-1") + body)
    return sock


answer = raw_answer  # the answer on a raw socket (proxy_helpers)


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline, f"not within 10 s: {what}"
        time.sleep(0.005)


@pytest.mark.parametrize(("path", "style"), [(CHAT, "openai"), (MESSAGES, "anthropic")])
def test_a_client_that_stalls_mid_body_gets_408_and_the_connection_is_closed(
    proxy: str, live_app: Starlette, upstream: FakeUpstream, path: str, style: str
) -> None:
    before = len(upstream.requests)
    body = chat(40 * KiB)
    started = time.monotonic()
    sock = connect(proxy, path, len(body), body[: len(body) // 2])  # then nothing more
    status, headers, error = answer(sock)
    assert time.monotonic() - started < 10
    assert (status, headers["connection"]) == (408, "close")
    code, message = error_of(style, status, error)
    assert code == ("body_timeout" if style == "openai" else "timeout_error")
    assert f"{STALL:g} s (timeouts.write)" in message
    assert len(upstream.requests) == before
    assert live_app.state.proxy.body_budget.held == 0
    with httpx.Client(base_url=proxy, timeout=30) as http:  # and the proxy serves on
        assert http.get("/healthz").json() == {"status": "ok"}
        r = http.post(path, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 200
        assert r.headers["x-promptzip-status"] == "compressed"
        assert 'promptzip_proxy_bodies_refused_total{limit="timeouts.write"}' in http.get("/metrics").text


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_client_that_trickles_its_body_within_the_limit_is_not_cut_off(
    proxy: str, upstream: FakeUpstream, declared: bool
) -> None:
    body = chat(30 * KiB)
    pieces = 6
    step = -(-len(body) // pieces)
    pause = STALL / 4  # each under the limit, all together well over it

    def trickle() -> Iterator[bytes]:
        for at in range(0, len(body), step):
            if at:
                time.sleep(pause)
            yield body[at : at + step]

    headers = {"content-type": "application/json", **({"content-length": str(len(body))} if declared else {})}
    started = time.monotonic()
    r = httpx.post(proxy + CHAT, content=trickle(), headers=headers, timeout=30)
    assert time.monotonic() - started > STALL
    assert r.status_code == 200
    assert r.headers["x-promptzip-status"] == "compressed"
    assert upstream.requests[-1].target == CHAT


def test_a_body_that_does_not_fit_max_buffered_bytes_is_refused_at_once_over_the_network(
    proxy: str, live_app: Starlette, upstream: FakeUpstream
) -> None:
    budget = live_app.state.proxy.body_budget
    length = 60 * KiB
    stalled = [connect(proxy, CHAT, length, b"{" * (length // 2)) for _ in range(3)]
    wait_until(lambda: budget.held == 3 * length, "three stalled bodies reserved")
    status, headers, error = answer(connect(proxy, CHAT, length))  # not one byte of its body sent
    assert (status, headers["retry-after"]) == (503, "1")
    assert headers.get("connection") != "close"
    code, message = error_of("openai", status, error)
    assert code == "overloaded"
    assert "(max_buffered_bytes)" in message
    for sock in stalled:
        status, headers, error = answer(sock)
        assert (status, headers["connection"], error["error"]["code"]) == (408, "close", "body_timeout")
    assert budget.held == 0
    body = chat(length)
    r = httpx.post(proxy + CHAT, content=body, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 200
    assert upstream.requests[-1].target == CHAT


TRICKLE = {"timeouts": {"write": 1.0, "body": 1.0}, "min_body_rate": 64 * KiB}  # 1 s, and 1 s more per 64 KiB


@pytest.mark.parametrize(
    ("path", "first"),
    [(CHAT, 0), ("/v1/embeddings", SMALL_BODY + KiB)],  # read whole; forwarded as it arrives, past its head
    ids=["read-whole", "forwarded"],
)
def test_a_client_that_trickles_a_body_past_timeouts_body_gets_408(
    upstream: FakeUpstream, path: str, first: int
) -> None:
    """A byte every few moments is never a silence of timeouts.write; the whole body's deadline still comes."""
    app = create_app(settings(upstream.url, max_body_bytes=READ, **TRICKLE), zipper_factory=bm25)
    before = len(upstream.requests)
    with live_server(app) as url:
        sock = connect(url, path, MiB if first else 40 * KiB, b"[" * first)  # its head earns 1 s more
        started = time.monotonic()
        while time.monotonic() - started < 10 and not select.select([sock], [], [], 0.25)[0]:
            sock.sendall(b"[" * 100)  # 400 bytes a second: each earns a few ms, each wait costs 250
        status, headers, error = answer(sock)
        waited = time.monotonic() - started
    assert (status, headers["connection"], error["error"]["code"]) == (408, "close", "body_timeout")
    assert 1.0 + first / (64 * KiB) - 0.3 < waited < 1.0 + first / (64 * KiB) + 1.5
    assert "1 s (timeouts.body) and 1 s per 65536 bytes received (min_body_rate)" in error["error"]["message"]
    metrics = app.state.proxy.metrics
    assert (metrics.bodies_refused.value("timeouts.body"), metrics.bodies_refused.value("timeouts.write")) == (1, 0)
    assert len(upstream.requests) == before  # a forwarded one was abandoned mid-body


def test_a_large_upload_that_keeps_its_pace_is_not_cut_off_by_timeouts_body(upstream: FakeUpstream) -> None:
    """1 MiB forwarded over 1.6 s, past timeouts.body (1 s) but well within its allowance (1 s + 16 s)."""
    app = create_app(settings(upstream.url, max_body_bytes=READ, **TRICKLE), zipper_factory=bm25)
    body = b"a" * MiB

    def paced() -> Iterator[bytes]:
        for at in range(0, len(body), 64 * KiB):
            time.sleep(0.1)
            yield body[at : at + 64 * KiB]

    with live_server(app) as url:
        headers = {"content-type": "application/octet-stream", "content-length": str(len(body))}
        started = time.monotonic()
        r = httpx.post(url + "/v1/audio/transcriptions", content=paced(), headers=headers, timeout=30)
    assert time.monotonic() - started > 1.5
    assert (r.status_code, r.json()["body_bytes"]) == (200, len(body))
    assert app.state.proxy.metrics.bodies_refused.value("timeouts.body") == 0


# ---------------------------------------------------------------------------------------------------- in-process
class Client:
    """One request to the app, its body handed over by the test piece by piece (:meth:`give`); until then the app
    waits for it, as it would for a stalled client. ``pulls`` counts the body messages the app took."""

    def __init__(self, app: Starlette, path: str, headers: dict[str, str]) -> None:
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.sent: list[Message] = []
        self.pulls = 0
        self.on_pull: Callable[[], None] = lambda: None
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 2),
        }
        self.task = asyncio.create_task(app(scope, self._receive, self._send))

    async def _receive(self) -> Message:
        message = await self.inbox.get()
        if message["type"] == "http.request":
            self.pulls += 1
            self.on_pull()
        return message

    async def _send(self, message: Message) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.inbox.put_nowait({"type": "http.disconnect"})  # what a server says once the answer is out

    def give(self, data: bytes, *, more: bool = True) -> None:
        self.inbox.put_nowait({"type": "http.request", "body": data, "more_body": more})

    def give_all(self, data: bytes, piece: int = 16 * KiB) -> None:
        for at in range(0, len(data), piece):
            self.give(data[at : at + piece], more=at + piece < len(data))

    def hang_up(self) -> None:
        self.inbox.put_nowait({"type": "http.disconnect"})

    async def answer(self) -> tuple[int, dict[str, str], Any]:
        await asyncio.wait_for(self.task, 10)
        start = self.sent[0]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in start["headers"]}
        return start["status"], headers, json.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))


async def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline, f"not within 10 s: {what}"
        await asyncio.sleep(0.001)


def run(app: Starlette, scenario: Callable[[Any], Awaitable[None]]) -> None:
    """Run ``scenario(proxy)`` inside the app's lifespan, on a fresh event loop."""

    async def main() -> None:
        proxy = app.state.proxy
        async with proxy.lifespan(app):
            await scenario(proxy)
        assert proxy.body_budget.held == 0  # every request gave its reservation back

    asyncio.run(main())


def json_headers(length: int | None, content_type: str = "application/json") -> dict[str, str]:
    framing = {"content-length": str(length)} if length is not None else {"transfer-encoding": "chunked"}
    return {"content-type": content_type, **framing}


def test_max_buffered_bytes_refuses_the_body_that_does_not_fit_and_is_given_back(upstream: FakeUpstream) -> None:
    limits = {"max_body_bytes": READ, "max_buffered_bytes": HELD, "timeouts": {"write": STALL}}
    app = create_app(settings(upstream.url, **limits), zipper_factory=bm25)
    length = 60 * KiB

    async def scenario(proxy: Any) -> None:
        budget = proxy.body_budget
        stalled = [Client(app, CHAT, json_headers(length)) for _ in range(3)]
        for client in stalled:
            client.give(b"{" * (length // 2))  # half, then nothing more
        await until(lambda: budget.held == 3 * length, "three stalled bodies reserved")

        fourth = Client(app, CHAT, json_headers(length))
        status, headers, error = await fourth.answer()
        assert (status, headers["retry-after"], error["error"]["code"]) == (503, "1", "overloaded")
        assert "(max_buffered_bytes)" in error["error"]["message"]
        assert fourth.pulls == 0  # refused from its declared length alone
        assert not any(client.task.done() for client in stalled)  # which still hold their reservations
        assert budget.held == 3 * length

        grower = Client(app, CHAT, json_headers(None))  # chunked: reserved as it grows
        for _ in range(4):
            grower.give(b"[" * (8 * KiB))  # the first fits the 12 KiB left, the second would pass the bound
        status, headers, error = await grower.answer()
        assert (status, headers["retry-after"], error["error"]["code"]) == (503, "1", "overloaded")
        assert grower.pulls == 2
        assert budget.held == 3 * length

        for client in stalled:
            status, headers, error = await client.answer()
            assert (status, headers["connection"], error["error"]["code"]) == (408, "close", "body_timeout")
        assert budget.held == 0

        fifth = Client(app, CHAT, json_headers(len(body := chat(length))))
        fifth.give_all(body)
        status, headers, _ = await fifth.answer()
        assert (status, headers["x-promptzip-status"]) == (200, "compressed")
        assert proxy.metrics.bodies_refused.value("max_buffered_bytes") == 2
        assert proxy.metrics.bodies_refused.value("timeouts.write") == 3

    run(app, scenario)


@pytest.mark.parametrize(("path", "style", "content_type"), ROUTES)
def test_every_route_refuses_a_body_that_does_not_fit_in_its_own_style(
    upstream: FakeUpstream, path: str, style: str, content_type: str
) -> None:
    app = create_app(settings(upstream.url, max_body_bytes=READ, max_buffered_bytes=READ), zipper_factory=bm25)

    async def scenario(proxy: Any) -> None:
        holder = Client(app, CHAT, json_headers(60 * KiB))
        await until(lambda: proxy.body_budget.held == 60 * KiB, "the first body reserved")
        refused = Client(app, path, json_headers(8 * KiB, content_type))
        status, headers, error = await refused.answer()
        assert (status, headers["retry-after"]) == (503, "1")
        code, message = error_of(style, status, error)
        assert code == ("overloaded" if style == "openai" else "overloaded_error")
        assert "(max_buffered_bytes)" in message
        holder.hang_up()
        status, _, error = await holder.answer()
        assert (status, error["error"]["code"]) == (400, "client_disconnected")

    run(app, scenario)


@pytest.mark.parametrize(("path", "style", "content_type"), ROUTES)
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_every_route_answers_a_stalled_body_408_in_its_own_style_and_closes(
    upstream: FakeUpstream, path: str, style: str, content_type: str, declared: bool
) -> None:
    stall = 0.2
    limits = {"max_body_bytes": READ, "timeouts": {"write": stall}}
    app = create_app(settings(upstream.url, **limits), zipper_factory=bm25)

    async def scenario(proxy: Any) -> None:
        client = Client(app, path, json_headers(40 * KiB if declared else None, content_type))
        client.give(b"{" * KiB)  # then nothing more
        status, headers, error = await client.answer()
        assert (status, headers["connection"]) == (408, "close")
        code, message = error_of(style, status, error)
        assert code == ("body_timeout" if style == "openai" else "timeout_error")
        assert f"{stall:g} s (timeouts.write)" in message
        assert proxy.metrics.bodies_refused.value("timeouts.write") == 1

    run(app, scenario)


def test_every_way_a_request_ends_gives_its_reservation_back(upstream: FakeUpstream) -> None:
    """With room for one body at a time, each next request only succeeds if the last gave back all it held."""
    limits = {"max_body_bytes": READ, "max_buffered_bytes": READ, "timeouts": {"write": 0.2}}
    app = create_app(settings(upstream.url, **limits), zipper_factory=bm25)
    body = chat(60 * KiB)

    async def scenario(proxy: Any) -> None:
        budget = proxy.body_budget

        async def ends(path: str, headers: dict[str, str], give: Callable[[Client], None]) -> int:
            client = Client(app, path, headers)
            give(client)
            status, _, _ = await client.answer()
            assert budget.held == 0, (path, status)
            return status

        assert await ends(CHAT, json_headers(len(body)), lambda c: c.give_all(body)) == 200
        assert await ends(CHAT, json_headers(None), lambda c: c.give_all(b"{" * (READ + KiB))) == 413
        assert await ends(CHAT, json_headers(5), lambda c: c.give(b"{oops", more=False)) == 400
        assert await ends(CHAT, json_headers(len(body)), lambda c: (c.give(body[:KiB]), c.hang_up())) == 400
        assert await ends(CHAT, json_headers(len(body)), lambda c: c.give(body[:KiB])) == 408
        disabled = {**json_headers(len(body)), "x-promptzip-disable": "1"}
        assert await ends(CHAT, disabled, lambda c: c.give_all(body)) == 200
        assert await ends(MESSAGES + "/batches", json_headers(2), lambda c: c.give(b"[]", more=False)) == 400
        upload = {**json_headers(len(body)), "content-type": "multipart/form-data; boundary=b"}
        assert await ends("/v1/files", upload, lambda c: c.give_all(body)) == 200  # an unreadable form: forwarded

    run(app, scenario)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_body_forwarded_as_it_arrives_holds_only_its_head(upstream: FakeUpstream, declared: bool) -> None:
    """A body larger than max_buffered_bytes goes through a route the proxy does not read: what it holds of the
    budget meanwhile is the part read before it is forwarded, never the body."""
    app = create_app(settings(upstream.url, max_body_bytes=READ, max_buffered_bytes=READ), zipper_factory=bm25)
    body = b"a" * (4 * READ)
    piece = 16 * KiB

    async def scenario(proxy: Any) -> None:
        held: list[int] = []
        client = Client(app, "/v1/audio/transcriptions", json_headers(len(body) if declared else None))
        client.on_pull = lambda: held.append(proxy.body_budget.held)
        client.give_all(body, piece)
        status, _, echoed = await client.answer()
        assert (status, echoed["body_bytes"]) == (200, len(body))
        assert max(held) <= (0 if declared else SMALL_BODY) < len(body)

    run(app, scenario)


def test_a_forwarded_body_is_given_back_once_sent_while_its_answer_streams_on() -> None:
    """Nothing keeps a body once it is sent (httpx included): its reservation is given back when the answer's
    headers are in, not when the answer ends."""
    with FakeUpstream(chunk_delay=0.1, chunks=4) as slow:
        app = create_app(settings(slow.url, max_body_bytes=READ, max_buffered_bytes=HELD), zipper_factory=bm25)
        body = json.dumps({**json.loads(chat(40 * KiB)), "stream": True}).encode()

        async def scenario(proxy: Any) -> None:
            client = Client(app, CHAT, json_headers(len(body)))
            client.give_all(body)
            await until(lambda: any(m["type"] == "http.response.start" for m in client.sent), "the answer started")
            start = dict(client.sent[0]["headers"])
            assert start[b"x-promptzip-status"] == b"compressed"
            forwarded = len(slow.requests[-1].body)
            assert 0 < forwarded < len(body)
            assert proxy.body_budget.held == 0  # while the answer streams on, 0.1 s a chunk
            await asyncio.wait_for(client.task, 10)
            assert client.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
            assert proxy.body_budget.held == 0

        run(app, scenario)


# ------------------------------------------------------------------------------------------------ the budget
def test_a_reservation_grows_to_cover_its_body_and_is_given_back_whole() -> None:
    budget = BodyBudget(100)
    with budget.reservation() as one, budget.reservation() as two:
        one.cover(60)
        one.cover(30)  # never shrinks while the body is held
        assert (one.size, budget.held) == (60, 60)
        with pytest.raises(Overloaded) as refused:
            two.cover(41)
        error = refused.value
        assert (error.status, error.retry_after, error.setting) == (503, 1, "max_buffered_bytes")
        assert (two.size, budget.held) == (0, 60)  # a refusal takes nothing
        two.cover(40)
        assert budget.held == 100
        one.release()
        assert (one.size, budget.held) == (0, 40)
    assert budget.held == 0

    def fail() -> None:
        with budget.reservation() as three:
            three.cover(100)
            raise RuntimeError("the handler failed")

    with pytest.raises(RuntimeError):
        fail()
    assert budget.held == 0

    with budget.reservation() as four:
        four.cover(100)
        four.release()
        four.release()  # idempotent
        assert budget.held == 0
    assert budget.held == 0


# ---------------------------------------------------------------------------------------------------- settings
def test_max_buffered_bytes_setting() -> None:
    default = ProxySettings(upstream="http://127.0.0.1:1/v1")
    assert default.max_buffered_bytes == 16 * default.max_body_bytes == 160 * MiB
    assert ProxySettings(upstream="http://127.0.0.1:1/v1", max_body_bytes=10, max_buffered_bytes=10).max_buffered_bytes
    with pytest.raises(ValidationError, match=r"max_buffered_bytes \(10\) must be at least max_body_bytes \(11\)"):
        ProxySettings(upstream="http://127.0.0.1:1/v1", max_body_bytes=11, max_buffered_bytes=10)
    with pytest.raises(ConfigError, match="max_buffered_bytes"):
        load_settings(upstream="http://127.0.0.1:1/v1", max_buffered_bytes=MiB)  # under the default max_body_bytes
    for bad in (0, -1):
        with pytest.raises(ConfigError, match="max_buffered_bytes"):
            load_settings(upstream="http://127.0.0.1:1/v1", max_body_bytes=1, max_buffered_bytes=bad)


@pytest.mark.parametrize(("flag", "expected"), [(None, 160 * MiB), ("4096", 4096)])
def test_cli_max_buffered_bytes(monkeypatch: pytest.MonkeyPatch, flag: str | None, expected: int) -> None:
    seen: list[ProxySettings] = []
    monkeypatch.setattr("promptzip.integrations.proxy._app.serve", lambda s, **kw: seen.append(s))
    parser = argparse.ArgumentParser()
    add_proxy_command(parser.add_subparsers())
    argv = ["proxy", "--no-warmup", "--upstream", "http://127.0.0.1:1/v1", "--max-body-bytes", "2048"]
    args = parser.parse_args(argv + (["--max-buffered-bytes", flag] if flag is not None else []))
    assert args.func(args, io.StringIO(), io.StringIO()) == 0
    assert (seen[0].max_body_bytes, seen[0].max_buffered_bytes) == (2048, expected)


def test_cli_refuses_a_max_buffered_bytes_under_max_body_bytes() -> None:
    parser = argparse.ArgumentParser()
    add_proxy_command(parser.add_subparsers())
    argv = ["proxy", "--no-warmup", "--upstream", "http://127.0.0.1:1/v1", "--max-body-bytes", "2048"]
    args = parser.parse_args([*argv, "--max-buffered-bytes", "1024"])
    with pytest.raises(ConfigError, match=r"max_buffered_bytes \(1024\) must be at least max_body_bytes \(2048\)"):
        args.func(args, io.StringIO(), io.StringIO())
