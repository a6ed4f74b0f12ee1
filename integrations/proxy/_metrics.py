"""The proxy's Prometheus metrics, kept by ``prometheus_client``.

Each app owns one :class:`Metrics`, and its metrics live in that object's own ``CollectorRegistry``: two apps in
one process count apart, and ``create_app`` keeps no module state. The small wrappers below give the proxy one call
shape for every metric (label values positional, ``amount=`` by keyword); the library's metrics are thread-safe,
so worker threads may update them too. :class:`ObserveMiddleware` counts and times every answer into it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
from prometheus_client import Counter as _Counter
from prometheus_client import Gauge as _Gauge
from prometheus_client import Histogram as _Histogram
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from promptzip.integrations.proxy._logs import access, note, request_line, request_notes

__all__ = ["CONTENT_TYPE", "Counter", "Gauge", "Histogram", "Metrics", "ObserveMiddleware"]

# What generate_latest writes (the library's own exposition servers answer a plain scrape with this type too).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

_K = TypeVar("_K", bound=MetricWrapperBase)


class _Family(Generic[_K]):
    """One library metric with the proxy's call shape: label values positional, in ``label_names`` order."""

    def __init__(self, name: str, help: str, labels: Sequence[str], metric: _K) -> None:
        self.name, self.help, self.label_names = name, help, tuple(labels)
        self._metric: _K = metric

    def _check(self, labels: Sequence[str]) -> None:
        if len(labels) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {tuple(labels)}")

    def _series(self, labels: Sequence[str]) -> _K:
        self._check(labels)
        return self._metric.labels(*labels) if labels else self._metric

    def _read(self, sample: str, labels: Sequence[str]) -> float:
        """The value of one sample, 0 for a series never updated (reading creates no series)."""
        self._check(labels)
        wanted = dict(zip(self.label_names, map(str, labels), strict=True))
        for family in self._metric.collect():
            for s in family.samples:
                if s.name == sample and s.labels == wanted:
                    return s.value
        return 0.0


class Counter(_Family[_Counter]):
    def __init__(self, name: str, help: str, labels: Sequence[str], registry: CollectorRegistry) -> None:
        super().__init__(name, help, labels, _Counter(name, help, labels, registry=registry))

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self._series(labels).inc(amount)

    def value(self, *labels: str) -> float:
        return self._read(self.name, labels)


class Gauge(_Family[_Gauge]):
    def __init__(self, name: str, help: str, labels: Sequence[str], registry: CollectorRegistry) -> None:
        super().__init__(name, help, labels, _Gauge(name, help, labels, registry=registry))

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self._series(labels).inc(amount)

    def dec(self, *labels: str, amount: float = 1.0) -> None:
        self._series(labels).dec(amount)

    def value(self, *labels: str) -> float:
        return self._read(self.name, labels)


class Histogram(_Family[_Histogram]):
    def __init__(
        self,
        name: str,
        help: str,
        labels: Sequence[str],
        registry: CollectorRegistry,
        buckets: Iterable[float],
        *,
        note: str | None = None,
    ) -> None:
        self.buckets = tuple(sorted(buckets))
        super().__init__(name, help, labels, _Histogram(name, help, labels, registry=registry, buckets=self.buckets))
        self._note = note  # each value is also noted for the current request's log line under this name

    def observe(self, value: float, *labels: str) -> None:
        self._series(labels).observe(value)
        if self._note is not None:
            note(self._note, value)

    def count(self, *labels: str) -> int:
        return int(self._read(self.name + "_count", labels))


class _CacheCounters:
    """The cache's own hit, miss and error counters, read when scraped: the cache keeps them, not the proxy."""

    FIELDS = (
        ("hits", "Cache lookups that found a value"),
        ("misses", "Cache lookups that found nothing (failures included)"),
        ("errors", "Cache backend failures, each degraded to a miss or a skipped write"),
    )

    def __init__(self, prefix: str, read: Callable[[], dict[str, int]]) -> None:
        self.prefix, self.read = prefix, read

    def collect(self) -> Iterator[Metric]:
        stats = self.read()
        for field, help in self.FIELDS:
            yield CounterMetricFamily(f"{self.prefix}cache_{field}_total", help, value=float(stats.get(field, 0)))


class Metrics:
    """The proxy's metrics. ``cache_stats`` (set by the app once its cache exists) feeds the cache counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.cache_stats: Callable[[], dict[str, int]] = dict
        p, r = "promptzip_proxy_", self.registry
        self.requests = Counter(p + "requests_total", "HTTP requests answered", ("route", "status"), r)
        self.request_seconds = Histogram(
            p + "request_seconds", "Time to response headers", ("route",), r, LATENCY_BUCKETS
        )
        self.in_flight = Gauge(p + "requests_in_flight", "Requests being handled", (), r)
        self.compressions = Counter(p + "compressions_total", "Chat requests by outcome", ("status",), r)
        self.compression_seconds = Histogram(
            p + "compression_seconds", "Time spent compressing", (), r, LATENCY_BUCKETS, note="compress_s"
        )
        self.tokens_in = Counter(p + "tokens_in_total", "Prompt tokens received", (), r)
        self.tokens_out = Counter(p + "tokens_out_total", "Prompt tokens sent upstream", (), r)
        self.tokens_saved = Counter(p + "tokens_saved_total", "Prompt tokens removed", (), r)
        self.result_cache = Counter(p + "result_cache_total", "Whole-request compression cache lookups", ("result",), r)
        self.upstream_errors = Counter(p + "upstream_errors_total", "Upstream failures by kind", ("kind",), r)
        self.bodies_refused = Counter(
            p + "bodies_refused_total",
            "Request bodies refused at a limit, by its setting: max_body_bytes, max_forward_bytes (413), "
            "max_buffered_bytes (503), timeouts.write, timeouts.body (408)",
            ("limit",),
            r,
        )
        self.connections_refused = Counter(
            p + "connections_refused_total",
            "Client connections refused or closed at a limit, by its setting: max_client_connections, "
            "max_connections_per_client (503: every open one busy), "
            "timeouts.headers (408, or closed when nothing of a request came)",
            ("limit",),
            r,
        )
        self.connections_closed_idle = Counter(
            p + "connections_closed_idle_total",
            "Client connections waiting for a request, closed to make room for a new one at a limit, by its setting: "
            "max_client_connections, max_connections_per_client",
            ("limit",),
            r,
        )
        self.connections_open = Gauge(p + "connections_open", "Client connections open (max_client_connections)", (), r)
        self.deadline_exceeded = Counter(p + "deadline_exceeded_total", "Compressions stopped at their deadline", (), r)
        self.overloaded = Counter(
            p + "overloaded_total", "Chats refused with 503: every compression slot was taken", (), r
        )
        self.shed = Counter(
            p + "compressions_shed_total",
            "Waiting compressions shed (503) to admit another client's: their client held the most (fair_queue)",
            (),
            r,
        )
        self.single_flight = Counter(
            p + "single_flight_total", "Chats that shared an identical chat's compression", (), r
        )
        self.queue = Gauge(p + "compressions_admitted", "Compressions running or waiting for a thread", (), r)
        self.fail_open = Counter(
            p + "fail_open_total", "Compressor failures answered by forwarding the original", (), r
        )
        # Read through self at each scrape: the app replaces cache_stats once its cache exists.
        self.registry.register(_CacheCounters(p, lambda: self.cache_stats()))

    def render(self) -> str:
        return generate_latest(self.registry).decode("utf-8")


class ObserveMiddleware:
    """ASGI middleware: counts every answer by route (``route(path)`` names it) and status, times it to its headers,
    and logs one line when it is done (:func:`promptzip.integrations.proxy._logs.request_line`: no content, no
    header value, no query)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, route: Callable[[str], str]) -> None:
        self.app, self.metrics, self.route = app, metrics, route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics, started = self.metrics, time.perf_counter()
        route = self.route(scope.get("path", ""))
        status = 500
        headers: list[tuple[bytes, bytes]] = []

        async def observe(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", ()))
                metrics.request_seconds.observe(time.perf_counter() - started, route)
            await send(message)

        metrics.in_flight.inc()
        with request_notes() as notes:
            try:
                await self.app(scope, receive, observe)
            finally:
                metrics.in_flight.dec()
                metrics.requests.inc(route, str(status))
                if access.isEnabledFor(logging.INFO):
                    method = str(scope.get("method", ""))
                    total = time.perf_counter() - started
                    access.info("%s", request_line(method, route, status, headers, notes, total))
