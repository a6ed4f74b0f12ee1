"""A fake OpenAI- and Anthropic-compatible upstream with faults on demand, for testing the proxy (or a deployment).

:class:`FakeUpstream` is a real HTTP/1.1 server on 127.0.0.1 (asyncio, in a background thread), written at the
socket level so that it can also misbehave the ways real upstreams do::

    with FakeUpstream() as upstream:
        settings = ProxySettings(upstream=upstream.url)        # http://127.0.0.1:PORT/v1
        ...
        upstream.requests[-1].json()["messages"]             # what the proxy sent

Each request is answered according to its ``x-fake-mode`` header (the proxy forwards it like any header), else
the server's ``mode``:

``ok``            a chat completion, an Anthropic message (``POST /v1/messages``), a Responses response
                  (``POST /v1/responses``) or a legacy completion (``POST /v1/completions``: the prompt first when
                  the body sets ``echo``), each as its API's SSE events when the body says ``"stream": true``;
                  a model list for ``GET /v1/models``, an Anthropic Message Batch for ``POST /v1/messages/batches``
                  and ``GET /v1/messages/batches/{id}``, an OpenAI file object for ``POST /v1/files`` (a
                  multipart upload: its ``file`` field's size and name, its ``purpose``; the raw body is recorded)
                  and ``GET /v1/files/{id}``, and a JSON echo for anything else
``slow:S``        the same after S seconds
``long:N``        the same, a stream sending N content chunks of about 1 KiB each (for a client that reads slowly)
``status:N``      status N with an OpenAI-style JSON error body
``garbage``       200, ``content-type: application/json``, and bytes that are not JSON
``not-http``      bytes that are not an HTTP response, then the connection is closed
``close``         the connection is closed without an answer
``reset``         a streaming answer that stops after two chunks with a TCP reset
``tool:NAME``     an Anthropic message (``POST /v1/messages``, streamed or not) that calls the tool NAME with no input
                  (``stop_reason: tool_use``), unless the request's last message holds a ``tool_result``: then as
                  ``ok`` (for a tool runner's loop: a call, then the final answer)

In the ``ok`` and ``tool`` modes (``slow`` and ``long`` included), a ``POST /v1/messages`` whose body sets
``compaction`` (a compaction request) is answered as the API answers one: a ``compaction`` block alone,
``stop_reason: compaction``, streamed or not; its summary counts and repeats the texts the request sent.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from promptzip.integrations.proxy._fake_answers import (
    LONG_PAD,
    NAMED_EVENTS,
    STREAMS,
    Stream,
    answer_for,
    answers_a_tool_call,
    compaction,
    compaction_stream,
    compacts,
    json_or_none,
    sse,
    tool_call,
    tool_call_stream,
)

__all__ = ["FakeUpstream", "Recorded", "live_server"]

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests"}
GARBAGE = b"\x00\xff<html>not json\x9c at all"


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request as the fake upstream received it."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)


_SETTLE = 5  # loop turns for an accepted connection's setup (its transport, then its handler) to run


class _Tracked(asyncio.StreamReaderProtocol):
    """The streams' protocol, keeping every open connection's transport in ``transports`` so that ``stop()`` can
    close each one, including those whose handler never started."""

    def __init__(self, transports: set[asyncio.BaseTransport], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open = transports
        self._mine: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._mine = transport
        self._open.add(transport)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._mine is not None:
            self._open.discard(self._mine)
        super().connection_lost(exc)


@dataclass
class FakeUpstream:
    """See the module docstring. ``record=False`` keeps no requests (for long load runs); ``chunk_delay`` spaces
    SSE chunks; ``chunks`` is how many content chunks a stream sends; ``headers`` are added to every answer (a real
    upstream sends ``date``, ``server``, ...)."""

    mode: str = "ok"
    record: bool = True
    chunks: int = 5
    chunk_delay: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[Recorded] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.Server | None = None
    _transports: set[asyncio.BaseTransport] = field(default_factory=set)

    @property
    def url(self) -> str:
        """The base URL to give the proxy (with ``/v1``, like an OpenAI SDK's ``base_url``)."""
        return f"http://{self.host}:{self.port}/v1"

    # ------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> FakeUpstream:
        ready = threading.Event()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()

            def protocol() -> asyncio.Protocol:
                return _Tracked(self._transports, asyncio.StreamReader(loop=loop), self._handle, loop=loop)

            self._server = loop.run_until_complete(loop.create_server(protocol, self.host, self.port))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-upstream", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake upstream did not start")
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            assert self._server is not None
            # A connection accepted in the loop turn that closes the server is set up after the close, which
            # Python 3.11 refuses without closing its socket (``Server._attach`` asserts, the error is swallowed):
            # the socket is left for the garbage collector, a ResourceWarning in some later test. So stop accepting
            # first, let the connections already accepted be set up, close the server, then every connection.
            for listening in self._server.sockets:
                asyncio.get_running_loop().remove_reader(listening.fileno())
            for _ in range(_SETTLE):
                await asyncio.sleep(0)
            self._server.close()
            for transport in list(self._transports):
                transport.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(0)  # a closed transport closes its socket on the loop's next turn

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._loop = self._thread = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Start, print the base URL on standard output, and block until interrupted (for a separate process)."""
        self.start()
        print(self.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            self.stop()

    # ------------------------------------------------------------------------------------------- protocol
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                if self.record:
                    self.requests.append(request)
                keep = await self._answer(request, writer)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        except asyncio.CancelledError:
            # stop() cancels the open connections; ending quietly here is what keeps Python 3.11's streams from
            # printing a CancelledError traceback per connection (its done-callback calls task.exception()).
            return
        finally:
            if not writer.is_closing():
                writer.close()

    async def _answer(self, request: Recorded, writer: asyncio.StreamWriter) -> bool:
        mode = request.header("x-fake-mode") or self.mode
        name, _, arg = mode.partition(":")
        chunks, pad = self.chunks, 0
        if name == "slow":
            await asyncio.sleep(float(arg or 1))
            name = "ok"
        elif name == "long":
            chunks, pad, name = int(arg), LONG_PAD, "ok"
        if name == "close":
            return False
        if name == "not-http":
            writer.write(b"SSH-2.0-definitely not http\r\n" + GARBAGE)
            await writer.drain()
            return False
        if name == "status":
            code = int(arg)
            body = {"error": {"message": f"fake upstream status {code}", "type": "fake", "param": None, "code": code}}
            await _send(writer, code, json.dumps(body).encode(), "application/json", self._extra())
            return True
        if name == "garbage":
            await _send(writer, 200, GARBAGE, "application/json", self._extra())
            return True
        payload = json_or_none(request.body)
        stream = isinstance(payload, dict) and payload.get("stream") is True
        api = next((a for a in STREAMS if request.target.startswith(a)), None)
        if name in ("ok", "tool") and request.target.split("?")[0] == "/v1/messages" and compacts(payload):
            if stream:
                await self._stream(writer, "/v1/messages", chunks, pad, reset=False, events=compaction_stream(payload))
            else:
                await _send(writer, 200, json.dumps(compaction(payload)).encode(), "application/json", self._extra())
            return True
        if name == "tool" and api == "/v1/messages" and not answers_a_tool_call(payload):
            if stream:
                await self._stream(writer, api, chunks, pad, reset=False, events=tool_call_stream(arg))
            else:
                await _send(writer, 200, json.dumps(tool_call(arg)).encode(), "application/json", self._extra())
            return True
        if api is not None and stream:
            await self._stream(writer, api, chunks, pad, reset=name == "reset")
            return name != "reset"
        await _send(writer, 200, json.dumps(answer_for(request, payload)).encode(), "application/json", self._extra())
        return True

    def _extra(self) -> bytes:
        return "".join(f"{k}: {v}\r\n" for k, v in self.headers).encode("latin-1")

    async def _stream(
        self,
        writer: asyncio.StreamWriter,
        api: str,
        chunks: int,
        pad: int,
        *,
        reset: bool,
        events: Stream | None = None,
    ) -> None:
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
        head += self._extra() + b"\r\n"
        writer.write(head)
        before, deltas, after = events if events is not None else STREAMS[api](chunks, pad)
        named = api in NAMED_EVENTS  # Anthropic and Responses name each event after its type
        for event in before:
            _chunk(writer, sse(event, named))
        for event in deltas[:2] if reset else deltas:
            _chunk(writer, sse(event, named))
            await writer.drain()
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
        if reset:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        for event in after:
            _chunk(writer, sse(event, named))
        writer.write(b"0\r\n\r\n")
        await writer.drain()


def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


async def _send(writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str, extra: bytes = b"") -> None:
    reason = _REASONS.get(status, "Fake")
    head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
    writer.write(head.encode("latin-1") + extra + b"\r\n" + body)
    await writer.drain()


async def _read_request(reader: asyncio.StreamReader) -> Recorded | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = tuple((k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:] if line))
    lower = {k.lower(): v for k, v in headers}
    if lower.get("transfer-encoding", "").lower() == "chunked":
        body = b"".join([part async for part in _chunks(reader)])
    else:
        body = await reader.readexactly(int(lower.get("content-length", "0")))
    return Recorded(method, target, headers, body)


async def _chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        data = await reader.readexactly(size + 2)
        if size == 0:
            return
        yield data[:-2]


@contextmanager
def live_server(
    app: Any,
    *,
    host: str = "127.0.0.1",
    log_level: str = "warning",
    send_buffer: int | None = None,
    http: type[asyncio.Protocol] | None = None,
    loop: str | None = None,
) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a background thread on a free port of ``host``; yields its base URL
    (``http://127.0.0.1:PORT``) once it accepts connections, and always shuts it down. The proxy's app is served as
    ``serve()`` serves it, its connections guarded (:mod:`._connections`). ``send_buffer`` holds the accepted
    connections' kernel send buffer at that many bytes (``SO_SNDBUF``; on loopback Linux otherwise grows it to
    megabytes), so that a client that reads slowly fills it soon. ``http`` serves with that protocol class instead of
    the guarded one (a subclass of ``server_options(app)["http"]``, say, that holds the loop at a moment of its
    choosing, as a loaded server runs late). ``loop`` is the event loop uvicorn runs: ``"asyncio"`` by default, else
    the environment's ``PROMPTZIP_LIVE_LOOP``; ``"uvloop"`` (or ``"auto"``, uvicorn's and ``serve()``'s own choice,
    uvloop where it is installed) to serve as a deployment with ``uvicorn[standard]`` does."""
    import uvicorn

    from promptzip.integrations.proxy._connections import server_options

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if send_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)  # accepted sockets inherit it
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    options = server_options(app)
    if http is not None:
        options["http"] = http
    loop = loop or os.environ.get("PROMPTZIP_LIVE_LOOP") or "asyncio"
    config = uvicorn.Config(
        app, log_level=log_level, access_log=False, lifespan="on", timeout_graceful_shutdown=2, loop=loop, **options
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="live-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        _stop_accepting(server, sock)
        server.should_exit = True
        thread.join(15)
        sock.close()


def _stop_accepting(server: Any, sock: socket.socket) -> None:
    """Take the listening socket off the server's asyncio loop before uvicorn closes the server: a connection
    accepted in the turn that closes it would be left open by Python 3.11 (see ``FakeUpstream.stop``). uvloop keeps
    its listening sockets in libuv, where there is no such turn, and ``remove_reader`` finds nothing to remove."""
    for loop in {s.get_loop() for s in getattr(server, "servers", ())}:
        done = threading.Event()

        def stop(loop: asyncio.AbstractEventLoop = loop, done: threading.Event = done) -> None:
            try:
                loop.remove_reader(sock.fileno())
            finally:
                done.set()

        try:
            loop.call_soon_threadsafe(stop)
        except RuntimeError:  # the loop has already closed
            continue
        done.wait(5)


def main() -> None:
    """``python -m promptzip.integrations.proxy.testing PORT``: serve a fake upstream until interrupted."""
    import sys

    FakeUpstream(port=int(sys.argv[1]) if len(sys.argv) > 1 else 0, record=False).serve_forever()


if __name__ == "__main__":
    main()
