"""Request bodies coming in: read whole (:func:`read_body`: the compressed routes, Message Batches), or read up to a
limit and past it forwarded as they arrive (:func:`read_or_stream`: the ``/v1/*`` routes the proxy does not
compress, and an upload too large to read, ``POST /v1/files`` past ``max_body_bytes``, :mod:`._openai_batches`).

:func:`read_or_stream` reads a body up to a limit and returns it whole; past the limit it returns a
:class:`Streamed` body instead, which yields the chunks already read and then the rest as the client sends it.
httpx sends it as ``content=`` and pulls the next chunk from the client only once it has written the previous one
upstream, so the proxy holds about one chunk of it at a time, however large the upload.

Decisions worth knowing:

* **No client can stall a body.** Each chunk of every body, read whole or forwarded, must arrive within
  ``timeouts.write`` (what the proxy allows itself to write a chunk upstream), else the client gets 408
  ``body_timeout`` and the connection is closed (``connection: close``, :func:`._errors.error_headers`): what a
  stalled client might still send is not worth waiting for. The server bounds no wait for a request body, so
  without this a client that sent its headers and then stopped would hold a connection, a coroutine and what it
  sent so far forever.
* **Nor trickle one.** A client that keeps sending, one byte every ``timeouts.write`` less a second, would hold its
  connection until ``max_body_bytes`` (days). So the whole body must arrive within ``timeouts.body`` seconds (300 by
  default) plus one second per ``min_body_rate`` bytes received (16 KiB by default): else 408 ``body_timeout`` and
  the connection is closed, as for a silence (:class:`~._errors.BodyTooSlow`, ``limit`` ``timeouts.body``). The
  allowance that grows with the bytes is what lets a 512 MiB upload over a slow link (128 kbit/s or better)
  through, while a trickle is cut off after about ``timeouts.body``; it is Apache's ``mod_reqtimeout`` rule
  (``body=20,MinRate=500``) with a higher floor, since the proxy's bodies are bounded by the setting, not by
  patience. One rule for bodies read whole and forwarded alike: a 10 MiB chat gets 300 + 640 s. Only the time
  spent waiting for the client counts; the time a forwarded body spends being written upstream does not.
* **Bodies held are bounded together** by ``max_buffered_bytes``: each read counts what it holds in the request's
  :class:`~._budget.Reservation` (a declared length before a byte is read, a chunked body as it grows; of a
  :class:`Streamed` body only the part read before it), and one that does not fit is a 503 (:mod:`._budget`).
* **A body is let go once sent.** One read whole goes to httpx as a :class:`OneShot`, which hands its bytes over
  once and keeps nothing, so neither the proxy nor httpx holds them while the answer is relayed.
* **Bounded by ``max_forward_bytes``** (``None``: only the upstream's own limit applies). A declared
  ``content-length`` over it is a 413 before anything is sent upstream. A chunked body that passes it raises inside
  httpx's send, which closes the upstream connection mid-body (the upstream sees an unfinished request, which it
  cannot act on), and the client gets the 413: the upstream cannot have answered yet, since httpx sends the whole
  body before it reads the answer.
* **A stalled client does not hold an upstream connection.** A body forwarded as it arrives that stalls is
  abandoned upstream the same way, and so is one whose client disconnects mid-body.
* **The client's framing is kept.** A declared length goes upstream as ``content-length`` (some upstreams answer 411
  to a chunked upload), and h11 under httpx checks that the bytes sent match it; a chunked body goes chunked.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator

import anyio
from starlette.requests import Request
from starlette.types import Receive

from promptzip.integrations.proxy._budget import Reservation
from promptzip.integrations.proxy._errors import BodyTimeout, BodyTooSlow, PayloadTooLarge, RequestError
from promptzip.integrations.proxy._requests import declared_length
from promptzip.integrations.proxy._settings import ProxySettings

__all__ = ["SMALL_BODY", "OneShot", "Streamed", "read_body", "read_or_stream"]

# Read whole and sent with a content-length, as every upstream takes it; anything longer is streamed.
SMALL_BODY = 64 << 10


class _Receiver:
    """One request's body messages from the ASGI server, counted as they come, each awaited at most
    ``timeouts.write`` and all of them together ``timeouts.body`` + ``size / min_body_rate`` (``waited``: the
    seconds spent waiting for them so far)."""

    __slots__ = ("_body_s", "_chunk_s", "_rate", "_receive", "done", "size", "waited")

    def __init__(self, receive: Receive, settings: ProxySettings) -> None:
        self._receive = receive
        self._chunk_s = settings.timeouts.write
        self._body_s = settings.timeouts.body
        self._rate = settings.min_body_rate
        self.done = False
        self.size = 0
        self.waited = 0.0

    async def next(self) -> bytes:
        left = self._body_s + self.size / self._rate - self.waited
        timeout = min(self._chunk_s, max(0.0, left))
        started = time.monotonic()
        try:
            with anyio.fail_after(timeout):
                while True:
                    message = await self._receive()
                    if message["type"] == "http.request":
                        break
                    if message["type"] == "http.disconnect":
                        raise RequestError("the client disconnected while sending the body", code="client_disconnected")
        except TimeoutError:
            if timeout < self._chunk_s:  # the whole body's time ran out before this chunk's
                raise BodyTooSlow(self._body_s, self.size, self._rate) from None
            raise BodyTimeout(timeout) from None
        finally:
            self.waited += time.monotonic() - started
        chunk: bytes = message.get("body", b"")
        self.done = not message.get("more_body", False)
        self.size += len(chunk)
        return chunk


class OneShot:
    """A body read whole, for httpx's ``content=``: its bytes once, then nothing of them. httpx keeps bytes given as
    ``content=`` in its request (``request.content``) for as long as the answer is read, a streamed answer's minutes
    included; what it pulls from an iterable it writes upstream and drops. So the body's memory is free once it is
    sent. ``length`` goes upstream as ``content-length``, as it would for the bytes (else httpx sends it chunked)."""

    __slots__ = ("_body", "_sent", "length")

    def __init__(self, body: bytes) -> None:
        self.length = len(body)
        self._body: bytes | None = body
        self._sent = False

    def __aiter__(self) -> OneShot:
        # httpx pulls a body again only to follow a redirect or an auth challenge, which the proxy never does; its
        # connect retries, and a pooled connection found closed, come before the first pull.
        if self._sent:
            raise RuntimeError("a body is sent once: its bytes were let go as they were sent")
        self._sent = True
        return self

    async def __anext__(self) -> bytes:
        body, self._body = self._body, None  # no frame of ours keeps it while httpx writes it
        if body is None:
            raise StopAsyncIteration
        return body


class Streamed:
    """A body forwarded as it arrives, for httpx's ``content=``: the chunks read before, then the rest. ``length`` is
    the client's ``content-length`` (``None``: chunked). It can be sent once."""

    def __init__(self, receiver: _Receiver, head: list[bytes], length: int | None, settings: ProxySettings) -> None:
        self.length = length
        self._receiver = receiver
        self._head = deque(head)
        self._max_bytes = settings.max_forward_bytes
        self._sent = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._sent:
            raise RuntimeError("a streamed body is sent once: the client's bytes are not kept")
        self._sent = True
        while self._head:  # each chunk let go once sent
            yield self._head.popleft()
        receiver = self._receiver
        while not receiver.done:
            chunk = await receiver.next()
            if self._max_bytes is not None and receiver.size > self._max_bytes:
                raise PayloadTooLarge(self._max_bytes, "max_forward_bytes")
            yield chunk


async def read_body(request: Request, limit: int, settings: ProxySettings, held: Reservation) -> bytes:
    """The body whole, covered by ``held`` as it arrives (503 when it does not fit ``max_buffered_bytes``), each
    chunk awaited at most ``timeouts.write`` and the whole body ``timeouts.body`` and its allowance (408), refused
    with 413 as soon as it passes ``limit`` bytes (declared or counted while it streams in)."""
    declared = declared_length(request)
    if declared is not None and declared > limit:
        raise PayloadTooLarge(limit)
    held.cover(declared or 0)
    receiver = _Receiver(request.receive, settings)
    chunks: list[bytes] = []
    while not receiver.done:
        chunks.append(await receiver.next())
        if receiver.size > limit:
            raise PayloadTooLarge(limit)
        held.cover(receiver.size)
    return b"".join(chunks)


async def read_or_stream(request: Request, limit: int, settings: ProxySettings, held: Reservation) -> bytes | Streamed:
    """The body whole when it is at most ``limit`` bytes, else all of it as a :class:`Streamed` body, bounded by
    ``settings.max_forward_bytes``: one declared or already read past that bound is refused (413) here, before
    anything is sent upstream. ``held`` covers what is read here, whole body or head, as :func:`read_body`'s."""
    declared = declared_length(request)
    receiver = _Receiver(request.receive, settings)
    head: list[bytes] = []
    if declared is None or declared <= limit:
        held.cover(declared or 0)
        while not receiver.done and receiver.size <= limit:
            head.append(await receiver.next())
            # The chunk that passes the limit is the first one streamed, in flight like every later one; counting it
            # could ask more than an idle proxy has, and refuse the body however long its client waited.
            held.cover(min(receiver.size, limit))
        if receiver.size <= limit:  # the loop stops short of the end only past the limit
            return b"".join(head)
    bound = settings.max_forward_bytes
    if bound is not None and max(receiver.size, declared or 0) > bound:
        raise PayloadTooLarge(bound, "max_forward_bytes")
    return Streamed(receiver, head, declared, settings)
