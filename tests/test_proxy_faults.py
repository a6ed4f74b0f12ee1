"""The proxy under faults: upstream down, slow, failing, speaking garbage or resetting mid-stream; compressors that
crash (fail-open and fail-closed); and a property-based fuzz of request handling that must never produce a 5xx.

Network faults run against a real uvicorn server on 127.0.0.1 in front of :class:`FakeUpstream`, which misbehaves
per request through its ``x-fake-mode`` header.
"""

from __future__ import annotations

import asyncio
import json
import random
import string
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proxy_helpers import bm25, exploding
from starlette.testclient import TestClient

from promptzip._errors import BudgetError
from promptzip._messages import ROLES
from promptzip.evals._redis_server import free_port
from promptzip.integrations.proxy import ProxySettings, Timeouts, create_app
from promptzip.integrations.proxy.testing import GARBAGE, FakeUpstream, live_server

LONG = " ".join(f"Sentence {i} talks about topic {i % 7} and the number {i * 13}." for i in range(300))
CHAT = {
    "model": "gpt-4o",
    "messages": [
        {"role": "user", "content": LONG},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "What is said about topic 3?"},
    ],
}


def proxy_settings(upstream: str, **kw: Any) -> ProxySettings:
    base: dict[str, Any] = {"upstream": upstream, "cache": "memory", "min_tokens": 50}
    return ProxySettings(**{**base, "timeouts": Timeouts(connect=2.0, read=0.5), **kw})


@pytest.fixture(scope="module")
def live(upstream: FakeUpstream) -> Iterator[tuple[str, Any]]:
    app = create_app(proxy_settings(upstream.url), zipper_factory=bm25)
    with live_server(app) as url:
        yield url, app.state.proxy.metrics


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def _error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert error["type"] == "upstream_error"


# ------------------------------------------------------------------------------------------- upstream faults
def test_upstream_down_is_a_502(http: httpx.Client) -> None:
    port = free_port()  # a port that nothing listens on
    app = create_app(proxy_settings(f"http://127.0.0.1:{port}/v1"), zipper_factory=bm25)
    with live_server(app) as url:
        for path in ("/v1/chat/completions", "/v1/embeddings"):
            _error(http.post(url + path, json=CHAT), 502, "upstream_failed")
        assert app.state.proxy.metrics.upstream_errors.value("connect") == 2


def test_slow_upstream_is_a_504_not_a_hang(live: tuple[str, Any], http: httpx.Client) -> None:
    url, metrics = live
    started = time.monotonic()
    _error(
        http.post(url + "/v1/chat/completions", json=CHAT, headers={"x-fake-mode": "slow:3"}), 504, "upstream_timeout"
    )
    _error(http.get(url + "/v1/models", headers={"x-fake-mode": "slow:3"}), 504, "upstream_timeout")
    assert time.monotonic() - started < 2.5
    assert metrics.upstream_errors.value("timeout") >= 2
    assert http.post(url + "/v1/chat/completions", json=CHAT, headers={"x-fake-mode": "slow:0.1"}).status_code == 200


@pytest.mark.parametrize("status", [400, 401, 404, 429, 500, 502, 503])
def test_upstream_errors_pass_through_with_their_status_and_body(
    live: tuple[str, Any], http: httpx.Client, status: int
) -> None:
    url, _ = live
    for path in ("/v1/chat/completions", "/v1/embeddings"):
        r = http.post(url + path, json=CHAT, headers={"x-fake-mode": f"status:{status}"})
        assert r.status_code == status
        assert r.json()["error"]["message"] == f"fake upstream status {status}"


def test_garbage_from_the_upstream(live: tuple[str, Any], http: httpx.Client) -> None:
    url, metrics = live
    # A 200 whose body is not JSON: relayed as-is (the proxy never parses answers), on every route.
    for path in ("/v1/chat/completions", "/v1/embeddings"):
        r = http.post(url + path, json=CHAT, headers={"x-fake-mode": "garbage"})
        assert (r.status_code, r.content) == (200, GARBAGE)
    # Bytes that are not HTTP at all, or a connection closed without an answer: 502.
    for mode in ("not-http", "close"):
        _error(
            http.post(url + "/v1/chat/completions", json=CHAT, headers={"x-fake-mode": mode}), 502, "upstream_failed"
        )
    assert metrics.upstream_errors.value("protocol") >= 2


def test_reset_mid_stream_ends_the_client_stream(live: tuple[str, Any], http: httpx.Client) -> None:
    url, metrics = live
    before = metrics.upstream_errors.value("stream")
    body = {**CHAT, "stream": True}
    received: list[bytes] = []
    started = time.monotonic()
    with http.stream("POST", url + "/v1/chat/completions", json=body, headers={"x-fake-mode": "reset"}) as r:
        assert r.status_code == 200
        assert r.headers["x-promptzip-status"] == "compressed"
        with pytest.raises(httpx.RemoteProtocolError):  # a truncated transfer, not a clean (misleading) end
            received.extend(r.iter_raw())
    assert time.monotonic() - started < 5
    assert b"".join(received).count(b"data: ") == 2
    assert b"[DONE]" not in b"".join(received)
    deadline = time.monotonic() + 5
    while metrics.upstream_errors.value("stream") == before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert metrics.upstream_errors.value("stream") == before + 1
    # The proxy is fine afterwards.
    r = http.post(url + "/v1/chat/completions", json=body)
    assert r.status_code == 200
    assert r.text.rstrip().endswith("data: [DONE]")


# ---------------------------------------------------------------------------------------- compressor faults


def test_a_compressor_crash_fails_open_with_the_original_request(upstream: FakeUpstream) -> None:
    app = create_app(proxy_settings(upstream.url), zipper_factory=exploding(RuntimeError("kaboom")))
    raw = json.dumps(CHAT).encode()
    with TestClient(app) as c:
        r = c.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 200
        assert r.headers["x-promptzip-status"] == "fail-open"
        assert r.headers["x-promptzip-error"] == "internal_error"
        assert upstream.requests[-1].body == raw  # the original, byte for byte
        assert app.state.proxy.metrics.fail_open.value() == 1
        assert "promptzip_proxy_fail_open_total 1" in c.get("/metrics").text


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [(RuntimeError("kaboom"), 500, "internal_error"), (BudgetError("too small"), 422, "budget_not_met")],
)
def test_fail_closed_answers_an_error(upstream: FakeUpstream, error: Exception, status: int, code: str) -> None:
    before = len(upstream.requests)
    app = create_app(proxy_settings(upstream.url, fail_mode="closed"), zipper_factory=exploding(error))
    with TestClient(app) as c:  # a token cap: under a rate, a chat that cannot shrink to it goes as it came
        r = c.post("/v1/chat/completions", json=CHAT, headers={"x-promptzip-budget": "100"})
    assert r.status_code == status
    assert r.headers["x-promptzip-status"] == "error"
    assert r.json()["error"]["code"] == code
    assert "kaboom" not in r.json()["error"]["message"]
    assert len(upstream.requests) == before  # nothing was forwarded


def test_a_budget_below_the_protected_parts_fails_open(upstream: FakeUpstream) -> None:
    with TestClient(create_app(proxy_settings(upstream.url), zipper_factory=bm25)) as c:
        r = c.post("/v1/chat/completions", json=CHAT, headers={"x-promptzip-budget": "5"})
    assert r.status_code == 200
    assert (r.headers["x-promptzip-status"], r.headers["x-promptzip-error"]) == ("fail-open", "budget_not_met")
    assert upstream.requests[-1].json() == CHAT


# -------------------------------------------------------------------------------------------------------- fuzz
def _upstream_ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"ok": True})


_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
_header_text = st.text(string.printable.strip("\r\n\x0b\x0c"), max_size=12)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=6,
)
_part = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": st.one_of(_text, st.integers(), st.none())}),
    st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": _text})}),
    st.dictionaries(st.sampled_from(["type", "text", "x"]), _json, max_size=3),
)
_message = st.fixed_dictionaries(
    {"role": st.one_of(st.sampled_from(sorted(ROLES)), _text, st.integers())},
    optional={
        "content": st.one_of(_text, st.none(), st.integers(), st.lists(_part, max_size=3), _json),
        "name": st.one_of(_text, st.integers()),
        "tool_calls": st.lists(_json, max_size=2),
    },
)
_chat = st.fixed_dictionaries(
    {"messages": st.one_of(st.lists(_message, max_size=5), _json)},
    optional={"model": st.one_of(st.just("gpt-4o"), _json), "stream": st.one_of(st.booleans(), _json)},
)
_WORDS = "the tower iron paris built engineer tall visitors levels fair 1889 height metres, restaurants.".split()


def _seeded_chat(seed: int) -> dict[str, Any]:
    """A well-formed chat of 1-5 turns of word salad, from one seed (one draw: cheap to generate)."""
    rng = random.Random(seed)
    turns = []
    for _ in range(rng.randint(1, 5)):
        sentences = [" ".join(rng.choices(_WORDS, k=rng.randint(3, 15))) for _ in range(rng.randint(1, 12))]
        turns.append({"role": rng.choice(["system", "user", "assistant", "tool"]), "content": ". ".join(sentences)})
    return {"model": "gpt-4o", "messages": turns}


_valid_chat = st.integers(0, 2**32 - 1).map(_seeded_chat)
_body = st.one_of(
    _valid_chat.map(lambda v: json.dumps(v).encode()),
    _valid_chat.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    _json.map(lambda v: json.dumps(v).encode()),
    _chat.map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
    st.sampled_from(["\\ud800", "\\udfff", "\\ud83d\\ude00"]).map(
        lambda s: b'{"messages": [{"role": "user", "content": "' + s.encode() + b'"}]}'
    ),
    st.binary(max_size=50).map(lambda b: b'{"messages": [{"role": "user", "content": "' + b + b'"}]}'),
)
_CONTROLS = ["x-promptzip-budget", "x-promptzip-rate", "x-promptzip-preset", "x-promptzip-disable"]
_headers = st.dictionaries(
    st.sampled_from([*_CONTROLS, "x-promptzip-tenant", "content-type", "content-encoding", "x-other"]),
    st.one_of(_header_text, st.sampled_from(["1", "0", "0.5", "100", "true", "fast", "acme", "gzip"])),
    max_size=4,
)
_path = st.one_of(
    st.just("/v1/chat/completions"),
    st.just("/v1/chat/completions"),
    st.sampled_from(["/v1/embeddings", "/v1/models", "/healthz", "/metrics", "/v1/", "/v2/x", "/"]),
    st.text(string.ascii_letters + string.digits + "/._-%~", max_size=20).map(lambda p: "/v1/" + p),
)


class InProcess:
    """The app called in-process over one event loop (no server, no thread hop): fast enough for 10k cases."""

    def __init__(self) -> None:
        self.app = create_app(
            ProxySettings(upstream="http://upstream.invalid/v1", cache="memory", min_tokens=0),
            zipper_factory=bm25,
            transport=httpx.MockTransport(_upstream_ok),
        )
        self.loop = asyncio.new_event_loop()
        self.lifespan = self.app.router.lifespan_context(self.app)
        self.loop.run_until_complete(self.lifespan.__aenter__())
        transport = httpx.ASGITransport(app=self.app)  # app exceptions propagate: a crash fails the test
        self.client = httpx.AsyncClient(transport=transport, base_url="http://proxy")

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return self.loop.run_until_complete(self.client.request(method, path, content=body, headers=headers))

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.run_until_complete(self.lifespan.__aexit__(None, None, None))
        self.loop.close()


@pytest.fixture(scope="module")
def in_process() -> Iterator[InProcess]:
    app = InProcess()
    yield app
    app.close()


@pytest.mark.slow
@settings(
    max_examples=10_000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
@given(
    method=st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "DELETE"]), path=_path, body=_body, headers=_headers
)
def test_fuzz_request_handling_never_answers_5xx(
    in_process: InProcess, method: str, path: str, body: bytes, headers: dict[str, str]
) -> None:
    r = in_process.request(method, path, body, headers)
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code >= 400:
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
