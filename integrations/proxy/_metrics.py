"""Prometheus metrics in the text exposition format (0.0.4), written by hand.

Why not ``prometheus_client``: its metrics register in a process-global registry by default (two apps in one
process collide, and create_app must hold no module state), and what the proxy needs — a few counters, a gauge
and two histograms, rendered on scrape — is a hundred lines with no dependency. Each app owns one
:class:`Metrics`; every update is guarded by one lock, so worker threads may update it too.
:class:`ObserveMiddleware` counts and times every answer into it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from promptzip.integrations.proxy._logs import access, note, request_line, request_notes

__all__ = ["CONTENT_TYPE", "Counter", "Gauge", "Histogram", "Metrics", "ObserveMiddleware"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

Labels = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    pairs = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help: str, labels: Sequence[str], lock: threading.Lock) -> None:
        self.name, self.help, self.label_names, self._lock = name, help, tuple(labels), lock

    def _key(self, labels: Sequence[str]) -> Labels:
        if len(labels) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {labels}")
        return tuple(map(str, labels))

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str], lock: threading.Lock) -> None:
        super().__init__(name, help, labels, lock)
        self._values: dict[Labels, float] = {} if labels else {(): 0.0}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, *labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in items]


class Gauge(Counter):
    kind = "gauge"

    def dec(self, *labels: str, amount: float = 1.0) -> None:
        self.inc(*labels, amount=-amount)


class _Observed(_Metric):
    """A metric read from elsewhere at scrape time (the cache's own counters)."""

    def __init__(self, name: str, help: str, kind: str, read: Callable[[], float], lock: threading.Lock) -> None:
        super().__init__(name, help, (), lock)
        self.kind, self._read = kind, read

    def samples(self) -> list[str]:
        return [f"{self.name} {_number(self._read())}"]


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        labels: Sequence[str],
        lock: threading.Lock,
        buckets: Iterable[float],
        *,
        note: str | None = None,
    ) -> None:
        super().__init__(name, help, labels, lock)
        self.buckets = tuple(sorted(buckets))
        self._note = note  # each value is also noted for the current request's log line under this name
        self._counts: dict[Labels, list[int]] = {}
        self._sums: dict[Labels, float] = {}

    def observe(self, value: float, *labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            counts = self._counts.setdefault(key, [0] * (len(self.buckets) + 1))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[i] += 1
            counts[-1] += 1
            self._sums[key] = self._sums.get(key, 0.0) + value
        if self._note is not None:
            note(self._note, value)

    def count(self, *labels: str) -> int:
        with self._lock:
            return self._counts.get(self._key(labels), [0])[-1]

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted((k, list(c), self._sums[k]) for k, c in self._counts.items())
        out: list[str] = []
        for key, counts, total in items:
            for bound, n in zip((*self.buckets, math.inf), counts, strict=True):
                le = 'le="' + _number(bound) + '"'
                out.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {n}")
            out.append(f"{self.name}_sum{_labels(self.label_names, key)} {_number(total)}")
            out.append(f"{self.name}_count{_labels(self.label_names, key)} {counts[-1]}")
        return out


_M = TypeVar("_M", bound=_Metric)


class Metrics:
    """The proxy's metrics. ``cache_stats`` (set by the app once its cache exists) feeds the cache counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._metrics: list[_Metric] = []
        self.cache_stats: Callable[[], dict[str, int]] = dict
        p = "promptzip_proxy_"
        self.requests = self._add(
            Counter(p + "requests_total", "HTTP requests answered", ("route", "status"), self._lock)
        )
        self.request_seconds = self._add(
            Histogram(p + "request_seconds", "Time to response headers", ("route",), self._lock, LATENCY_BUCKETS)
        )
        self.in_flight = self._add(Gauge(p + "requests_in_flight", "Requests being handled", (), self._lock))
        self.compressions = self._add(
            Counter(p + "compressions_total", "Chat requests by outcome", ("status",), self._lock)
        )
        self.compression_seconds = self._add(
            Histogram(
                p + "compression_seconds", "Time spent compressing", (), self._lock, LATENCY_BUCKETS, note="compress_s"
            )
        )
        self.tokens_in = self._add(Counter(p + "tokens_in_total", "Prompt tokens received", (), self._lock))
        self.tokens_out = self._add(Counter(p + "tokens_out_total", "Prompt tokens sent upstream", (), self._lock))
        self.tokens_saved = self._add(Counter(p + "tokens_saved_total", "Prompt tokens removed", (), self._lock))
        self.result_cache = self._add(
            Counter(p + "result_cache_total", "Whole-request compression cache lookups", ("result",), self._lock)
        )
        self.upstream_errors = self._add(
            Counter(p + "upstream_errors_total", "Upstream failures by kind", ("kind",), self._lock)
        )
        self.deadline_exceeded = self._add(
            Counter(p + "deadline_exceeded_total", "Compressions stopped at their deadline", (), self._lock)
        )
        self.overloaded = self._add(
            Counter(p + "overloaded_total", "Chats refused with 503: every compression slot was taken", (), self._lock)
        )
        self.single_flight = self._add(
            Counter(p + "single_flight_total", "Chats that shared an identical chat's compression", (), self._lock)
        )
        self.queue = self._add(
            Gauge(p + "compressions_admitted", "Compressions running or waiting for a thread", (), self._lock)
        )
        self.fail_open = self._add(
            Counter(p + "fail_open_total", "Compressor failures answered by forwarding the original", (), self._lock)
        )
        for field, help in (
            ("hits", "Cache lookups that found a value"),
            ("misses", "Cache lookups that found nothing (failures included)"),
            ("errors", "Cache backend failures, each degraded to a miss or a skipped write"),
        ):
            self._add(_Observed(f"{p}cache_{field}_total", help, "counter", self._cache_reader(field), self._lock))

    def _cache_reader(self, field: str) -> Callable[[], float]:
        return lambda: float(self.cache_stats().get(field, 0))

    def _add(self, metric: _M) -> _M:
        self._metrics.append(metric)
        return metric

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics:
            lines += metric.header() + metric.samples()
        return "\n".join(lines) + "\n"


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
