"""The proxy: compression of chat requests, pass-through, streaming, control headers, config files, security.

A real uvicorn server on 127.0.0.1 serves the app for the SDK, streaming and network-level tests; the rest call the
ASGI app in-process. The upstream is :class:`FakeUpstream`, a real HTTP server on 127.0.0.1 that records what it
receives. Compression uses a BM25-only stack (no model), so these tests are fast.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from proxy_helpers import bm25, settings
from starlette.testclient import TestClient

from promptzip._cache import Cache, MemoryCache
from promptzip._errors import ConfigError
from promptzip._messages import message_tokens
from promptzip._pipeline import Zipper
from promptzip._tokenizers import get_tokenizer
from promptzip.integrations.proxy import ProxySettings, create_app, load_settings
from promptzip.integrations.proxy._cli import add_proxy_command
from promptzip.integrations.proxy.testing import FakeUpstream, live_server

SAMPLE = (Path(__file__).parents[1] / "promptzip" / "_sample" / "sotu.txt").read_text(encoding="utf-8")
CONTEXT = SAMPLE[:12_000]
QUESTION = "What did the president say about college tuition?"
SECRET = "sk-test-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
COUNT = get_tokenizer("gpt-4o").count


def chat(question: str = QUESTION, context: str = CONTEXT) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "Answer from the context only."},
        {"role": "user", "content": context},
        {"role": "assistant", "content": "I have read the speech."},
        {"role": "user", "content": question},
    ]


@pytest.fixture
def client(upstream: FakeUpstream) -> Iterator[TestClient]:
    with TestClient(create_app(settings(upstream.url), zipper_factory=bm25)) as c:
        yield c


def _sent(upstream: FakeUpstream) -> dict[str, Any]:
    body: dict[str, Any] = upstream.requests[-1].json()
    return body


# ------------------------------------------------------------------------------------------------ chat route
def test_openai_sdk_chat_is_compressed_and_answered(live: str, upstream: FakeUpstream) -> None:
    sdk = openai.OpenAI(base_url=live + "/v1", api_key=SECRET, max_retries=0)
    try:
        raw = sdk.chat.completions.with_raw_response.create(
            model="gpt-4o",
            messages=chat(),  # type: ignore[arg-type]
            extra_headers={"x-promptzip-budget": "800"},
        )
    finally:
        sdk.close()
    completion = raw.parse()
    assert completion.choices[0].message.content == f"4 messages, {_chars(_sent(upstream))} characters"
    assert raw.headers["x-promptzip-status"] == "compressed"
    assert raw.headers["x-promptzip-preset"] == "fast"
    assert raw.headers["x-promptzip-method"] == "extractive"
    tokens_in, tokens_out = int(raw.headers["x-promptzip-tokens-in"]), int(raw.headers["x-promptzip-tokens-out"])
    assert tokens_in == message_tokens(chat(), COUNT) > 2000
    sent = upstream.requests[-1]
    body = sent.json()
    assert tokens_out == message_tokens(body["messages"], COUNT) <= 800
    assert sent.header("authorization") == f"Bearer {SECRET}"
    assert sent.header("x-promptzip-budget") is None  # control headers are not forwarded
    assert body["model"] == "gpt-4o"
    assert body["messages"][0] == chat()[0]
    assert body["messages"][-1] == chat()[-1]
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    assert len(body["messages"][1]["content"]) < len(CONTEXT) / 2
    assert "tuition" in body["messages"][1]["content"].lower()


def _chars(body: dict[str, Any]) -> int:
    return sum(len(m["content"]) for m in body["messages"] if isinstance(m.get("content"), str))


def test_protected_parts_reach_the_upstream_verbatim(client: TestClient, upstream: FakeUpstream) -> None:
    tool_call = {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": '{"q": "inflation"}'}}
    tool_json = json.dumps({"results": [{"title": "Speech", "text": SAMPLE[:3000]}], "total": 1})
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Answer from the context only."},
        {"role": "user", "content": [{"type": "text", "text": CONTEXT}, image]},
        {"role": "assistant", "content": None, "tool_calls": [tool_call]},
        {"role": "tool", "tool_call_id": "call_1", "content": tool_json},
        {"role": "tool", "tool_call_id": "call_2", "content": SAMPLE[20_000:26_000]},
        {"role": "user", "content": [{"type": "text", "text": QUESTION}, image]},
    ]
    r = client.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": messages}, headers=_budget(1200))
    assert r.status_code == 200, r.text
    assert r.headers["x-promptzip-status"] == "compressed"
    sent = _sent(upstream)["messages"]
    assert sent[0] == messages[0]  # system
    assert sent[5] == messages[5]  # the last user turn, image included
    assert sent[2] == messages[2]  # tool-call JSON
    assert sent[3] == messages[3]  # a tool result that is JSON
    assert sent[1]["content"][1] == image  # images in older turns
    assert len(sent[1]["content"][0]["text"]) < len(CONTEXT)  # older text is compressed
    assert len(sent[4]["content"]) < 6000  # so is a tool result in prose
    assert message_tokens(sent, COUNT) <= 1200


def _budget(tokens: int) -> dict[str, str]:
    return {"x-promptzip-budget": str(tokens)}


def test_control_headers(client: TestClient, upstream: FakeUpstream) -> None:
    body = {"model": "gpt-4o", "messages": chat()}
    raw = json.dumps(body).encode()
    r = client.post("/v1/chat/completions", content=raw, headers={"x-promptzip-disable": "true"})
    assert r.headers["x-promptzip-status"] == "passthrough"
    assert r.headers["x-promptzip-reason"] == "disabled"
    assert upstream.requests[-1].body == raw  # byte for byte

    r = client.post("/v1/chat/completions", json=body, headers={"x-promptzip-rate": "0.2"})
    assert r.headers["x-promptzip-status"] == "compressed"
    assert int(r.headers["x-promptzip-tokens-out"]) <= 0.2 * int(r.headers["x-promptzip-tokens-in"])

    small = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello there."}]}
    r = client.post("/v1/chat/completions", json=small)
    assert r.headers["x-promptzip-status"] == "passthrough"
    assert r.headers["x-promptzip-reason"] == "below-min-tokens"
    assert _sent(upstream) == small

    for headers, param in [
        ({"x-promptzip-budget": "abc"}, "x-promptzip-budget"),
        ({"x-promptzip-budget": "0"}, "x-promptzip-budget"),
        ({"x-promptzip-rate": "1.5"}, "x-promptzip-rate"),
        ({"x-promptzip-rate": "nan"}, "x-promptzip-rate"),
        ({"x-promptzip-budget": "10", "x-promptzip-rate": "0.5"}, "x-promptzip-budget"),
        ({"x-promptzip-preset": "no-such-preset"}, "x-promptzip-preset"),
        ({"x-promptzip-disable": "maybe"}, "x-promptzip-disable"),
    ]:
        r = client.post("/v1/chat/completions", json=body, headers=headers)
        assert r.status_code == 400, headers
        assert r.json()["error"]["param"] == param
        assert r.json()["error"]["type"] == "invalid_request_error"


def test_result_cache_hits_the_same_chat(client: TestClient) -> None:
    body = {"model": "gpt-4o", "messages": chat("What about jobs and wages?")}
    statuses = []
    for _ in range(2):
        r = client.post("/v1/chat/completions", json=body)
        assert r.headers["x-promptzip-status"] == "compressed"
        statuses.append(r.headers["x-promptzip-cache"])
    assert statuses == ["miss", "hit"]
    # The same chat for another model is weighed with other cache prices: not the cached outcome of the first.
    r = client.post("/v1/chat/completions", json={**body, "model": "gpt-5"})
    assert r.headers["x-promptzip-cache"] == "miss"


# --------------------------------------------------------------------------------------------- pass-through
def test_other_routes_pass_through_untouched(client: TestClient, upstream: FakeUpstream) -> None:
    raw = b'{"input": ["a", "b"], "model": "text-embedding-3-small",   "extra": [1,2,3]}'
    r = client.post(
        "/v1/embeddings?api-version=2024-01-01&x=%2F",
        content=raw,
        headers={"content-type": "application/json", "x-custom": "kept", "connection": "x-hop", "x-hop": "dropped"},
    )
    assert r.status_code == 200
    sent = upstream.requests[-1]
    assert (sent.method, sent.target, sent.body) == ("POST", "/v1/embeddings?api-version=2024-01-01&x=%2F", raw)
    assert sent.header("x-custom") == "kept"
    assert sent.header("x-hop") is None
    assert "x-promptzip-status" not in r.headers
    assert r.json() == {
        "method": "POST",
        "target": "/v1/embeddings?api-version=2024-01-01&x=%2F",
        "body_bytes": len(raw),
    }

    for method in ("GET", "DELETE", "PUT", "PATCH"):
        r = client.request(method, "/v1/files/file-abc")
        assert r.status_code == 200
        assert upstream.requests[-1].method == method
    r = client.get("/v1/chat/completions?limit=2")  # listing stored completions is not compressed
    assert r.status_code == 200
    assert upstream.requests[-1].target == "/v1/chat/completions?limit=2"
    assert client.get("/v1/models").json()["data"][0]["id"] == "fake-model"


def test_health_metrics_and_unknown_routes(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    client.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": chat()})
    client.post("/v1/chat/completions", content=b"{")
    r = client.get("/nope")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "http_404"
    assert client.post("/healthz").status_code == 405
    text = client.get("/metrics").text
    assert client.get("/metrics").headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = _parse_metrics(text)
    assert samples['promptzip_proxy_requests_total{route="/v1/chat/completions",status="200"}'] == 1
    assert samples['promptzip_proxy_requests_total{route="/v1/chat/completions",status="400"}'] == 1
    assert samples['promptzip_proxy_requests_total{route="not_found",status="404"}'] == 1
    assert samples['promptzip_proxy_compressions_total{status="compressed"}'] == 1
    saved = samples["promptzip_proxy_tokens_saved_total"]
    assert saved == samples["promptzip_proxy_tokens_in_total"] - samples["promptzip_proxy_tokens_out_total"] > 0
    assert samples["promptzip_proxy_compression_seconds_count"] == 1
    assert samples['promptzip_proxy_compression_seconds_bucket{le="+Inf"}'] == 1
    for name in ("hits", "misses", "errors"):
        assert f"promptzip_proxy_cache_{name}_total" in samples
    assert samples["promptzip_proxy_fail_open_total"] == 0


_SAMPLE_LINE = re.compile(r'^([a-z_]+(?:\{[a-z_]+="[^"\\]*"(?:,[a-z_]+="[^"\\]*")*\})?) (-?[0-9.e+-]+|\+Inf)$')


def _parse_metrics(text: str) -> dict[str, float]:
    """Every line is a # HELP / # TYPE comment or a well-formed sample; returns the samples."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            continue
        m = _SAMPLE_LINE.match(line)
        assert m, f"not a Prometheus sample: {line!r}"
        samples[m.group(1)] = float(m.group(2))
    return samples


# ------------------------------------------------------------------------------------------------- streaming
def test_streaming_request_is_compressed_and_response_relayed_chunk_by_chunk() -> None:
    with (
        FakeUpstream(chunks=4, chunk_delay=0.25) as slow,
        live_server(create_app(settings(slow.url), zipper_factory=bm25)) as url,
    ):
        body = {"model": "gpt-4o", "stream": True, "messages": chat()}
        arrivals: list[float] = []
        received = b""
        with httpx.Client(timeout=10) as http, http.stream("POST", url + "/v1/chat/completions", json=body) as r:
            assert r.status_code == 200
            assert r.headers["x-promptzip-status"] == "compressed"
            assert r.headers["content-type"] == "text/event-stream"
            for chunk in r.iter_raw():
                arrivals.append(time.monotonic())
                received += chunk
        # The first event arrived while the upstream was still producing the others: nothing was buffered.
        assert len(arrivals) >= 4
        assert arrivals[-1] - arrivals[0] > 0.6
        events = [e for e in received.split(b"\n\n") if e]
        assert events[-1] == b"data: [DONE]"
        assert len(events) == 6
        assert slow.requests[-1].json()["stream"] is True
        assert len(slow.requests[-1].json()["messages"][1]["content"]) < len(CONTEXT)

        sdk = openai.OpenAI(base_url=url + "/v1", api_key=SECRET, max_retries=0)
        try:
            stream = sdk.chat.completions.create(model="gpt-4o", messages=chat(), stream=True)  # type: ignore[arg-type]
            text = "".join(c.choices[0].delta.content or "" for c in stream)
        finally:
            sdk.close()
        assert text == "part0 part1 part2 part3 "


# -------------------------------------------------------------------------------------------------- security
def test_authorization_is_never_logged_echoed_or_cached(
    upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    auth = {"authorization": f"Bearer {SECRET}", "api-key": SECRET}

    def boom(preset: str, target: str, cache: Cache) -> Zipper:
        raise RuntimeError("compressor exploded")

    responses: list[httpx.Response] = []
    app = create_app(settings(upstream.url), zipper_factory=bm25)
    with TestClient(app) as c:
        body = {"model": "gpt-4o", "messages": chat()}
        responses += [
            c.post("/v1/chat/completions", json=body, headers=auth),
            c.post("/v1/chat/completions", json=body, headers=auth),  # result-cache hit
            c.post("/v1/chat/completions", json=body, headers={**auth, "x-fake-mode": "status:401"}),
            c.post("/v1/chat/completions", content=b"{", headers=auth),
            c.post("/v1/chat/completions", json=body, headers={**auth, "x-promptzip-budget": "nope"}),
            c.get("/v1/models", headers=auth),
        ]
        cache = app.state.proxy.compressions.cache
        assert isinstance(cache, MemoryCache)
        assert cache._data
        stored = b"".join(k.encode() + v for k, v in cache._data.items())
        assert SECRET.encode() not in stored
    with TestClient(create_app(settings(upstream.url), zipper_factory=boom)) as c:
        responses.append(c.post("/v1/chat/completions", json=body, headers=auth))  # fail-open
    with TestClient(create_app(settings("http://127.0.0.1:9/v1"), zipper_factory=bm25)) as c:
        responses.append(c.post("/v1/chat/completions", json=body, headers=auth))  # upstream down: 502
    assert [r.status_code for r in responses] == [200, 200, 401, 400, 400, 200, 200, 502]
    assert responses[6].headers["x-promptzip-status"] == "fail-open"
    assert upstream.requests[-1].header("authorization") == f"Bearer {SECRET}"
    for r in responses:
        assert SECRET not in r.text
        assert all(SECRET not in v for v in r.headers.values())
    assert caplog.records
    assert SECRET not in caplog.text
    assert all(SECRET not in str(r.args) for r in caplog.records)


def _raw_http(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_a_request_cannot_choose_the_upstream(live: str, upstream: FakeUpstream) -> None:
    with FakeUpstream() as elsewhere:
        evil = f"127.0.0.1:{elsewhere.port}"
        before = len(upstream.requests)
        # Host header and absolute-form request targets naming another server.
        answer = _raw_http(live, f"GET /v1/models HTTP/1.1\r\nHost: {evil}\r\nConnection: close\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 200")
        assert upstream.requests[-1].header("host") == f"127.0.0.1:{upstream.port}"
        for target in (f"http://{evil}/v1/models", f"//{evil}/v1/models", f"/v1/@{evil}/models"):
            request = f"GET {target} HTTP/1.1\r\nHost: {evil}\r\nConnection: close\r\n\r\n".encode()
            _raw_http(live, request)
        # Dot segments cannot climb out of the upstream's /v1.
        for target in ("/v1/../admin", "/v1/%2e%2e/admin", "/v1/files/..%2F..%2Fadmin", "/v1/./models"):
            answer = _raw_http(live, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            assert answer.startswith(b"HTTP/1.1 400"), target
        assert elsewhere.requests == []
        assert all(r.target.startswith("/v1/") and ".." not in r.target for r in upstream.requests[before:])


def test_binds_loopback_by_default() -> None:
    assert ProxySettings(upstream="https://api.openai.com/v1").host == "127.0.0.1"


# ----------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (b"", None, "invalid_json"),
        (b"{not json", None, "invalid_json"),
        (b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "\xff\xfe"}]}', None, "invalid_utf8"),
        (b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "\\ud800"}]}', "messages[0].content", None),
        (b'{"model": "gpt-4o", "messages": [{"role": "user", "content": NaN}]}', None, "invalid_json"),
        (b"[" * 100_000 + b"]" * 100_000, None, "invalid_json"),
        (b'{"messages": [{"role": "user", "content": "x"}], "n": 1' + b"0" * 5000 + b"}", None, "invalid_json"),
        (b"[]", None, "invalid_type"),
        (b'{"model": "gpt-4o"}', "messages", "invalid_type"),
        (b'{"model": "gpt-4o", "messages": "hello"}', "messages", "invalid_type"),
        (b'{"model": "gpt-4o", "messages": []}', "messages", "invalid_type"),
        (b'{"model": 4, "messages": [{"role": "user", "content": "x"}]}', "model", "invalid_type"),
        (b'{"stream": "yes", "messages": [{"role": "user", "content": "x"}]}', "stream", "invalid_type"),
        (b'{"messages": [{"role": "wizard", "content": "x"}]}', "messages[0].role", "invalid_role"),
        (b'{"messages": [{"content": "x"}]}', "messages[0].role", "invalid_role"),
        (b'{"messages": [{"role": "user", "content": 42}]}', "messages[0].content", "invalid_type"),
        (b'{"messages": [{"role": "user", "content": [{"text": "x"}]}]}', "messages[0].content[0]", "invalid_type"),
        (
            b'{"messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]}',
            "messages[0].content[0].text",
            None,
        ),
        (b'{"messages": [{"role": "user"}]}', "messages[0].content", "invalid_type"),
        (b'{"messages": ["hi"]}', "messages[0]", "invalid_type"),
    ],
)
def test_bad_input_is_a_400_json_error(client: TestClient, body: bytes, param: str | None, code: str | None) -> None:
    r = client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code


def test_a_large_body_is_refused_while_it_streams_in(upstream: FakeUpstream) -> None:
    """413 as soon as the limit is passed: the app stops pulling the body instead of buffering 20 MB."""
    app = create_app(settings(upstream.url, max_body_bytes=1 << 20), zipper_factory=bm25)
    chunk, total = b"x" * 65536, 20 << 20
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": pulled < total}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"]["code"] == "body_too_large"
    assert pulled <= (1 << 20) + len(chunk)


def test_a_20_mb_body_over_the_network_gets_413_where_it_is_read_and_streams_through_elsewhere(
    live: str, upstream: FakeUpstream
) -> None:
    """A compressed route reads its body, so ``max_body_bytes`` refuses it; a route the proxy does not read streams
    the body to the upstream as it arrives (that it is not held whole: tests/test_proxy_streaming.py)."""
    with httpx.Client(timeout=60) as http:
        r = http.post(live + "/v1/chat/completions", content=b"x" * (20 << 20))
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "body_too_large"

        def chunks() -> Iterator[bytes]:
            for i in range(20 * 16):
                yield bytes([i % 251]) * 65536  # each chunk its own byte: any reordering or loss shows

        r = http.post(live + "/v1/embeddings", content=chunks())  # chunked: no content-length to check first
        assert r.status_code == 200
        sent = upstream.requests[-1]
        assert r.json() == {"method": "POST", "target": "/v1/embeddings", "body_bytes": 20 << 20}
        assert sent.header("transfer-encoding") == "chunked"
        assert sent.body == b"".join(chunks())
        assert http.get(live + "/healthz").status_code == 200


# -------------------------------------------------------------------------------------------------- settings
def test_settings_validate() -> None:
    ok = ProxySettings(upstream="https://api.openai.com/v1/")
    assert ok.upstream == "https://api.openai.com/v1"
    assert ok.route("/v1/chat/completions") is not None
    assert ok.route("/v1/embeddings") is None
    for bad in [
        {"upstream": "ftp://x"},
        {"upstream": "https://user:pw@api.openai.com/v1"},
        {"upstream": "https://api.openai.com/v1?key=1"},
        {"upstream": "https://x/v1", "budget": 100, "rate": 0.5},
        {"upstream": "https://x/v1", "routes": {"/chat": {}}},
        {"upstream": "https://x/v1", "routes": {"/v1/../x": {}}},
        {"upstream": "https://x/v1", "routes": {"/v1/chat/completions": {"budget": 1, "rate": 0.5}}},
        {"upstream": "https://x/v1", "routes": {"/v1/chat/completions": {"bogus": 1}}},
        {"upstream": "https://x/v1", "fail_mode": "sometimes"},
        {"upstream": "https://x/v1", "tenant_header": "bad header"},
        {"upstream": "https://x/v1", "unknown_key": 1},
    ]:
        with pytest.raises(ConfigError):
            load_settings(**bad)


def test_config_files_and_per_route_defaults(tmp_path: Path, upstream: FakeUpstream) -> None:
    toml = tmp_path / "proxy.toml"
    toml.write_text(
        f'upstream = "{upstream.url}"\ncache = "memory"\nmin_tokens = 10\nrate = 0.9\n'
        '[timeouts]\nread = 30.0\n[routes."/v1/chat/completions"]\nbudget = 600\n'
        '[routes."/v1/custom/chat"]\nrate = 0.3\nfail_mode = "closed"\n',
        encoding="utf-8",
    )
    s = load_settings(toml, port=9999, timeouts={"connect": 1.0})
    assert (s.port, s.timeouts.read, s.timeouts.connect, s.rate) == (9999, 30.0, 1.0, 0.9)
    assert load_settings(toml, budget=100).rate is None  # a budget given on top replaces the file's rate
    with TestClient(create_app(s, zipper_factory=bm25)) as c:
        body = {"model": "gpt-4o", "messages": chat()}
        r = c.post("/v1/chat/completions", json=body)
        assert int(r.headers["x-promptzip-tokens-out"]) <= 600  # the route's budget beats the top-level rate
        r = c.post("/v1/chat/completions", json=body, headers=_budget(900))
        assert 600 < int(r.headers["x-promptzip-tokens-out"]) <= 900  # a header beats the route
        r = c.post("/v1/custom/chat", json=body)  # a second compressed route, with its own defaults
        assert r.headers["x-promptzip-status"] == "compressed"
        assert upstream.requests[-1].target == "/v1/custom/chat"
        assert int(r.headers["x-promptzip-tokens-out"]) <= 0.3 * int(r.headers["x-promptzip-tokens-in"])

    js = tmp_path / "proxy.json"
    js.write_text(json.dumps({"upstream": upstream.url, "routes": {"/v1/chat/completions": {"compress": False}}}))
    s = load_settings(js)
    assert s.route("/v1/chat/completions") is None
    with TestClient(create_app(s, zipper_factory=bm25)) as c:
        raw = json.dumps({"model": "gpt-4o", "messages": chat()}).encode()
        r = c.post("/v1/chat/completions", content=raw)
        assert "x-promptzip-status" not in r.headers
        assert upstream.requests[-1].body == raw

    for text, name in [("upstream = ", "bad.toml"), ("[1, 2]", "bad.json"), ('{"upstream": 1}', "types.json")]:
        (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError):
            load_settings(tmp_path / name)
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.toml")


def test_cli_command_builds_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import argparse
    import io

    seen: list[ProxySettings] = []
    monkeypatch.setattr("promptzip.integrations.proxy._app.serve", lambda s, **kw: seen.append(s))
    parser = argparse.ArgumentParser()
    add_proxy_command(parser.add_subparsers())
    args = parser.parse_args(
        [
            "proxy",
            "--no-warmup",  # warming up by default is tested in tests/test_warm.py
            "--upstream",
            "http://127.0.0.1:1/v1",
            "--port",
            "8788",
            "--cache",
            "memory",
            "--budget",
            "700",
            "--timeout",
            "12",
            "--fail-mode",
            "closed",
            "--compression-deadline",
            "2.5",
            "--compression-queue",
            "3",
            "--no-fair-queue",
            "--allow-preset",
            "fast",
            "--allow-preset",
            "max",
        ]
    )
    err = io.StringIO()
    assert args.func(args, io.StringIO(), err) == 0
    s = seen[0]
    assert (s.compression_deadline, s.compression_queue, s.allowed_presets) == (2.5, 3, ("fast", "max"))
    assert s.fair_queue is False  # on by default (ProxySettings)
    assert s.tenant_header is None  # a tenant header is trusted only when the operator names one
    assert (s.port, s.host, s.cache, s.budget, s.timeouts.read, s.fail_mode) == (
        8788,
        "127.0.0.1",
        "memory",
        700,
        12.0,
        "closed",
    )
    assert "http://127.0.0.1:8788/v1" in err.getvalue()


def test_module_entry_point_reports_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    from promptzip.integrations.proxy._cli import main

    assert main(["--upstream", "ftp://example.invalid"]) == 2
    assert "upstream must be an http(s) URL" in capsys.readouterr().err
