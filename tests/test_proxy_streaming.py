"""Bodies the proxy does not read: sent to the upstream as they arrive, never held whole, bounded by
``max_forward_bytes``, abandoned when the client stalls or leaves; and a ``/v1/files`` upload too large to read,
forwarded unread instead of refused.

A real uvicorn server on 127.0.0.1 serves the proxy in front of :class:`FakeUpstream` (a real HTTP server that
records each request it receives whole); that a body is not buffered is shown in-process, against an upstream in
the proxy's own event loop that counts what it has been sent. Sizes are small (the proxy here reads at most 1 MiB
and forwards at most 4 MiB unread): the limits, not the megabytes, are under test.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import socket
from collections.abc import Iterator

import httpx
import pytest
from proxy_helpers import REPORT, bm25, raw_answer, settings
from starlette.types import Message

from promptzip._errors import ConfigError
from promptzip.integrations.proxy import ProxySettings, create_app, load_settings
from promptzip.integrations.proxy._bodies import SMALL_BODY
from promptzip.integrations.proxy._cli import add_proxy_command
from promptzip.integrations.proxy.testing import FakeUpstream, live_server

MiB = 1 << 20
READ, FORWARD = MiB, 4 * MiB  # the live proxy's max_body_bytes and max_forward_bytes
STALL = 0.5  # its timeouts.write: how long it waits for a chunk of a body it is forwarding


@pytest.fixture(scope="module")
def proxy(upstream: FakeUpstream) -> Iterator[str]:
    limits = {"max_body_bytes": READ, "max_forward_bytes": FORWARD, "timeouts": {"write": STALL}}
    with live_server(create_app(settings(upstream.url, **limits), zipper_factory=bm25)) as url:
        yield url


def pattern(size: int) -> bytes:
    """``size`` bytes in which no 256-byte run repeats at a shifted place: a lost or moved chunk shows."""
    return (bytes(range(256)) * (size // 256 + 1))[:size]


def chunked(data: bytes, size: int = 65536) -> Iterator[bytes]:
    """``data`` as a generator, which httpx sends chunked (no content-length)."""
    for at in range(0, len(data), size):
        yield data[at : at + size]


def multipart(fields: dict[str, str], file: tuple[str, bytes, str]) -> httpx.Request:
    return httpx.Request("POST", "http://proxy.invalid/", data=fields, files={"file": file})


def raw(url: str, head: str, body: bytes = b"") -> socket.socket:
    """A connection to the proxy on which ``head`` (a request line and headers) and ``body`` were sent."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body)
    return sock


# ------------------------------------------------------------------------------------------ streamed through
def test_an_audio_file_larger_than_the_proxy_reads_arrives_byte_for_byte(proxy: str, upstream: FakeUpstream) -> None:
    audio = pattern(3 * MiB)  # over max_body_bytes, which a route the proxy does not read is not held to
    request = multipart({"model": "whisper-1"}, ("talk.mp3", audio, "audio/mpeg"))
    body = request.read()
    headers = {"content-type": request.headers["content-type"]}
    r = httpx.post(proxy + "/v1/audio/transcriptions?x=1", content=body, headers=headers, timeout=60)
    assert r.status_code == 200
    assert r.json() == {"method": "POST", "target": "/v1/audio/transcriptions?x=1", "body_bytes": len(body)}
    sent = upstream.requests[-1]
    assert sent.body == body
    assert sent.header("content-length") == str(len(body))  # the client's length, not chunked
    assert sent.header("transfer-encoding") is None
    assert sent.header("content-type") == request.headers["content-type"]


def test_a_chunked_upload_part_goes_upstream_chunked(proxy: str, upstream: FakeUpstream) -> None:
    part = pattern(2 * MiB + 7)
    r = httpx.post(proxy + "/v1/uploads/upload_1/parts", content=chunked(part), timeout=60)
    assert r.status_code == 200
    sent = upstream.requests[-1]
    assert (sent.target, sent.body) == ("/v1/uploads/upload_1/parts", part)
    assert sent.header("transfer-encoding") == "chunked"
    assert sent.header("content-length") is None


def test_small_and_body_less_requests_go_as_before(proxy: str, upstream: FakeUpstream) -> None:
    with httpx.Client(base_url=proxy, timeout=30) as http:
        for method in ("GET", "DELETE"):
            assert http.request(method, "/v1/files/file-1").status_code == 200
            sent = upstream.requests[-1]
            assert (sent.method, sent.body) == (method, b"")
            assert sent.header("content-length") is None
            assert sent.header("transfer-encoding") is None
        small = b'{"model": "e", "input": "hi"}'
        assert http.post("/v1/embeddings", content=chunked(small, 5)).status_code == 200
        sent = upstream.requests[-1]
        assert sent.body == small
        assert sent.header("content-length") == str(len(small))  # read whole: sent with its length, as before
        assert sent.header("transfer-encoding") is None


class _CountingUpstream(httpx.AsyncBaseTransport):
    """An upstream in the proxy's own event loop: it reads each request's body as httpx sends it."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.headers = httpx.Headers()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        self.headers = request.headers
        async for chunk in request.stream:
            self.received += chunk
        return httpx.Response(200, json={"received": len(self.received)})


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize("max_forward_bytes", [FORWARD, None])
def test_a_body_is_sent_upstream_while_it_arrives_never_held_whole(
    declared: bool, max_forward_bytes: int | None
) -> None:
    """Each time the proxy asks the client for more, the upstream already has nearly all it was given: the proxy
    holds at most the small part it reads before it connects, and one chunk, never the body."""
    body = pattern(2 * MiB)
    chunk = 16 << 10
    upstream = _CountingUpstream()
    app = create_app(
        settings("http://upstream.invalid/v1", max_body_bytes=READ, max_forward_bytes=max_forward_bytes),
        zipper_factory=bm25,
        transport=upstream,
    )
    pulled = 0
    held: list[int] = []  # at each pull: what the proxy had from the client and had not sent upstream
    answered = asyncio.Event()
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal pulled
        if pulled == len(body):  # all given: the next thing a client does is hang up, once answered
            await answered.wait()
            return {"type": "http.disconnect"}
        held.append(pulled - len(upstream.received))
        part = body[pulled : pulled + chunk]
        pulled += len(part)
        return {"type": "http.request", "body": part, "more_body": pulled < len(body)}

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            answered.set()

    length = [(b"content-length", str(len(body)).encode())] if declared else [(b"transfer-encoding", b"chunked")]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "path": "/v1/audio/transcriptions",
        "raw_path": b"/v1/audio/transcriptions",
        "query_string": b"",
        "headers": [(b"content-type", b"application/octet-stream"), *length],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }

    async def run() -> None:
        async with app.state.proxy.lifespan(app):
            await app(scope, receive, send)

    asyncio.run(run())
    assert sent[0]["status"] == 200
    assert json.loads(b"".join(m.get("body", b"") for m in sent[1:])) == {"received": len(body)}
    assert upstream.received == body
    assert upstream.headers.get("content-length") == (str(len(body)) if declared else None)
    assert max(held) <= (0 if declared else SMALL_BODY) + chunk < len(body) // 8


# -------------------------------------------------------------------------------------------------- limits
def test_a_declared_length_over_max_forward_bytes_is_refused_before_anything_is_sent(
    proxy: str, upstream: FakeUpstream
) -> None:
    before = len(upstream.requests)
    head = f"POST /v1/audio/transcriptions HTTP/1.1\nhost: proxy\ncontent-length: {FORWARD + 1}\n"
    status, _, error = raw_answer(raw(proxy, head))  # no byte of the body sent: the length alone decides
    assert (status, error["error"]["code"]) == (413, "body_too_large")
    assert f"{FORWARD} bytes (max_forward_bytes)" in error["error"]["message"]
    assert len(upstream.requests) == before


def test_a_chunked_body_past_max_forward_bytes_is_cut_off(proxy: str, upstream: FakeUpstream) -> None:
    before = len(upstream.requests)
    with httpx.Client(timeout=60) as http:
        try:
            r = http.post(proxy + "/v1/embeddings", content=chunked(pattern(FORWARD + MiB)))
        except httpx.TransportError:
            pass  # the proxy may close before the client has written the rest
        else:
            assert r.status_code == 413
            assert r.json()["error"]["code"] == "body_too_large"
            assert "(max_forward_bytes)" in r.json()["error"]["message"]
        assert len(upstream.requests) == before  # the upstream saw an unfinished request, which it dropped
        assert http.get(proxy + "/healthz").json() == {"status": "ok"}


def test_a_client_that_stalls_mid_body_gets_408_and_frees_the_upstream(proxy: str, upstream: FakeUpstream) -> None:
    before = len(upstream.requests)
    head = f"POST /v1/audio/transcriptions HTTP/1.1\nhost: proxy\ncontent-length: {MiB}\n"
    status, headers, error = raw_answer(raw(proxy, head, pattern(100_000)))  # then nothing more
    connection = headers.get("connection", "")
    assert (status, connection, error["error"]["code"]) == (408, "close", "body_timeout")
    assert f"{STALL:g} s" in error["error"]["message"]
    assert len(upstream.requests) == before
    assert httpx.get(proxy + "/healthz").json() == {"status": "ok"}


def test_a_client_that_hangs_up_mid_body_abandons_the_upstream_request(proxy: str, upstream: FakeUpstream) -> None:
    before = len(upstream.requests)
    head = f"POST /v1/audio/transcriptions HTTP/1.1\nhost: proxy\ncontent-length: {MiB}\n"
    raw(proxy, head, pattern(100_000)).close()
    assert httpx.get(proxy + "/healthz").json() == {"status": "ok"}
    r = httpx.post(proxy + "/v1/embeddings", json={"model": "e", "input": "after"})
    assert r.status_code == 200
    assert len(upstream.requests) == before + 1  # the abandoned one never arrived whole
    assert upstream.requests[-1].json() == {"model": "e", "input": "after"}


# -------------------------------------------------------------------------------------------------- /v1/files
def batch_file(lines: int) -> bytes:
    """``lines`` long RAG chats to ``/v1/chat/completions``, as a batch file."""
    chat = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": f"Answer from the documents only.\n\nDocuments:\n{REPORT}"},
            {"role": "user", "content": "How many ships in year 12?"},
        ],
    }
    return b"".join(
        json.dumps({"custom_id": f"q-{i}", "method": "POST", "url": "/v1/chat/completions", "body": chat}).encode()
        + b"\n"
        for i in range(lines)
    )


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_batch_file_too_large_to_read_is_forwarded_unread(proxy: str, upstream: FakeUpstream, declared: bool) -> None:
    data = batch_file(400)
    assert READ < len(data) < FORWARD
    request = multipart({"purpose": "batch"}, ("big.jsonl", data, "application/jsonl"))
    body = request.read()
    headers = {"content-type": request.headers["content-type"], "x-promptzip-budget": "250"}
    r = httpx.post(proxy + "/v1/files", content=body if declared else chunked(body), headers=headers, timeout=60)
    assert r.status_code == 200
    assert (r.headers["x-promptzip-status"], r.headers["x-promptzip-reason"]) == ("passthrough", "body-too-large")
    assert (r.json()["purpose"], r.json()["bytes"]) == ("batch", len(data))
    sent = upstream.requests[-1]
    assert (sent.target, sent.body) == ("/v1/files", body)
    assert sent.header("content-length") == (str(len(body)) if declared else None)


def test_a_batch_file_the_proxy_can_read_is_still_compressed(proxy: str, upstream: FakeUpstream) -> None:
    data = batch_file(2)
    request = multipart({"purpose": "batch"}, ("small.jsonl", data, "application/jsonl"))
    headers = {"content-type": request.headers["content-type"], "x-promptzip-budget": "250"}
    r = httpx.post(proxy + "/v1/files", content=chunked(request.read(), 1000), headers=headers, timeout=60)
    assert r.status_code == 200
    assert r.headers["x-promptzip-status"] == "compressed"
    assert r.headers["x-promptzip-batch-requests-compressed"] == "2"
    assert 0 < r.json()["bytes"] < len(data)


def test_a_chat_past_max_body_bytes_is_still_refused(proxy: str, upstream: FakeUpstream) -> None:
    before = len(upstream.requests)
    r = httpx.post(proxy + "/v1/chat/completions", content=chunked(pattern(READ + 1)), timeout=60)
    assert r.status_code == 413
    assert "(max_body_bytes)" in r.json()["error"]["message"]
    assert len(upstream.requests) == before


# ------------------------------------------------------------------------------------------------ settings
def test_max_forward_bytes_setting() -> None:
    assert ProxySettings(upstream="http://127.0.0.1:1/v1").max_forward_bytes == 512 * MiB
    assert ProxySettings(upstream="http://127.0.0.1:1/v1", max_forward_bytes=None).max_forward_bytes is None
    for bad in (0, -1):
        with pytest.raises(ConfigError, match="max_forward_bytes"):
            load_settings(upstream="http://127.0.0.1:1/v1", max_forward_bytes=bad)


@pytest.mark.parametrize(("flag", "expected"), [(None, 512 * MiB), ("1000", 1000), ("none", None), ("None", None)])
def test_cli_max_forward_bytes(monkeypatch: pytest.MonkeyPatch, flag: str | None, expected: int | None) -> None:
    seen: list[ProxySettings] = []
    monkeypatch.setattr("promptzip.integrations.proxy._app.serve", lambda s, **kw: seen.append(s))
    parser = argparse.ArgumentParser()
    add_proxy_command(parser.add_subparsers())
    argv = ["proxy", "--no-warmup", "--upstream", "http://127.0.0.1:1/v1", "--max-body-bytes", "2048"]
    args = parser.parse_args(argv + (["--max-forward-bytes", flag] if flag is not None else []))
    assert args.func(args, io.StringIO(), io.StringIO()) == 0
    assert (seen[0].max_body_bytes, seen[0].max_forward_bytes) == (2048, expected)


def test_cli_refuses_a_max_forward_bytes_that_is_not_a_size(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_proxy_command(parser.add_subparsers())
    with pytest.raises(SystemExit):
        parser.parse_args(["proxy", "--upstream", "http://127.0.0.1:1/v1", "--max-forward-bytes", "lots"])
    assert "not a number of bytes or 'none'" in capsys.readouterr().err
