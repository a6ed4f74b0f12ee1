"""Relaying an upstream answer to the client: bytes as received, never decoded, and an honest end. It holds nothing of
the request body, which was let go as it was sent (:mod:`._budget`)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import anyio
import httpx
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from promptzip.integrations.proxy._metrics import Metrics

__all__ = ["Relay", "release_on_close"]

logger = logging.getLogger("promptzip.proxy")


class Relay(StreamingResponse):
    """The upstream's response, relayed chunk by chunk as received (SSE included), never decoded or parsed.

    When the upstream connection breaks mid-body the response is left unfinished, so the server closes the
    connection and the client sees a truncated transfer instead of a clean (and misleading) end.
    """

    def __init__(self, upstream: httpx.Response, headers: list[tuple[bytes, bytes]], metrics: Metrics) -> None:
        super().__init__(self._relay(), status_code=upstream.status_code)
        self.raw_headers = headers
        self._upstream = upstream
        self._metrics = metrics
        self._broken = False

    async def _relay(self) -> AsyncIterator[bytes]:
        if self._upstream.is_stream_consumed:  # built in memory (httpx.MockTransport): already read
            yield self._upstream.content
            return
        try:
            async for chunk in self._upstream.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            self._broken = True
            self._metrics.upstream_errors.inc("stream")
            logger.warning("proxy: the upstream broke off its answer mid-body: %s", type(exc).__name__)

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async for chunk in self.body_iterator:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if not self._broken:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._upstream.aclose()


class _Releasing(httpx.AsyncByteStream):
    """An upstream answer's stream that calls ``release`` once when it is closed, however it is closed: read to its
    end, or closed by the relay as it ends (a client gone, an error)."""

    def __init__(self, stream: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._stream, self._release = stream, release
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if not self._released:
                self._released = True
                self._release()


def release_on_close(response: httpx.Response, release: Callable[[], None]) -> None:
    """Call ``release`` once ``response`` (sent with ``stream=True``) is closed: its upstream connection is free. One
    closed already (read whole by an in-memory transport, ``httpx.MockTransport``) holds none: released at once."""
    if response.is_closed:
        release()
        return
    stream = response.stream
    if not isinstance(stream, httpx.AsyncByteStream):
        raise TypeError("release_on_close needs an async response stream")
    response.stream = _Releasing(stream, release)
