"""Client connections: how many may be open at once, how long one may take to send a request's headers, and how
long it may leave an answer untaken.

uvicorn's HTTP/1.1 protocol (h11; the proxy always serves with it, httptools or not) bounds none of these. It waits
for a request's headers without a deadline from the moment a client connects, so a client that connects and sends
nothing, or its request line one byte at a time (slowloris), holds the connection forever; it waits as long for a
client to take an answer it stopped reading; and it takes every
connection it is offered, each a socket, a file descriptor, a parser and its buffer (its ``limit_concurrency``
answers a plain-text 503 that nothing counts, to connections it keeps open). :func:`server_options` gives uvicorn
:class:`GuardedH11` instead (``serve()`` and :func:`~.testing.live_server` pass it as ``http=``), with these bounds:

* **timeouts.headers** (10 s): a request's headers must be complete within that many seconds of the connection's
  start, or of the end of the previous answer on it. Past it a client that sent part of a request gets 408
  ``header_timeout`` (:class:`~._errors.HeaderTimeout`, in OpenAI's style: no route is known yet) with
  ``connection: close``; one that sent nothing is just closed. Both are counted in
  ``connections_refused_total{limit="timeouts.headers"}``. A keep-alive connection with nothing sent since its
  last answer is uvicorn's to close (``timeout_keep_alive``, 5 s) and not counted. The same bound ends the wait for
  the rest of a body the proxy answered without reading (a 413), which uvicorn would otherwise drain for as long as
  the client sends it. Pipelined requests are not slowed: the next request's headers are there when an answer ends.
* **timeouts.send** (60 s): a client that makes no progress taking its answer for that long has its connection
  dropped, counted in ``connections_refused_total{limit="timeouts.send"}``. Otherwise the relay would wait on it
  forever, holding an upstream connection (``max_connections`` bounds them, so a few hundred such clients would
  stall every other one) and the body's share of ``max_buffered_bytes``. The clock runs while the connection's
  writes are paused (its write buffer is full), and progress is what the client took meanwhile, measured by
  :mod:`._send_progress`: on Linux the bytes the kernel still holds for the socket, unsent or unacknowledged, which
  fall as the client reads, a few KiB at a time. Each time the clock runs out, a client that took at least
  ``min_send_rate`` (512) bytes a second of it is given another ``timeouts.send``; one that took none, or less, is
  dropped. So a client that keeps reading, however far below a socket buffer's worth per ``timeouts.send`` (a poor
  mobile link, a client behind a large receive buffer that reads a trickle), gets its whole answer; one that stops
  is dropped ``timeouts.send`` (at most twice that) after it last took something; and one that takes a byte now
  and then cannot hold its connection (the floor). (nginx's ``send_timeout`` restarts only when the server can write
  again, which cuts such a reader, as this bound did before.) Where the kernel's count is not to be had (not Linux,
  or the ioctl fails), only the write buffer is measured; it moves when the kernel takes more of it, about a third
  of the socket's send buffer at a time, so there a client must take about that much per ``timeouts.send``.
* **max_client_connections** (1024; ``None``: no cap), and **max_connections_per_client** (``None`` by default),
  the same bound for the connections from one peer address (off by default: behind a load balancer every client has
  the balancer's address). A connection made while that many are open first makes room, as nginx reuses its idle
  connections: the connection that has waited longest for a request (one that has sent no complete request headers
  since it opened or since its last answer: an idle keep-alive connection, a client that connected and sent nothing,
  a slowloris) is closed (answered 503 ``overloaded`` first when part of a request had come), and counted in
  ``connections_closed_idle_total{limit}``. Under the per-client cap only that address's own connections make room.
  A client's request that is on its way (headers complete, its body coming, its answer being relayed) is never cut,
  nor is one that has come and waits unread in the kernel's receive queue (``ioctl(FIONREAD)``): under load the
  event loop runs late, and a connection closed with its request unread is reset under a request its client already
  sent, a connection error for a client with its retries off; left open, it is served as soon as the loop reads it.
  A connection is passed over only while bytes wait unread, which the loop takes on its next turn (nothing pauses
  reading on a connection that waits), so no client keeps its slot this way, and part of a request's headers held by
  the parser with nothing more come (a slowloris) still makes room. Where the kernel does not say (no ``fcntl``, as
  on Windows, or the ioctl fails), a connection makes room as though nothing had come. A request sent after its
  connection was chosen is still lost; the SDKs retry it.
  Only when none can make room is the new one refused: its first request is answered 503 + ``retry-after`` +
  ``connection: close`` in its route's error style (:class:`~._errors.Overloaded`, code ``overloaded``, Anthropic's
  ``overloaded_error``), and the connection closed; a probe (``/healthz``, ``/metrics``) is answered as usual, and
  the connection closed. It waits for that request at most :data:`REFUSED_WAIT_S`. Counted in
  ``connections_refused_total{limit}`` (the setting's name); ``connections_open`` is the gauge. So connections that
  hold a slot without using it cannot keep anyone out: only requests in progress fill the cap.

1024 is about what a default soft limit of open files (1024 on most Linux systems) would otherwise cut at, in an
unplanned place: an ``accept`` that fails, an upstream connection that cannot be made. A fleet of SDK clients keeps
a few keep-alive connections each, which uvicorn closes after 5 idle seconds, so normal use stays far below it.
``serve()`` raises the process's soft limit to fit the cap and the upstream connections
(:func:`raise_descriptor_limit`). Against a slowloris, the cap bounds the memory and descriptors it can take, the
timeout how long it keeps each connection, and making room by closing the longest-waiting connection keeps it from
locking other clients out.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, ClassVar

import h11
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from promptzip.integrations.proxy._dialects import DIALECTS, Dialect, dialect_for
from promptzip.integrations.proxy._errors import HeaderTimeout, Overloaded, error_headers, error_response
from promptzip.integrations.proxy._send_progress import SendClock, floor_bytes, socket_count

if TYPE_CHECKING:
    from promptzip.integrations.proxy._metrics import Metrics
    from promptzip.integrations.proxy._settings import ProxySettings

__all__ = ["REFUSED_WAIT_S", "ConnectionGuard", "GuardedH11", "raise_descriptor_limit", "server_options"]

logger = logging.getLogger("promptzip.proxy")

# How long a connection refused at max_client_connections waits for the request to answer 503 to: a client sends it
# at once; one that does not is closed without an answer, so refused connections never pile up.
REFUSED_WAIT_S = 1.0
RETRY_AFTER_S = 1  # connections close every few seconds (keep-alive, answers with connection: close)
SPARE_DESCRIPTORS = 64  # what the process opens besides connections: the listening socket, logs, the cache's files


_PROBES = frozenset({("GET", "/healthz"), ("HEAD", "/healthz"), ("GET", "/metrics")})


def _closing(send: Send) -> Send:
    """``send`` with ``connection: close`` added to the answer's headers (uvicorn then closes the connection)."""

    async def closing(message: Any) -> None:
        if message.get("type") == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
            message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await send(message)

    return closing


class ConnectionGuard:
    """One server's count of open client connections and its bounds, shared by the protocols of its connections
    (on the event loop only: a plain counter)."""

    def __init__(self, settings: ProxySettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.limit = settings.max_client_connections
        self.per_client = settings.max_connections_per_client
        self.headers_s = settings.timeouts.headers
        self.send_s = settings.timeouts.send
        self.send_rate = settings.min_send_rate  # bytes/s a client must take of its answer (the floor)
        self.send_floor = floor_bytes(self.send_s, self.send_rate)  # in each send_s
        self.open = 0
        self.by_client: dict[str, int] = {}  # open connections per peer address, where there is a per_client cap
        # The admitted connections waiting for a request's headers, longest waiting first (dicts keep their order).
        self.waiting: dict[GuardedH11, None] = {}
        late = HeaderTimeout(self.headers_s)
        self.late_answer = _raw_answer(b"408 Request Timeout", late)
        self.room_answer = {
            limit: _raw_answer(b"503 Service Unavailable", _overloaded(limit))
            for limit in ("max_client_connections", "max_connections_per_client")
        }

    def admit(self, client: str) -> str | None:
        """Count a new connection from the address ``client`` in (``None``), or name the bound that refuses it:
        ``max_client_connections`` when that many are open, ``max_connections_per_client`` when that many are open
        from ``client``, and none of them (of ``client``'s, for the latter) is waiting for a request with nothing
        unread (:meth:`GuardedH11.may_make_room`), so none can be closed to make room (:meth:`GuardedH11.make_room`)."""
        limit = None
        if self.per_client is not None and self.by_client.get(client, 0) >= self.per_client:
            limit = "max_connections_per_client"  # closing one of its own frees a slot under both caps
        elif self.limit is not None and self.open >= self.limit:
            limit = "max_client_connections"
        if limit is not None:
            mine = limit == "max_connections_per_client"
            victim = next(
                (c for c in self.waiting if (not mine or c.peer_address == client) and c.may_make_room()), None
            )
            if victim is None:
                self.metrics.connections_refused.inc(limit)
                return limit
            victim.make_room(limit)
            self.metrics.connections_closed_idle.inc(limit)
        self.open += 1
        if self.per_client is not None:
            self.by_client[client] = self.by_client.get(client, 0) + 1
        self.metrics.connections_open.inc()
        return None

    def leave(self, client: str) -> None:
        self.open -= 1
        if self.per_client is not None:
            left = self.by_client.pop(client, 1) - 1
            if left:
                self.by_client[client] = left
        self.metrics.connections_open.dec()

    def dialect(self, path: str) -> Dialect:
        """Whose error style a request on ``path`` is answered in, as the app chooses it."""
        route = self.settings.route(path)
        if route is not None:
            return dialect_for(path, route)
        return DIALECTS["anthropic" if self.settings.batch_route(path) is not None else "chat"]

    def over_cap(self, app: Any, setting: str) -> Any:
        """The ASGI app of a connection over the cap ``setting``: :meth:`refuse`, but for the probes (``GET``/``HEAD``
        ``/healthz``, ``GET /metrics``), which ``app`` answers, on a connection that then closes: a liveness probe
        must not find a proxy that is shedding connections dead (an orchestrator would restart it), nor monitoring go
        blind while it happens."""

        async def answer(scope: Scope, receive: Receive, send: Send) -> None:
            if scope.get("type") == "http" and (scope.get("method"), scope.get("path")) in _PROBES:
                await app(scope, receive, _closing(send))
            else:
                await self.refuse(scope, receive, send, setting)

        return answer

    async def refuse(self, scope: Scope, receive: Receive, send: Send, setting: str) -> None:
        """A connection over the cap ``setting``: 503, and the connection closes."""
        exc = _overloaded(setting)
        await self.dialect(scope.get("path", "")).error(exc, headers=error_headers(exc))(scope, receive, send)


def _overloaded(setting: str) -> Overloaded:
    whose = "client connections" if setting == "max_client_connections" else "connections from this address"
    return Overloaded(
        RETRY_AFTER_S,
        f"the proxy has as many {whose} open as it may ({setting}), all busy; retry later",
        setting=setting,
    )


def _raw_answer(status: bytes, exc: Exception) -> bytes:
    """The bytes of the answer to ``exc`` (OpenAI's style: no route is known yet), for a connection whose request
    never got as far as the app."""
    answer = error_response(exc, headers=error_headers(exc))
    lines = b"".join(k + b": " + v + b"\r\n" for k, v in answer.raw_headers)
    return b"HTTP/1.1 " + status + b"\r\n" + lines + b"\r\n" + bytes(answer.body)


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers and a cap on open connections (module
    docstring). A subclass made by :func:`server_options` sets ``guard``."""

    guard: ClassVar[ConnectionGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._admitted = False
        self.peer_address = ""  # not uvicorn's self.client, the (host, port) of its scopes
        self._timer: asyncio.TimerHandle | None = None
        self._after: object = None  # the request cycle whose successor's headers the timer waits for
        self._stalled: SendClock | None = None  # timeouts.send, from when the writes paused to when they resume

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        guard = self.guard
        peer = transport.get_extra_info("peername")
        self.peer_address = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "")
        refused = guard.admit(self.peer_address)
        self._admitted = refused is None
        if refused is not None:
            self.app = guard.over_cap(self.app, refused)
        self._arm(guard.headers_s if self._admitted else min(guard.headers_s, REFUSED_WAIT_S))

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._stalled is not None:
            self._stalled.stop()
        self._leave()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self._timer is not None and self.cycle is not self._after:  # a new request's headers are complete
            self._disarm()

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():  # before uvicorn looks for a pipelined request, which disarms it
            self._arm(self.guard.headers_s)
        super().on_response_complete()
        self._watch_close()  # an answer with connection: close was closed as it ended

    def timeout_keep_alive_handler(self) -> None:
        super().timeout_keep_alive_handler()
        self._watch_close()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._send_clock().start()

    def _send_clock(self) -> SendClock:
        if self._stalled is None:
            guard = self.guard
            self._stalled = SendClock(self.loop, self.transport, guard.send_s, guard.send_floor, self._send_late)
        return self._stalled

    def resume_writing(self) -> None:
        if self._stalled is not None and not self.transport.is_closing():  # closing: nothing more will be written
            self._stalled.stop()
        super().resume_writing()

    def _watch_close(self) -> None:
        """Keep timing a connection closed with part of an answer still in its write buffer as a paused one: asyncio
        keeps such a connection (its descriptor, and the buffer's memory) open until the client has taken it all, and
        an answer written in one piece (``GET /v1/promptzip/expand/{id}``: megabytes) ends at once, paused or not, so
        a client that takes none of it would hold them for good. It gets ``timeouts.send`` per ``send_floor``, as
        while its answer was being written."""
        if self.transport.is_closing() and self.transport.get_write_buffer_size():
            self._send_clock().start()

    def _send_late(self, taken: int) -> None:
        """The client took ``taken`` bytes of its answer (less than ``send_floor``) in the last timeouts.send: drop the
        connection (there is no answer left to give it), which ends the relay and so frees the upstream connection
        and the body's memory it held; one already closing (:meth:`_watch_close`) gives up what it still held."""
        guard = self.guard
        guard.metrics.connections_refused.inc("timeouts.send")
        if taken:
            logger.info(
                "proxy: a client took %d bytes of its answer in %g s, under %d bytes/s (timeouts.send, min_send_rate): "
                "disconnected",
                taken,
                guard.send_s,
                guard.send_rate,
            )
        else:
            logger.info("proxy: a client took none of its answer for %g s (timeouts.send): disconnected", guard.send_s)
        self.transport.abort()

    def may_make_room(self) -> bool:
        """Whether this connection, which waits for a request, may be closed to make room: it is not closing, and
        nothing the client sent waits unread in the kernel (a request the loop has not read yet, module docstring)."""
        if self.transport.is_closing():
            return False
        sock = self.transport.get_extra_info("socket")
        return sock is None or not socket_count(sock.fileno(), "FIONREAD")

    def make_room(self, limit: str) -> None:
        """Close this connection, which waits for a request, to make room for a new one under ``limit``: out of the
        count at once (the transport closes on the loop's next turn); a 503 first when part of a request came."""
        self._disarm()
        self._leave()
        if self._partial():
            self.transport.write(self.guard.room_answer[limit])
        self.transport.close()
        self._watch_close()

    def _leave(self) -> None:
        if self._admitted:
            self._admitted = False
            self.guard.leave(self.peer_address)

    def _partial(self) -> bool:
        """Whether part of a request's headers has come (and no more)."""
        return self.conn.their_state is h11.IDLE and bool(self.conn.trailing_data[0])

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._after = self.cycle
        self._timer = self.loop.call_later(seconds, self._headers_late)
        if self._admitted:
            self.guard.waiting[self] = None

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.guard.waiting.pop(self, None)

    def _headers_late(self) -> None:
        self._timer = None
        self.guard.waiting.pop(self, None)
        if self.transport.is_closing():
            return
        idle = self.timeout_keep_alive_task is not None  # nothing came since the last answer: keep-alive's to end
        if self._admitted and not idle:
            self.guard.metrics.connections_refused.inc("timeouts.headers")
        if self._partial():
            self.transport.write(self.guard.late_answer)
        self.transport.close()
        self._watch_close()


def server_options(app: Any) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config`` that serve ``app`` with :class:`GuardedH11` when it is the proxy
    (``create_app``'s, which keeps its settings and metrics in ``app.state.proxy``); nothing for another app."""
    proxy = getattr(getattr(app, "state", None), "proxy", None)
    if proxy is None:
        return {}
    protocol = type("GuardedH11", (GuardedH11,), {"guard": ConnectionGuard(proxy.settings, proxy.metrics)})
    return {"http": protocol, "ws": "none"}  # a websocket upgrade would take the connection out of the count


def raise_descriptor_limit(settings: ProxySettings) -> int | None:
    """Raise the process's soft limit on open files, up to its hard limit, to fit ``max_client_connections``, the
    upstream connections (``max_connections``) and :data:`SPARE_DESCRIPTORS` (Go's runtime raises it too); warn
    when the hard limit is lower. Returns the soft limit now (``None`` where there is none, on Windows)."""
    try:
        import resource
    except ImportError:
        return None
    need = (settings.max_client_connections or 0) + settings.max_connections + SPARE_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return soft
    raised = need if hard == resource.RLIM_INFINITY else min(need, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
    except (ValueError, OSError):
        raised = soft
    if raised < need:
        logger.warning(
            "promptzip proxy: %d open files allowed, %d wanted for max_client_connections and the upstream "
            "connections; lower them or raise the limit (ulimit -n)",
            raised,
            need,
        )
    return raised
