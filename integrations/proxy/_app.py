"""The proxy: an ASGI app between OpenAI-compatible clients and one fixed upstream.

``create_app(settings)`` builds everything; nothing lives at module level. Per request:

* ``POST`` to a compressed route (``/v1/chat/completions`` unless the settings say otherwise): the body is read
  under the size limit, validated (4xx JSON errors), its ``messages`` compressed in a worker thread, and the
  request forwarded. The response — JSON or SSE — is streamed back byte for byte. The request of a streaming call
  is compressed too; its response stream is not touched.
* Any other ``/v1/*`` request is forwarded untouched: method, path, query, body and headers (minus hop-by-hop
  ones and the ``x-promptzip-*`` controls).
* ``/healthz`` answers ``{"status": "ok"}``; ``/metrics`` is Prometheus text.

Decisions worth knowing:

* The upstream is fixed by the settings. The request's path is appended to the upstream's path as raw bytes, so
  neither an absolute-form request target nor a ``Host`` header can move a request elsewhere; dot segments
  (``/v1/../x``) are refused. Redirects are not followed and proxy variables of the environment are ignored
  (``trust_env``), so ``Authorization`` only ever reaches the configured upstream. No header value is logged,
  cached or echoed; uvicorn's access log (which would print query strings) is replaced by our own debug line.
* Upstream answers are never parsed: any status and body, JSON or not, are passed through as received (a
  non-JSON 200 to a chat completion reaches the client as-is, which is what it would have got without the
  proxy). Upstream unreachable → 502, too slow → 504 (``timeouts.read``), pool exhausted → 503. A connection that
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
  are 0 when the chat was not compressed at all (disabled, an encoded body, below ``min_tokens``).
* Compression failure: ``fail_mode="open"`` (default) forwards the original body with ``x-promptzip-status:
  fail-open``; ``"closed"`` answers 422 (the chat cannot be compressed to the budget) or 500.
* Compression, the whole-request result cache and the cache backend (SQLite, Redis: blocking calls) all run in
  one worker-thread hop per request, on a bounded pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from promptzip._cache import Cache, cache_from_url, encode_json, make_key
from promptzip._errors import UpstreamError
from promptzip._messages import message_tokens
from promptzip._pipeline import Zipper
from promptzip._registry import registries
from promptzip._types import Budget
from promptzip.integrations.proxy._errors import PayloadTooLarge, RequestError, error_body, error_response, status_of
from promptzip.integrations.proxy._metrics import CONTENT_TYPE, Metrics, ObserveMiddleware
from promptzip.integrations.proxy._relay import Relay
from promptzip.integrations.proxy._requests import (
    Options,
    Outcome,
    check_chat,
    check_path,
    decode_outcome,
    encode,
    encode_outcome,
    flag,
    int_header,
    parse_json,
    rate_header,
    request_headers,
    response_drop,
    scope_header,
    status_headers,
)
from promptzip.integrations.proxy._settings import ProxySettings, RouteSettings

__all__ = ["ZipperFactory", "create_app", "serve"]

logger = logging.getLogger("promptzip.proxy")

ZipperFactory = Callable[[str, str, Cache], Zipper]
"""Builds the Zipper for (preset, target, cache); the default is ``Zipper.from_preset``."""

RESULT_CACHE_VERSION = "1"
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# RFC 9110 §7.6.1 hop-by-hop fields, plus what httpx recomputes (host, content-length) and Expect (no 100-continue).
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PRESET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
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
            Route("/v1/{rest:path}", proxy.v1, methods=METHODS),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
        lifespan=proxy.lifespan,
    )
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
    logger.error("proxy: unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path)
    return error_response(exc)


class _Proxy:
    def __init__(self, settings: ProxySettings, factory: ZipperFactory, transport: httpx.AsyncBaseTransport | None):
        self.settings = settings
        self.metrics = Metrics()
        self._factory = factory
        self._transport = transport
        self._upstream = httpx.URL(settings.upstream)
        self._clients: list[httpx.AsyncClient] = []
        self._turn: Iterator[httpx.AsyncClient] = iter(())
        self._cache: Cache | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._zippers: OrderedDict[tuple[str, str, str | None], Zipper] = OrderedDict()
        self._zlock = threading.Lock()  # the zippers are looked up in worker threads

    def route_label(self, path: str) -> str:
        """The ``route`` label of a request path in metrics and logs (the path itself only for known routes)."""
        if path in ("/healthz", "/metrics"):
            return path[1:]
        if self.settings.route(path) is not None:
            return path
        return "passthrough" if path.startswith("/v1/") else "not_found"

    # -------------------------------------------------------------------------------------------- lifespan
    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        s = self.settings
        cache = self._cache = cache_from_url(s.cache)
        self.metrics.cache_stats = lambda: {"hits": cache.hits, "misses": cache.misses, "errors": cache.errors}
        self._pool = ThreadPoolExecutor(max_workers=s.compression_threads, thread_name_prefix="promptzip-proxy")
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
                await self._in_thread(self._warmup)
            logger.info("promptzip proxy ready: upstream %s", s.upstream)
            yield
        finally:
            clients, self._clients = self._clients, []
            for client in clients:
                await client.aclose()
            self._pool.shutdown(wait=False, cancel_futures=True)
            cache.close()

    async def _in_thread(self, func: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, func, *args)

    def _warmup(self) -> None:
        route = self.settings.routes[next(iter(self.settings.routes))]
        zipper = self._zipper(route.preset or self.settings.preset, route.target or self.settings.target, None)
        text = "The proxy loads its models at start. It answers requests after that. Nothing else happens here."
        zipper.compress(text, question="When are models loaded?", budget=Budget(rate=0.5))

    # ------------------------------------------------------------------------------------------- endpoints
    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def metrics_endpoint(self, request: Request) -> Response:
        return PlainTextResponse(self.metrics.render(), media_type=CONTENT_TYPE)

    async def v1(self, request: Request) -> Response:
        try:
            check_path(request)
            route = self.settings.route(request.url.path)
            if route is not None and request.method == "POST":
                return await self._chat(request, route)
            body = await self._read_body(request)
            return await self._forward(request, body, {})
        except (RequestError, UpstreamError) as exc:
            return error_response(exc)

    # ------------------------------------------------------------------------------------------ chat route
    async def _chat(self, request: Request, route: RouteSettings) -> Response:
        body = await self._read_body(request)
        if flag(request.headers.get("x-promptzip-disable"), "x-promptzip-disable"):
            self.metrics.compressions.inc("passthrough")
            return await self._forward(request, body, {**status_headers("passthrough", "disabled"), **_NO_REGIONS})
        if request.headers.get("content-encoding", "identity").strip().lower() not in ("identity", ""):
            self.metrics.compressions.inc("passthrough")
            return await self._forward(request, body, {**status_headers("passthrough", "encoded-body"), **_NO_REGIONS})
        payload = parse_json(body)
        messages = check_chat(payload)
        options = self._options(request.headers, route)
        started = time.perf_counter()
        try:
            # A body shorter than min_tokens bytes is almost surely a pass-through (a token is at least one byte):
            # count it right here instead of paying a thread hop. Anything else goes to a worker thread.
            small = self._count_small(messages, options) if len(body) < options.min_tokens else None
            outcome: Outcome = small or await self._in_thread(self._compress, messages, options)
        except Exception as exc:
            return await self._compression_failed(request, body, options, exc, time.perf_counter() - started)
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
            **outcome.headers,
        }
        if outcome.messages is None:
            self.metrics.compressions.inc("passthrough")
            return await self._forward(request, body, {**status_headers("passthrough", outcome.reason), **headers})
        new_body = encode({**payload, "messages": outcome.messages})
        self.metrics.compressions.inc("compressed")
        return await self._forward(request, new_body, {**status_headers("compressed"), **headers})

    async def _compression_failed(
        self, request: Request, body: bytes, options: Options, exc: Exception, seconds: float
    ) -> Response:
        _, _, code = status_of(exc)
        if options.fail_mode == "closed":
            self.metrics.compressions.inc("error")
            logger.warning("proxy: compression failed (fail-closed): %s: %s", type(exc).__name__, exc)
            return error_response(exc, headers={"x-promptzip-status": "error", "x-promptzip-error": code})
        self.metrics.compressions.inc("fail-open")
        self.metrics.fail_open.inc()
        self.metrics.compression_seconds.observe(seconds)
        logger.warning("proxy: compression failed, forwarding the original: %s: %s", type(exc).__name__, exc)
        headers = {
            "x-promptzip-status": "fail-open",
            "x-promptzip-error": code,
            "x-promptzip-preset": options.preset,
            "x-promptzip-scope": options.scope,
        }
        return await self._forward(request, body, headers)

    def _options(self, headers: Mapping[str, str], route: RouteSettings) -> Options:
        s = self.settings
        budget_h, rate_h = headers.get("x-promptzip-budget"), headers.get("x-promptzip-rate")
        if budget_h is not None and rate_h is not None:
            raise RequestError("give x-promptzip-budget or x-promptzip-rate, not both", param="x-promptzip-budget")
        if budget_h is not None:
            budget = Budget(tokens=int_header(budget_h, "x-promptzip-budget"))
        elif rate_h is not None:
            budget = Budget(rate=rate_header(rate_h, "x-promptzip-rate"))
        else:
            budget = s.default_budget(route)
        preset = headers.get("x-promptzip-preset")
        if preset is None:
            preset = route.preset or s.preset
        else:
            preset = preset.strip()
            allowed = s.allowed_presets
            known = _PRESET.match(preset) and (
                preset in allowed if allowed is not None else preset in registries.presets
            )
            if not known:
                raise RequestError(
                    "x-promptzip-preset names no preset this proxy offers",
                    param="x-promptzip-preset",
                    code="unknown_preset",
                )
        scope_h = headers.get("x-promptzip-scope")
        scope = scope_header(scope_h, "x-promptzip-scope") if scope_h is not None else route.scope or s.scope
        tenant = None
        if s.tenant_header is not None:
            tenant = headers.get(s.tenant_header)
            if tenant is not None and not _TENANT.match(tenant):
                raise RequestError(
                    f"{s.tenant_header} must be 1-64 characters of letters, digits, '_', '.' or '-'",
                    param=s.tenant_header,
                    code="invalid_tenant",
                )
        return Options(
            budget=budget,
            preset=preset,
            target=route.target or s.target,
            tenant=tenant,
            min_tokens=route.min_tokens if route.min_tokens is not None else s.min_tokens,
            fail_mode=route.fail_mode or s.fail_mode,
            scope=scope,
        )

    # ---------------------------------------------------------------------------- in the worker thread
    def _zipper(self, preset: str, target: str, tenant: str | None) -> Zipper:
        key = (preset, target, tenant)
        with self._zlock:
            zipper = self._zippers.get(key)
            if zipper is not None:
                self._zippers.move_to_end(key)
                return zipper
        assert self._cache is not None, "the app's lifespan has not run"
        cache = self._cache if tenant is None else self._cache.namespaced(tenant)
        zipper = self._factory(preset, target, cache)
        with self._zlock:
            zipper = self._zippers.setdefault(key, zipper)
            while len(self._zippers) > self.settings.max_zippers:
                self._zippers.popitem(last=False)
        return zipper

    def _count_small(self, messages: list[dict[str, Any]], options: Options) -> Outcome | None:
        """The pass-through outcome of a chat below ``min_tokens``, when its Zipper is built (else ``None``)."""
        with self._zlock:
            zipper = self._zippers.get((options.preset, options.target, options.tenant))
        if zipper is None:
            return None
        tokens = message_tokens(messages, zipper.tokenizer.count)
        if tokens >= options.min_tokens:
            return None
        return Outcome(None, tokens, tokens, "below-min-tokens", zipper.compressor.name)

    def _compress(self, messages: list[dict[str, Any]], options: Options) -> Outcome:
        """Look the chat up in the whole-request cache, else count it and compress it if it is large enough.

        A warm chat is never re-tokenized: the cached outcome carries its token counts. Chats whose JSON is
        shorter than ``min_tokens`` characters are counted first instead (a token is at least one character), so
        small chats cost no cache round trip."""
        started = time.perf_counter()
        zipper = self._zipper(options.preset, options.target, options.tenant)
        method = zipper.compressor.name

        def done(outcome: Outcome) -> Outcome:
            outcome.seconds = time.perf_counter() - started
            return outcome

        def small(tokens_in: int) -> Outcome:
            return done(Outcome(None, tokens_in, tokens_in, "below-min-tokens", method))

        tokens_in: int | None = None
        cache: Cache | None = None
        key = ""
        if self.settings.result_cache:
            assert self._cache is not None, "the app's lifespan has not run"
            canonical = json.dumps(messages, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
            if len(canonical) < options.min_tokens:
                tokens_in = message_tokens(messages, zipper.tokenizer.count)
                if tokens_in < options.min_tokens:
                    return small(tokens_in)
            cache = self._cache if options.tenant is None else self._cache.namespaced(options.tenant)
            key = make_key(
                "proxy-result", RESULT_CACHE_VERSION, zipper.fingerprint, repr(options.budget), options.scope, canonical
            )
            hit = decode_outcome(cache.get(key))
            if hit is not None:
                self.metrics.result_cache.inc("hit")
                if hit.tokens_in < options.min_tokens:  # stored by a route with a lower threshold
                    return small(hit.tokens_in)
                hit.headers["x-promptzip-cache"] = "hit"
                return done(hit)
            self.metrics.result_cache.inc("miss")
        if tokens_in is None:
            tokens_in = message_tokens(messages, zipper.tokenizer.count)
            if tokens_in < options.min_tokens:
                return small(tokens_in)
        outcome = self._run(zipper, messages, options, tokens_in, method)
        if cache is not None:
            cache.put(key, encode_json(encode_outcome(outcome)))
            outcome.headers["x-promptzip-cache"] = "miss"
        return done(outcome)

    @staticmethod
    def _run(zipper: Zipper, messages: list[dict[str, Any]], options: Options, tokens_in: int, method: str) -> Outcome:
        # Where the context is (JSON tool results stay whole and valid) is the core's request understanding.
        result = zipper.compress_messages(messages, budget=options.budget, scope=options.scope)
        out = [dict(m) for m in result.messages or ()]
        changed = out != messages  # else the original body is forwarded
        return Outcome(
            out if changed else None,
            tokens_in,
            message_tokens(out, zipper.tokenizer.count) if changed else tokens_in,
            result.decision,
            method,
            regions=result.regions,
            regions_compressed=result.regions_compressed,
        )

    # ------------------------------------------------------------------------------------------- upstream
    async def _read_body(self, request: Request) -> bytes:
        """The body, refused with 413 as soon as it passes the limit (declared or counted while it streams in)."""
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                raise RequestError("content-length is not a number", param="content-length")
            if int(declared) > limit:
                raise PayloadTooLarge(limit)
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(limit)
                chunks.append(chunk)
        except ClientDisconnect:
            raise RequestError("the client disconnected while sending the body", code="client_disconnected") from None
        return b"".join(chunks)

    def _url(self, request: Request) -> httpx.URL:
        raw = request.scope.get("raw_path") or quote(request.url.path).encode("ascii")
        path = self._upstream.raw_path.split(b"?")[0].rstrip(b"/") + raw[len(b"/v1") :]
        query = request.scope.get("query_string", b"")
        return self._upstream.copy_with(raw_path=path + (b"?" + query if query else b""))

    async def _forward(self, request: Request, body: bytes, extra: Mapping[str, str]) -> Response:
        if not self._clients:
            raise RuntimeError("the proxy's lifespan has not run: serve the app with uvicorn or enter its lifespan")
        client = next(self._turn)
        upstream_request = client.build_request(
            request.method, self._url(request), headers=request_headers(request.headers.raw), content=body
        )
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
        headers = [(k, v) for k, v in response.headers.raw if k.lower() not in response_drop(response.headers)]
        headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
        return Relay(response, headers, self.metrics)


def serve(settings: ProxySettings, *, log_level: str = "info", zipper_factory: ZipperFactory | None = None) -> None:
    """Run the proxy under uvicorn on ``settings.host:settings.port`` until interrupted.

    uvicorn's access log is off (it prints query strings, which some providers use for keys); the proxy logs one
    debug line per request on ``promptzip.proxy`` instead. ``X-Forwarded-*`` headers are not trusted.
    """
    import uvicorn

    config = uvicorn.Config(
        create_app(settings, zipper_factory=zipper_factory),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run()
