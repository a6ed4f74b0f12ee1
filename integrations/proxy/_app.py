"""The proxy: an ASGI app between OpenAI- or Anthropic-compatible clients and one fixed upstream.

``create_app(settings)`` builds everything; nothing lives at module level. Per request:

* ``POST`` to a compressed route (``/v1/chat/completions``, ``/v1/messages``, ``/v1/responses`` and
  ``/v1/completions`` unless the settings say otherwise): the body is read under the size limit, validated (4xx JSON
  errors, in the style of the route's API), read as chat messages by the route's dialect (:mod:`._dialects`; a valid
  body it does not understand is forwarded as it came), those compressed in a worker thread and written back into the
  body, and the request forwarded. The response — JSON or SSE — is streamed back byte for byte. The request of a
  streaming call is compressed too; its response stream is not touched.
* ``POST`` to an Anthropic Messages route's ``/batches`` (``/v1/messages/batches``, Message Batches): each request's
  ``params`` is compressed as that route compresses a body, and the batch forwarded (:mod:`._batches`).
* ``POST /v1/files``: an OpenAI Batch API input file (``purpose`` ``batch``) has each line's ``body`` compressed as
  its ``url``'s route compresses a body, and the upload forwarded (:mod:`._openai_batches`).
* Any other ``/v1/*`` request is forwarded untouched: method, path, query, body and headers (minus hop-by-hop
  ones and the ``x-promptzip-*`` controls). Its body is not read: past a few kilobytes it is sent upstream as it
  arrives (an audio file, an upload's part), bounded by ``max_forward_bytes`` instead of ``max_body_bytes``
  (:mod:`._bodies`).
* ``/healthz`` answers ``{"status": "ok"}``; ``/metrics`` is Prometheus text.
* ``/v1/promptzip/*`` is the proxy's own and never forwarded: ``GET /v1/promptzip/expand/{id}`` returns the original
  of what a compression of the same credential cut (:mod:`._expand`).

Decisions worth knowing:

* The upstream is fixed by the settings. The request's path is appended to the upstream's path as raw bytes, so
  neither an absolute-form request target nor a ``Host`` header can move a request elsewhere; dot segments
  (``/v1/../x``) are refused. Redirects are not followed and proxy variables of the environment are ignored
  (``trust_env``), so ``Authorization`` only ever reaches the configured upstream. No header value is logged,
  cached or echoed; uvicorn's access log (which would print query strings) is replaced by our own request line
  (:mod:`promptzip.integrations.proxy._logs`), and no log line holds a chat's text.
* Upstream answers are never parsed: any status and body, JSON or not, are passed through as received (a
  non-JSON 200 to a chat completion reaches the client as-is, which is what it would have got without the
  proxy). Upstream unreachable → 502, too slow → 504 (``timeouts.read``), every upstream connection taken
  for ``timeouts.pool`` → 503 (they are given out in turns by client, :class:`~._fair.FairSlots`). A connection that
  breaks mid-body ends the client's response unfinished (the server closes it, so the client sees a truncated
  transfer rather than a clean end), counted in ``upstream_errors_total{kind="stream"}``.
* What a chat's compression touches is its *scope*: ``all`` (default) compresses the context found in every
  message — a system message holding retrieved documents, a last user turn ``"Context: ... Question: ..."`` — and
  keeps each message's instruction and question byte for byte; ``history`` compresses earlier turns only, leaving
  system messages and the last user turn untouched. The ``x-promptzip-scope: all | history`` request header
  chooses it per request (an invalid value is a 400 ``invalid_header``), else the route's ``scope``, else the
  server's (``--scope``). The scope is part of the whole-request result cache's key.
* Every compressed or pass-through answer carries ``x-promptzip-status``, ``x-promptzip-tokens-in``/``-out``,
  ``x-promptzip-preset``, ``x-promptzip-scope``, ``x-promptzip-method`` and the integers ``x-promptzip-regions``
  (context regions found in the chat) and ``x-promptzip-regions-compressed`` (those that came out shorter); both
  are 0 when the chat was not compressed at all (disabled, an encoded body, below ``min_tokens``). A compressed
  chat's answer also says its ``x-promptzip-history`` (``stable`` or ``reselect``, from the request header of that
  name) and ``x-promptzip-reused-messages``: how many leading messages went out as an earlier request of the same
  conversation sent them (cache-stable history; ``x-promptzip-conversation`` or the body's ``prompt_cache_key``
  names the conversation).
* Compression failure: ``fail_mode="open"`` (default) forwards the original body with ``x-promptzip-status:
  fail-open``; ``"closed"`` answers 422 (the chat cannot be compressed to the budget) or 500.
* Compression runs on its own bounded thread pool under a deadline, behind a bounded queue (503 + ``retry-after``
  when full) that takes turns by client (:mod:`._fair`); the whole-request cache lookup runs on a separate small
  pool, so a warm chat never waits for a compression thread. Nothing blocking runs on the event loop. See
  :mod:`._compression` and, for who a request is for (presets, tenants, the per-credential cache scope),
  :mod:`._options`.
* No client can stall the proxy: each chunk of every body must arrive within ``timeouts.write``, and the whole body
  within ``timeouts.body`` plus a second per ``min_body_rate`` bytes (408 ``body_timeout``, and the connection is
  closed); the bodies held in memory, all requests together, are bounded by ``max_buffered_bytes`` (one that does
  not fit: 503 + ``retry-after``, code ``overloaded``), each until it is sent upstream. These are answered in the
  route's error style; see :mod:`._bodies` and :mod:`._budget`. A request's headers must be complete within
  ``timeouts.headers`` and at most ``max_client_connections`` connections are open (:mod:`._connections`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from promptzip._cache import Cache
from promptzip._errors import DeadlineExceeded, UpstreamError
from promptzip._messages import message_tokens
from promptzip._pipeline import Zipper
from promptzip.integrations.proxy._batches import Batches
from promptzip.integrations.proxy._bodies import SMALL_BODY, OneShot, Streamed, read_body, read_or_stream
from promptzip.integrations.proxy._budget import BodyBudget, Reservation
from promptzip.integrations.proxy._compression import Compressions, Overloaded, ZipperFactory
from promptzip.integrations.proxy._dialects import DIALECTS, Dialect, dialect_for
from promptzip.integrations.proxy._errors import (
    RequestError,
    body_limit,
    error_body,
    error_headers,
    error_response,
    status_of,
)
from promptzip.integrations.proxy._expand import OWN_PREFIX, OWN_ROUTE, Expansions
from promptzip.integrations.proxy._fair import FairSlots
from promptzip.integrations.proxy._guard import FramingGuard
from promptzip.integrations.proxy._logs import describe, log_config
from promptzip.integrations.proxy._metrics import CONTENT_TYPE, Metrics, ObserveMiddleware
from promptzip.integrations.proxy._openai_batches import BatchFiles
from promptzip.integrations.proxy._options import (
    client_of,
    end_user_of_body,
    parse_options,
    with_cache_key,
    with_end_user,
    with_model_pricing,
)
from promptzip.integrations.proxy._paths import upstream_path, v1_segments
from promptzip.integrations.proxy._relay import Relay, release_on_close
from promptzip.integrations.proxy._requests import (
    Options,
    Outcome,
    check_path,
    encode,
    parse_json,
    request_headers,
    response_drop,
    skip_reason,
    status_headers,
)
from promptzip.integrations.proxy._settings import FILES, ProxySettings, RouteSettings

__all__ = ["ZipperFactory", "create_app", "serve"]

logger = logging.getLogger("promptzip.proxy")

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# RFC 9110 §7.6.1 hop-by-hop fields, plus what httpx recomputes (host, content-length) and Expect (no 100-continue).
_NO_REGIONS = {"x-promptzip-regions": "0", "x-promptzip-regions-compressed": "0"}  # the chat was not looked at


def _from_preset(preset: str, target: str, cache: Cache) -> Zipper:
    return Zipper.from_preset(preset, target=target, cache=cache)


def create_app(
    settings: ProxySettings,
    *,
    zipper_factory: ZipperFactory | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """The proxy as an ASGI app (serve it with uvicorn; see :func:`promptzip.integrations.proxy.serve`).

    ``zipper_factory`` replaces ``Zipper.from_preset`` (a test may pass a cheap BM25-only stack);
    ``transport`` replaces the network transport to the upstream (``httpx.MockTransport`` in tests).
    The httpx client, the cache and the compression threads are created in the app's lifespan.
    """
    proxy = _Proxy(settings, zipper_factory or _from_preset, transport)
    app = Starlette(
        routes=[
            Route("/healthz", proxy.healthz, methods=["GET", "HEAD"]),
            Route("/metrics", proxy.metrics_endpoint, methods=["GET"]),
            Route(OWN_ROUTE, proxy.expansions.endpoint, methods=METHODS),  # before /v1/*: never forwarded
            Route("/v1/{rest:path}", proxy.v1, methods=METHODS),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
        lifespan=proxy.lifespan,
    )
    app.add_middleware(FramingGuard)  # before Observe: inside it, so refusals are counted
    app.add_middleware(ObserveMiddleware, metrics=proxy.metrics, route=proxy.route_label)
    app.state.proxy = proxy
    return app


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = {404: f"no route {request.url.path!r}: the proxy serves /v1/*, /healthz and /metrics"}.get(
        status, exc.detail if isinstance(exc, HTTPException) else "error"
    )
    return JSONResponse(error_body(message, type="invalid_request_error", code=f"http_{status}"), status_code=status)


async def _internal_error(request: Request, exc: Exception) -> Response:
    route = request.app.state.proxy.route_label(request.url.path)  # a path may carry ids: the label only
    logger.error("proxy: unhandled %s on %s %s", type(exc).__name__, request.method, route)
    return error_response(exc)


class _Proxy:
    def __init__(self, settings: ProxySettings, factory: ZipperFactory, transport: httpx.AsyncBaseTransport | None):
        self.settings = settings
        self.metrics = Metrics()
        self._transport = transport
        self._upstream = httpx.URL(settings.upstream)
        self._clients: list[httpx.AsyncClient] = []
        self._turn: Iterator[httpx.AsyncClient] = iter(())
        self.compressions = Compressions(settings, factory, self.metrics)
        self.body_budget = BodyBudget(settings.max_buffered_bytes)  # what all requests' bodies may hold together
        # The upstream connections, given out in turns by client when all are taken (._fair)
        self.upstream_slots = FairSlots(settings.max_connections, fair=settings.fair_queue)
        self.expansions = Expansions(settings, self.compressions)  # what compressions cut, per credential
        self.batches = Batches(self.compressions, self.metrics, forward=self._forward, count_small=self._count_small)
        self.batch_files = BatchFiles(self.batches, self.compressions, self.metrics, forward=self._forward)

    def route_label(self, path: str) -> str:
        """The ``route`` label of a request path in metrics and logs (the path itself only for known routes)."""
        if path in ("/healthz", "/metrics"):
            return path[1:]
        if path.startswith(OWN_PREFIX):
            return "expand" if path.startswith(OWN_PREFIX + "expand/") else "not_found"
        if self.settings.route(path) is not None or self.settings.batch_route(path) is not None or path == FILES:
            return path
        return "passthrough" if path.startswith("/v1/") else "not_found"

    # -------------------------------------------------------------------------------------------- lifespan
    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        s = self.settings
        self.compressions.start()
        cache = self.compressions.cache
        self.metrics.cache_stats = lambda: {"hits": cache.hits, "misses": cache.misses, "errors": cache.errors}
        # httpcore's pool does work quadratic in its connections on every request (encode/httpcore#1035) and may
        # close a connection it just handed out when it evicts surplus keep-alives (encode/httpcore#1110): so the
        # connections are split over a few clients used in turn, each keeping all of its connections alive.
        pools = 1 if self._transport is not None else s.upstream_pools
        per_pool = max(1, -(-s.max_connections // pools))
        timeout = httpx.Timeout(
            connect=s.timeouts.connect, read=s.timeouts.read, write=s.timeouts.write, pool=s.timeouts.pool
        )
        self._clients = [
            httpx.AsyncClient(
                timeout=timeout,
                limits=httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool),
                transport=self._transport,
                trust_env=s.trust_env,
                follow_redirects=False,
            )
            for _ in range(pools)
        ]
        self._turn = itertools.cycle(self._clients)
        try:
            if s.warmup:
                route = s.routes[next(iter(s.routes))]
                await self.compressions.io(self.compressions.warmup, route.preset or s.preset, route.target or s.target)
            logger.info("promptzip proxy ready: upstream %s", s.upstream)
            yield
        finally:
            clients, self._clients = self._clients, []
            for client in clients:
                await client.aclose()
            self.compressions.close()

    # ------------------------------------------------------------------------------------------- endpoints
    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def metrics_endpoint(self, request: Request) -> Response:
        return PlainTextResponse(self.metrics.render(), media_type=CONTENT_TYPE)

    async def v1(self, request: Request) -> Response:
        dialect = DIALECTS["chat"]  # whose style errors take: OpenAI's, unless a compressed route says otherwise
        # Given back once the handler is done with the body: sent upstream (before its answer is relayed), refused or
        # abandoned.
        with self.body_budget.reservation() as held:
            try:
                path = check_path(request)  # decoded once from the raw path: what is forwarded is what is routed
                route = self.settings.route(path)
                if route is not None and request.method == "POST":
                    dialect = dialect_for(path, route)
                    return await self._chat(request, route, dialect, held)
                messages_route = self.settings.batch_route(path)
                if messages_route is not None and request.method == "POST":  # each request as that route sends one
                    dialect = DIALECTS["anthropic"]
                    return await self.batches.create(request, messages_route, dialect, held)
                if path == FILES and request.method == "POST":  # a batch file's lines, each as its route sends one
                    return await self.batch_files.create(request, held)
                # Read whole only what an idle proxy has room for: any more is forwarded as it arrives.
                settings = self.settings
                small = min(SMALL_BODY, settings.max_forward_bytes or SMALL_BODY, settings.max_buffered_bytes)
                body = await read_or_stream(request, small, settings, held)
                return await self._forward(request, body, {})
            except (RequestError, UpstreamError) as exc:
                limit = body_limit(exc)
                if limit is not None:
                    self.metrics.bodies_refused.inc(limit)
                return dialect.error(exc, headers=error_headers(exc))

    # ------------------------------------------------------------------------------------- compressed routes
    async def _chat(self, request: Request, route: RouteSettings, dialect: Dialect, held: Reservation) -> Response:
        body = await read_body(request, self.settings.max_body_bytes, self.settings, held)
        skipped = skip_reason(request.headers)
        if skipped is not None:
            self.metrics.compressions.inc("passthrough")
            extra = {**status_headers("passthrough", skipped), **_NO_REGIONS}
            return await self._forward(request, body, extra)  # its end user's turn, read from the body there
        arrived = time.monotonic()
        off_loop = partial(self.compressions.off_loop, len(body))  # a large body is read and written on a thread
        payload = await off_loop(parse_json, body)
        options = parse_options(request.headers, route, self.settings, self.compressions.secret)
        options = with_end_user(options, payload, self.compressions.secret)
        turn = (options.client, options.user)  # whose turn its upstream connection takes, read once
        # What a cache breakpoint keeps depends on the history; checking the chat walks every value of the body.
        chat = await off_loop(partial(dialect.read, payload, history=options.history))
        if isinstance(chat, str):  # a valid body with nothing the dialect may change: the upstream decides
            self.metrics.compressions.inc("passthrough")
            extra = {**status_headers("passthrough", chat), **_NO_REGIONS}
            return await self._forward(request, body, extra, turn=turn)
        messages = chat.messages
        options = with_model_pricing(with_cache_key(options, payload), payload)
        started = time.perf_counter()
        try:
            # A body shorter than min_tokens bytes is almost surely a pass-through (a token is at least one byte):
            # count it right here instead of paying a thread hop, unless it is large enough to read on a thread.
            here = len(body) < options.min_tokens and self.compressions.read_here(len(body))
            small = self._count_small(messages, options) if here else None
            outcome: Outcome = small or await self.compressions.outcome(messages, options, arrived)
        except Overloaded as exc:
            self.metrics.compressions.inc("overloaded")
            return dialect.error(exc, headers={**error_headers(exc), "x-promptzip-status": "error"})
        except Exception as exc:
            seconds = time.perf_counter() - started
            return await self._compression_failed(request, body, options, exc, seconds, dialect)
        self.metrics.compression_seconds.observe(outcome.seconds)
        self.metrics.tokens_in.inc(amount=outcome.tokens_in)
        self.metrics.tokens_out.inc(amount=outcome.tokens_out)
        self.metrics.tokens_saved.inc(amount=max(0, outcome.tokens_in - outcome.tokens_out))
        headers = {
            "x-promptzip-tokens-in": str(outcome.tokens_in),
            "x-promptzip-tokens-out": str(outcome.tokens_out),
            "x-promptzip-preset": options.preset,
            "x-promptzip-scope": options.scope,
            "x-promptzip-method": outcome.method,
            "x-promptzip-regions": str(outcome.regions),
            "x-promptzip-regions-compressed": str(outcome.regions_compressed),
            "x-promptzip-history": options.history,
            "x-promptzip-reused-messages": str(outcome.reused_messages),
            **({"x-promptzip-dropped": outcome.dropped} if outcome.dropped else {}),
            **outcome.headers,
        }
        if outcome.messages is None:
            self.metrics.compressions.inc("passthrough")
            extra = {**status_headers("passthrough", outcome.reason), **headers}
            return await self._forward(request, body, extra, turn=turn)
        kept = outcome.messages
        new_body = await off_loop(lambda: encode(dialect.write(payload, chat, kept)))
        self.metrics.compressions.inc("compressed")
        return await self._forward(request, new_body, {**status_headers("compressed"), **headers}, turn=turn)

    async def _compression_failed(
        self, request: Request, body: bytes, options: Options, exc: Exception, seconds: float, dialect: Dialect
    ) -> Response:
        _, _, code = status_of(exc)
        # A deadline says which limit it hit, so a client can tell a slow chat from a broken one.
        limit = {"x-promptzip-deadline": f"{options.deadline:g}"} if isinstance(exc, DeadlineExceeded) else {}
        if options.fail_mode == "closed":
            self.metrics.compressions.inc("error")
            logger.warning("proxy: compression failed (fail-closed): %s", describe(exc, code, body_bytes=len(body)))
            headers = {"x-promptzip-status": "error", "x-promptzip-error": code, **limit}
            return dialect.error(exc, headers=headers)
        self.metrics.compressions.inc("fail-open")
        self.metrics.fail_open.inc()
        self.metrics.compression_seconds.observe(seconds)
        logger.warning(
            "proxy: compression failed, forwarding the original: %s", describe(exc, code, body_bytes=len(body))
        )
        headers = {
            "x-promptzip-status": "fail-open",
            "x-promptzip-error": code,
            "x-promptzip-preset": options.preset,
            "x-promptzip-scope": options.scope,
            **limit,
        }
        return await self._forward(request, body, headers, turn=(options.client, options.user))

    # ------------------------------------------------------------------------------------- on the event loop
    def _count_small(self, messages: list[dict[str, Any]], options: Options) -> Outcome | None:
        """The pass-through outcome of a chat below ``min_tokens``, when its Zipper is built (else ``None``)."""
        zipper = self.compressions.built(options.preset, options.target)
        if zipper is None:
            return None
        tokens = message_tokens(messages, zipper.tokenizer.count)
        if tokens >= options.min_tokens:
            return None
        return Outcome(None, tokens, tokens, "below-min-tokens", zipper.compressor.name)

    # ------------------------------------------------------------------------------------------- upstream
    def _url(self, request: Request) -> httpx.URL:
        # From the segments check_path accepted, quoted again: slicing raw bytes would split an escape (%76%31).
        path = upstream_path(self._upstream.raw_path.split(b"?")[0], v1_segments(request.scope))
        query = request.scope.get("query_string", b"")
        return self._upstream.copy_with(raw_path=path + (b"?" + query if query else b""))

    async def _forward(
        self,
        request: Request,
        body: bytes | Streamed,
        extra: Mapping[str, str],
        *,
        content_type: str | None = None,
        turn: tuple[str, str] | None = None,
    ) -> Response:
        """Send the request upstream and relay its answer, once a connection is free for ``turn``: the request's
        client and end user (a compressed route's ``Options.client`` and ``Options.user``), else its client as its
        headers say and the end user a body read whole names (:func:`end_user_of_body`)."""
        if not self._clients:
            raise RuntimeError("the proxy's lifespan has not run: serve the app with uvicorn or enter its lifespan")
        client = next(self._turn)
        headers = request_headers(request.headers.raw)
        if content_type is not None:  # a re-encoded body's own (a form's new boundary)
            headers = [(k, v) for k, v in headers if k.lower() != b"content-type"]
            headers.append((b"content-type", content_type.encode("latin-1")))
        # Bytes given as content= would live on in the request, which the answer keeps: let go of them once sent.
        # No body stays b"", which httpx frames as before (no content-length, or 0 for a POST).
        content = OneShot(body) if isinstance(body, bytes) and body else body
        if not isinstance(content, bytes) and content.length is not None:  # else httpx would send it chunked
            headers.append((b"content-length", str(content.length).encode("ascii")))
        upstream_request = client.build_request(request.method, self._url(request), headers=headers, content=content)
        if turn is None:
            secret = self.compressions.secret
            # A chat sent as given or a pass-through route's body (embeddings, say) takes its end user's turn inside
            # its key's, as a compressed chat does; a streamed body, or one that is not JSON, takes the key's. By
            # arrival every request is one: the body is not parsed for nothing.
            named = ""
            if isinstance(body, bytes) and self.upstream_slots.fair:
                named = await self.compressions.off_loop(len(body), end_user_of_body, body, secret)
            turn = (client_of(request.headers, self.settings, secret), named)
        who, user = turn
        try:
            async with asyncio.timeout(self.settings.timeouts.pool):
                await self.upstream_slots.acquire(who, user)
        except TimeoutError as exc:
            self.metrics.upstream_errors.inc("pool")
            raise UpstreamError("the proxy has no free upstream connection; retry later", status_code=503) from exc
        try:
            response = await self._send(client, upstream_request)
        except BaseException:
            self.upstream_slots.release(who, user)
            raise
        release_on_close(response, lambda: self.upstream_slots.release(who, user))
        headers = [(k, v) for k, v in response.headers.raw if k.lower() not in response_drop(response.headers)]
        headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
        return Relay(response, headers, self.metrics)

    async def _send(self, client: httpx.AsyncClient, upstream_request: httpx.Request) -> httpx.Response:
        try:
            response = await client.send(upstream_request, stream=True)
        except httpx.PoolTimeout as exc:
            self.metrics.upstream_errors.inc("pool")
            raise UpstreamError("the proxy has no free upstream connection; retry later", status_code=503) from exc
        except httpx.TimeoutException as exc:
            self.metrics.upstream_errors.inc("timeout")
            raise UpstreamError("the upstream did not answer in time", status_code=504) from exc
        except httpx.ConnectError as exc:
            self.metrics.upstream_errors.inc("connect")
            raise UpstreamError("cannot connect to the upstream", status_code=502) from exc
        except httpx.HTTPError as exc:
            self.metrics.upstream_errors.inc("protocol")
            raise UpstreamError("the upstream's answer is not valid HTTP", status_code=502) from exc
        if not 100 <= response.status_code <= 599:  # h11 reads any three digits; no server can send 600 on
            await response.aclose()
            self.metrics.upstream_errors.inc("protocol")
            raise UpstreamError(
                f"the upstream answered status {response.status_code}, not an HTTP status", status_code=502
            )
        return response


def serve(settings: ProxySettings, *, log_level: str = "info", zipper_factory: ZipperFactory | None = None) -> None:
    """Run the proxy under uvicorn on ``settings.host:settings.port`` until interrupted.

    uvicorn's access log is off (it prints query strings, which some providers use for keys); the proxy logs one
    line per request on ``promptzip.proxy.access`` instead, at info. ``log_level`` sets ``promptzip.proxy`` as well
    as uvicorn's loggers (:func:`~promptzip.integrations.proxy._logs.log_config`). ``X-Forwarded-*`` headers are
    not trusted. Connections are served by :class:`~._connections.GuardedH11` (header deadline, connection cap).
    """
    import uvicorn

    from promptzip.integrations.proxy._connections import raise_descriptor_limit, server_options

    app = create_app(settings, zipper_factory=zipper_factory)
    raise_descriptor_limit(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        log_config=log_config(log_level),
        access_log=False,
        proxy_headers=False,
        server_header=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
        **server_options(app),
    )
    uvicorn.Server(config).run()
