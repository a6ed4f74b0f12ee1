"""Bodies the proxy forwards without reading them whole: those of the ``/v1/*`` routes it does not compress, and an
upload too large to read (``POST /v1/files`` past ``max_body_bytes``, :mod:`._openai_batches`).

:func:`read_or_stream` reads a body up to a limit and returns it whole; past the limit it returns a
:class:`Streamed` body instead, which yields the chunks already read and then the rest as the client sends it.
httpx sends it as ``content=`` and pulls the next chunk from the client only once it has written the previous one
upstream, so the proxy holds about one chunk of it at a time, however large the upload.

Decisions worth knowing:

* **Bounded by ``max_forward_bytes``** (``None``: only the upstream's own limit applies). A declared
  ``content-length`` over it is a 413 before anything is sent upstream. A chunked body that passes it raises inside
  httpx's send, which closes the upstream connection mid-body (the upstream sees an unfinished request, which it
  cannot act on), and the client gets the 413: the upstream cannot have answered yet, since httpx sends the whole
  body before it reads the answer.
* **A stalled client does not hold an upstream connection.** Once a connection waits on the body, each chunk must
  arrive within ``timeouts.write`` (what the proxy allows itself to write a chunk upstream), else the upstream
  request is abandoned the same way and the client gets 408 ``body_timeout``. While the proxy is still reading, no
  connection waits and no such limit applies, as for a body read whole (:func:`._requests.read_body`). A client
  that disconnects mid-body abandons the upstream request too. The 408 closes the connection (``connection: close``):
  what a stalled client might still send is not worth waiting for.
* **The client's framing is kept.** A declared length goes upstream as ``content-length`` (some upstreams answer 411
  to a chunked upload), and h11 under httpx checks that the bytes sent match it; a chunked body goes chunked.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator

import anyio
from starlette.requests import Request
from starlette.types import Receive

from promptzip.integrations.proxy._errors import BodyTimeout, PayloadTooLarge, RequestError
from promptzip.integrations.proxy._requests import declared_length
from promptzip.integrations.proxy._settings import ProxySettings

__all__ = ["SMALL_BODY", "Streamed", "read_or_stream"]

# Read whole and sent with a content-length, as every upstream takes it; anything longer is streamed.
SMALL_BODY = 64 << 10


class _Receiver:
    """One request's body messages from the ASGI server, counted as they come."""

    __slots__ = ("_receive", "done", "size")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.done = False
        self.size = 0

    async def next(self, timeout: float | None = None) -> bytes:
        try:
            with anyio.fail_after(timeout):
                while True:
                    message = await self._receive()
                    if message["type"] == "http.request":
                        break
                    if message["type"] == "http.disconnect":
                        raise RequestError("the client disconnected while sending the body", code="client_disconnected")
        except TimeoutError:
            raise BodyTimeout(timeout or 0.0) from None
        chunk: bytes = message.get("body", b"")
        self.done = not message.get("more_body", False)
        self.size += len(chunk)
        return chunk


class Streamed:
    """A body forwarded as it arrives, for httpx's ``content=``: the chunks read before, then the rest. ``length`` is
    the client's ``content-length`` (``None``: chunked). It can be sent once."""

    def __init__(self, receiver: _Receiver, head: list[bytes], length: int | None, settings: ProxySettings) -> None:
        self.length = length
        self._receiver = receiver
        self._head = deque(head)
        self._max_bytes = settings.max_forward_bytes
        self._timeout = settings.timeouts.write
        self._sent = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._sent:
            raise RuntimeError("a streamed body is sent once: the client's bytes are not kept")
        self._sent = True
        while self._head:  # each chunk let go once sent
            yield self._head.popleft()
        receiver = self._receiver
        while not receiver.done:
            chunk = await receiver.next(self._timeout)
            if self._max_bytes is not None and receiver.size > self._max_bytes:
                raise PayloadTooLarge(self._max_bytes, "max_forward_bytes")
            yield chunk


async def read_or_stream(request: Request, limit: int, settings: ProxySettings) -> bytes | Streamed:
    """The body whole when it is at most ``limit`` bytes, else all of it as a :class:`Streamed` body, bounded by
    ``settings.max_forward_bytes``: one declared or already read past that bound is refused (413) here, before
    anything is sent upstream."""
    declared = declared_length(request)
    receiver = _Receiver(request.receive)
    head: list[bytes] = []
    if declared is None or declared <= limit:
        while not receiver.done and receiver.size <= limit:
            head.append(await receiver.next())
        if receiver.size <= limit:  # the loop stops short of the end only past the limit
            return b"".join(head)
    bound = settings.max_forward_bytes
    if bound is not None and max(receiver.size, declared or 0) > bound:
        raise PayloadTooLarge(bound, "max_forward_bytes")
    return Streamed(receiver, head, declared, settings)
