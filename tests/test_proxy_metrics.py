"""The proxy's /metrics: every promised metric with its type, per-app registries, values and the content type,
checked with prometheus_client's own parser."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from proxy_helpers import bm25, settings
from starlette.testclient import TestClient

from promptzip.integrations.proxy import create_app
from promptzip.integrations.proxy._metrics import LATENCY_BUCKETS, Metrics
from promptzip.integrations.proxy.testing import FakeUpstream

P = "promptzip_proxy_"
PROMISED = {
    P + "requests_total": "counter",
    P + "request_seconds": "histogram",
    P + "requests_in_flight": "gauge",
    P + "compressions_total": "counter",
    P + "compression_seconds": "histogram",
    P + "tokens_in_total": "counter",
    P + "tokens_out_total": "counter",
    P + "tokens_saved_total": "counter",
    P + "result_cache_total": "counter",
    P + "upstream_errors_total": "counter",
    P + "bodies_refused_total": "counter",
    P + "connections_refused_total": "counter",
    P + "connections_closed_idle_total": "counter",
    P + "connections_open": "gauge",
    P + "deadline_exceeded_total": "counter",
    P + "overloaded_total": "counter",
    P + "compressions_shed_total": "counter",
    P + "single_flight_total": "counter",
    P + "compressions_admitted": "gauge",
    P + "fail_open_total": "counter",
    P + "cache_hits_total": "counter",
    P + "cache_misses_total": "counter",
    P + "cache_errors_total": "counter",
}
LONG = " ".join(f"Sentence {i} talks about topic {i % 7} and the number {i * 13}." for i in range(120))
CHAT = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": LONG}, {"role": "user", "content": "What about topic 3?"}],
}


def families(text: str) -> dict[str, str]:
    """Exposed family name -> type (the parser drops a counter's ``_total``; it is put back)."""
    return {
        f.name + ("_total" if f.type == "counter" else ""): f.type
        for f in text_string_to_metric_families(text)
        if not f.name.endswith("_created")
    }


def samples(text: str) -> list[Sample]:
    return [s for f in text_string_to_metric_families(text) for s in f.samples]


def value(text: str, name: str, **labels: str) -> float:
    found = [s.value for s in samples(text) if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, found)
    return found[0]


@pytest.fixture
def two_apps(upstream: FakeUpstream) -> Iterator[tuple[TestClient, TestClient]]:
    with (
        TestClient(create_app(settings(upstream.url), zipper_factory=bm25)) as a,
        TestClient(create_app(settings(upstream.url), zipper_factory=bm25)) as b,
    ):
        yield a, b


def test_every_promised_metric_is_exposed_with_its_type_and_help() -> None:
    text = Metrics().render()
    assert families(text) == PROMISED
    helps = {f.name: f.documentation for f in text_string_to_metric_families(text)}
    assert helps[P + "overloaded"] == "Chats refused with 503: every compression slot was taken"
    assert helps[P + "request_seconds"] == "Time to response headers"


def test_two_apps_in_one_process_count_apart(two_apps: tuple[TestClient, TestClient]) -> None:
    a, b = two_apps
    assert a.post("/v1/chat/completions", json=CHAT).headers["x-promptzip-status"] == "compressed"
    a.post("/v1/chat/completions", content=b"{")
    a_text, b_text = a.get("/metrics").text, b.get("/metrics").text
    route = "/v1/chat/completions"
    assert value(a_text, P + "requests_total", route=route, status="200") == 1
    assert value(a_text, P + "requests_total", route=route, status="400") == 1
    assert value(a_text, P + "compressions_total", status="compressed") == 1
    assert value(a_text, P + "compression_seconds_count") == 1
    assert value(a_text, P + "tokens_in_total") > value(a_text, P + "tokens_out_total") > 0
    assert not [s for s in samples(b_text) if s.name == P + "requests_total" and s.labels["route"] == route]
    assert value(b_text, P + "compression_seconds_count") == 0
    assert value(b_text, P + "tokens_in_total") == 0
    assert families(a_text) == families(b_text) == PROMISED


def test_metrics_endpoint_answers_with_prometheus_content_type(two_apps: tuple[TestClient, TestClient]) -> None:
    r = two_apps[0].get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert families(r.text) == PROMISED


def test_updates_through_the_interface_show_in_the_exposition() -> None:
    metrics = Metrics()
    metrics.compressions.inc("passthrough")
    metrics.compressions.inc("passthrough")
    metrics.compressions.inc("fail-open")
    metrics.tokens_in.inc(amount=1200)
    metrics.in_flight.inc()
    metrics.in_flight.inc()
    metrics.in_flight.dec()
    metrics.compression_seconds.observe(0.02)
    metrics.compression_seconds.observe(45.0)
    metrics.cache_stats = lambda: {"hits": 4, "misses": 2}
    text = metrics.render()
    assert value(text, P + "compressions_total", status="passthrough") == 2 == metrics.compressions.value("passthrough")
    assert value(text, P + "compressions_total", status="fail-open") == 1
    assert value(text, P + "tokens_in_total") == 1200 == metrics.tokens_in.value()
    assert value(text, P + "requests_in_flight") == 1 == metrics.in_flight.value()
    assert (value(text, P + "cache_hits_total"), value(text, P + "cache_misses_total")) == (4, 2)
    assert value(text, P + "cache_errors_total") == 0
    buckets = {float(s.labels["le"]): s.value for s in samples(text) if s.name == P + "compression_seconds_bucket"}
    assert sorted(buckets) == [*LATENCY_BUCKETS, math.inf]
    assert (buckets[0.01], buckets[0.025], buckets[30.0], buckets[60.0], buckets[math.inf]) == (0, 1, 1, 2, 2)
    assert value(text, P + "compression_seconds_sum") == pytest.approx(45.02)
    assert metrics.compression_seconds.count() == 2


def test_wrong_label_count_is_refused() -> None:
    metrics = Metrics()
    with pytest.raises(ValueError, match="takes labels"):
        metrics.compressions.inc()
    with pytest.raises(ValueError, match="takes labels"):
        metrics.tokens_in.inc("extra")
    with pytest.raises(ValueError, match="takes labels"):
        metrics.requests.value("/v1/chat/completions")
