"""Anthropic Message Batches: each request's ``params`` is compressed as the same body sent alone to ``/v1/messages``
would be, through the proxy (``POST /v1/messages/batches``) and through ``pz.wrap`` (``messages.batches.create``,
``beta.messages.batches.create``, sync and async). The real ``anthropic`` SDK, the running proxy (uvicorn, the
model-free BM25 stack) and the recording fake upstream on 127.0.0.1; no mocks."""

from __future__ import annotations

import asyncio
import copy
import json
import re
from typing import Any

import anthropic
import httpx
import pytest
from proxy_helpers import REPORT, bm25

import promptzip as pz
from promptzip._cache import MemoryCache
from promptzip.integrations.proxy import ProxySettings, RouteSettings
from promptzip.integrations.proxy.testing import FakeUpstream, Recorded

BUDGET = 250
MODEL = "claude-sonnet-4-5"
ROUTE = "/v1/messages/batches"
QUESTION = "How many ships in year 12?"
RECORDS = json.dumps([{"year": i, "port": "Oslo", "ships": i * 7, "storms": i * 3} for i in range(60)])


@pytest.fixture(autouse=True)
def _no_sdk_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def batch(tag: str) -> list[dict[str, Any]]:
    """A long RAG request (documents in ``system``), an agent loop's request with a large JSON tool result, and a
    short request. ``tag`` keeps each test's conversations apart in the proxy."""
    params = {"model": MODEL, "max_tokens": 64}
    tool_use = {"type": "tool_use", "id": f"toolu_{tag}", "name": "harbour_log", "input": {"port": "Oslo"}}
    loop = [
        {"role": "user", "content": f"[{tag} loop] {QUESTION}"},
        {"role": "assistant", "content": [{"type": "text", "text": "Let me look."}, tool_use]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"toolu_{tag}", "content": RECORDS}]},
    ]
    return [
        {
            "custom_id": f"{tag}-rag",
            "params": {
                **params,
                "system": f"Answer from the documents only.\n\nDocuments:\n{REPORT}",
                "messages": [{"role": "user", "content": f"[{tag} rag] {QUESTION}"}],
            },
        },
        {"custom_id": f"{tag}-tools", "params": {**params, "messages": loop}, "note": "kept as it came"},
        {"custom_id": f"{tag}-short", "params": {**params, "messages": [{"role": "user", "content": "Hi."}]}},
    ]


def sdk(base_url: str, key: str) -> anthropic.Anthropic:
    headers = {"x-promptzip-budget": str(BUDGET)}
    return anthropic.Anthropic(base_url=base_url, api_key=key, default_headers=headers, max_retries=0)


def last(upstream: FakeUpstream, route: str) -> Recorded:
    """The upstream's last request, which must have gone to ``route`` (its query aside)."""
    request = upstream.requests[-1]
    assert request.target.split("?")[0] == route
    return request


def through_proxy(live: str, upstream: FakeUpstream, requests: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The batch body the upstream got for ``requests`` sent through the running proxy with the SDK."""
    with sdk(live, key) as client:
        raw = client.messages.batches.with_raw_response.create(requests=copy.deepcopy(requests))
    assert raw.headers["x-promptzip-status"] == "compressed"
    assert raw.parse().id == "msgbatch_fake"  # the SDK's own MessageBatch, parsed from the fake's answer
    body: dict[str, Any] = last(upstream, ROUTE).json()
    return body


def fresh() -> pz.Zipper:
    """The proxy tests' stack with a cache of its own, so no conversation state carries over between requests."""
    return bm25("fast", "gpt-4o", MemoryCache())


def metric(live: str, name: str) -> float:
    text = httpx.get(live + "/metrics").text
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, flags=re.MULTILINE))


# ---------------------------------------------------------------------------------------------------- the proxy
def test_each_request_arrives_as_the_same_body_sent_alone_to_messages(live: str, upstream: FakeUpstream) -> None:
    requests = batch("alone")
    tokens_before = metric(live, "promptzip_proxy_tokens_in_total")
    with sdk(live, "sk-ant-batch-alone") as client:
        raw = client.messages.batches.with_raw_response.create(requests=copy.deepcopy(requests))
    sent = last(upstream, ROUTE).json()
    assert raw.parse().processing_status == "in_progress"
    tokens_after = metric(live, "promptzip_proxy_tokens_in_total")

    singles: list[tuple[dict[str, Any], httpx.Headers]] = []
    for i, request in enumerate(requests):  # each alone, under a credential of its own: no shared state
        with sdk(live, f"sk-ant-single-alone-{i}") as client:
            single = client.messages.with_raw_response.create(**request["params"])
        singles.append((last(upstream, "/v1/messages").json(), single.headers))

    assert [r["custom_id"] for r in sent["requests"]] == [r["custom_id"] for r in requests]
    assert sent["requests"][1]["note"] == "kept as it came"
    for got, (alone, _) in zip(sent["requests"], singles, strict=True):
        assert got["params"] == alone
    for long in (0, 1):  # the RAG request and the tool loop: compressed
        assert len(json.dumps(sent["requests"][long]["params"])) < len(json.dumps(requests[long]["params"]))
    assert sent["requests"][2] == requests[2]  # the short one, as it came
    assert [h["x-promptzip-status"] for _, h in singles] == ["compressed", "compressed", "passthrough"]

    headers = raw.headers
    assert headers["x-promptzip-status"] == "compressed"
    assert headers["x-promptzip-batch-requests"] == "3"
    assert headers["x-promptzip-batch-requests-compressed"] == "2"
    for name in ("x-promptzip-tokens-in", "x-promptzip-tokens-out", "x-promptzip-regions"):
        assert int(headers[name]) == sum(int(h[name]) for _, h in singles), name
    assert int(headers["x-promptzip-tokens-out"]) < int(headers["x-promptzip-tokens-in"])
    assert tokens_after - tokens_before == int(headers["x-promptzip-tokens-in"])  # metrics count each request


def test_a_wrapped_client_sends_the_batch_the_proxy_sends(live: str, upstream: FakeUpstream) -> None:
    requests = batch("doors")
    proxied = through_proxy(live, upstream, requests, "sk-ant-batch-doors")
    base = upstream.url.removesuffix("/v1")

    with anthropic.Anthropic(base_url=base, api_key="sk-ant-test", max_retries=0) as client:
        created = pz.wrap(client, budget=BUDGET, zipper=fresh()).messages.batches.create(requests=requests)
        assert created.id == "msgbatch_fake"
        assert last(upstream, ROUTE).json() == proxied
        pz.wrap(client, budget=BUDGET, zipper=fresh()).beta.messages.batches.create(requests=iter(requests))
        assert last(upstream, ROUTE).json() == proxied
        # the raw-response view, by each of the three ways the SDK reaches it
        for view in (
            lambda w: w.messages.batches.with_raw_response,
            lambda w: w.with_raw_response.messages.batches,
            lambda w: w.messages.with_raw_response.batches,
        ):
            raw = view(pz.wrap(client, budget=BUDGET, zipper=fresh())).create(requests=requests)
            assert raw.parse().id == "msgbatch_fake"
            assert last(upstream, ROUTE).json() == proxied

    async def main() -> None:
        async with anthropic.AsyncAnthropic(base_url=base, api_key="sk-ant-test", max_retries=0) as client:
            wrapped = pz.wrap(client, budget=BUDGET, zipper=fresh())
            created = await wrapped.messages.batches.create(requests=requests)
            assert created.request_counts.processing == 3

    asyncio.run(main())
    assert last(upstream, ROUTE).json() == proxied
    assert requests == batch("doors")  # the caller's requests are not changed


def test_a_wrapped_batch_keeps_the_callers_own_requests_where_nothing_changed(upstream: FakeUpstream) -> None:
    from promptzip.integrations._clients import ANTHROPIC

    requests = batch("own")
    rewrite = next(r for path, _, r in ANTHROPIC.endpoints if path == ("messages", "batches"))
    compression = pz.integrations._calls.Compression(
        budget=BUDGET, rate=None, target="gpt-4o", preset="fast", cache=None, zipper=fresh()
    )
    out = rewrite(compression, {"requests": requests}, spec=None, scope=None, conversation=None, pricing=None)
    assert out["requests"][2] is requests[2]
    assert out["requests"][1]["params"]["model"] is requests[1]["params"]["model"]
    assert out["requests"][1]["params"]["messages"][0] is requests[1]["params"]["messages"][0]
    assert out["requests"][1]["params"]["messages"][2] != requests[1]["params"]["messages"][2]


def test_a_wrapped_batch_refuses_what_messages_create_refuses(upstream: FakeUpstream) -> None:
    requests = batch("refused")
    requests[1]["params"]["messages"][0]["role"] = 7
    sent = len(upstream.requests)
    with anthropic.Anthropic(base_url=upstream.url.removesuffix("/v1"), api_key="k", max_retries=0) as client:
        wrapped = pz.wrap(client, budget=BUDGET, zipper=fresh())
        with pytest.raises(pz.InputError, match=r"requests\[1\] \(custom_id 'refused-tools'\): messages\[0\]\.role"):
            wrapped.messages.batches.create(requests=requests)
        with pytest.raises(pz.InputError, match=r"requests\[0\].*params must be an object"):
            wrapped.messages.batches.create(requests=[{"custom_id": "x"}])
        with pytest.raises(pz.BudgetError) as caught:  # the core's own error, its type kept, the request named
            wrapped.messages.batches.create(requests=batch("tiny")[:1], promptzip=1)
        assert "in requests[0] (custom_id 'tiny-rag') of the batch" in caught.value.__notes__
    assert len(upstream.requests) == sent


BAD: dict[str, tuple[bytes, str]] = {
    "not-json": (b"{not json", "not valid JSON"),
    "array-body": (b"[]", "JSON object"),
    "requests-object": (json.dumps({"requests": {"a": 1}}).encode(), "requests must be an array"),
    "requests-missing": (b"{}", "requests must be an array"),
    "entry-string": (json.dumps({"requests": ["x"]}).encode(), r"requests\[0\] must be an object"),
    "no-params": (json.dumps({"requests": [{"custom_id": "a"}]}).encode(), r"requests\[0\] \(custom_id 'a'\): params"),
    "params-array": (
        json.dumps({"requests": [{"custom_id": "a", "params": []}]}).encode(),
        "params must be an object",
    ),
    "empty-messages": (
        json.dumps(
            {"requests": [*batch("bad")[:1], {"custom_id": "b", "params": {"model": MODEL, "messages": []}}]}
        ).encode(),
        r"requests\[1\] \(custom_id 'b'\): messages must be a non-empty array",
    ),
    "bad-role": (
        json.dumps(
            {"requests": [{"custom_id": "c", "params": {"model": MODEL, "messages": [{"role": 1, "content": "x"}]}}]}
        ).encode(),
        r"requests\[0\] \(custom_id 'c'\): messages\[0\]\.role",
    ),
    "model-number": (
        json.dumps({"requests": [{"custom_id": "d", "params": {"model": 4, "messages": []}}]}).encode(),
        r"requests\[0\] \(custom_id 'd'\): model",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_batch_is_a_4xx_anthropic_error_and_nothing_is_sent(live: str, upstream: FakeUpstream, name: str) -> None:
    content, message = BAD[name]
    sent = len(upstream.requests)
    r = httpx.post(live + ROUTE, content=content, headers={"content-type": "application/json", "x-api-key": "k"})
    assert 400 <= r.status_code < 500
    error = r.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert re.search(message, error["error"]["message"]), error
    assert len(upstream.requests) == sent


def test_an_empty_batch_and_a_disabled_one_are_forwarded_as_they_came(live: str, upstream: FakeUpstream) -> None:
    empty = b'{"requests": []}'
    r = httpx.post(live + ROUTE, content=empty, headers={"x-api-key": "k"})
    assert r.status_code == 200
    assert (r.headers["x-promptzip-status"], r.headers["x-promptzip-reason"]) == ("passthrough", "no-requests")
    assert last(upstream, ROUTE).body == empty

    whole = json.dumps({"requests": batch("off")}).encode()
    r = httpx.post(live + ROUTE, content=whole, headers={"x-api-key": "k", "x-promptzip-disable": "1"})
    assert (r.headers["x-promptzip-status"], r.headers["x-promptzip-reason"]) == ("passthrough", "disabled")
    assert last(upstream, ROUTE).body == whole


def test_a_batch_of_small_requests_is_forwarded_byte_for_byte(live: str, upstream: FakeUpstream) -> None:
    small = batch("small")[2:] * 2
    raw = json.dumps({"requests": small, "extra": {"kept": True}}, indent=1).encode()
    r = httpx.post(live + ROUTE, content=raw, headers={"x-api-key": "k", "x-promptzip-budget": "100"})
    assert (r.headers["x-promptzip-status"], r.headers["x-promptzip-reason"]) == ("passthrough", "below-min-tokens")
    assert r.headers["x-promptzip-batch-requests-compressed"] == "0"
    assert int(r.headers["x-promptzip-tokens-in"]) == int(r.headers["x-promptzip-tokens-out"]) > 0
    assert last(upstream, ROUTE).body == raw


def test_retrieving_a_batch_and_its_results_pass_through(live: str, upstream: FakeUpstream) -> None:
    with sdk(live, "sk-ant-get") as client:
        found = client.messages.batches.retrieve("msgbatch_fake")
    assert (found.id, found.processing_status) == ("msgbatch_fake", "ended")
    assert last(upstream, ROUTE + "/msgbatch_fake").method == "GET"

    r = httpx.get(live + ROUTE + "/msgbatch_fake/results?page=2", headers={"x-api-key": "k"})
    assert r.status_code == 200
    assert "x-promptzip-status" not in r.headers
    assert r.json() == {"method": "GET", "target": ROUTE + "/msgbatch_fake/results?page=2", "body_bytes": 0}
    assert upstream.requests[-1].header("x-api-key") == "k"


# --------------------------------------------------------------------------------------------- failure modes
@pytest.mark.parametrize("failing", ["open"], indirect=True)
def test_a_request_that_fails_to_compress_is_sent_as_it_came_when_failing_open(
    failing: str, upstream: FakeUpstream
) -> None:
    """The RAG request's compression fails (the compressor raises) and it goes as it came; the tool result, cut by
    its structure without the compressor, is still compressed: the batch fails open request by request."""
    requests = batch("open")
    r = httpx.post(failing + ROUTE, json={"requests": requests}, headers={"x-api-key": "k"})
    assert r.status_code == 200
    assert (r.headers["x-promptzip-status"], r.headers["x-promptzip-error"]) == ("fail-open", "internal_error")
    assert r.headers["x-promptzip-batch-requests-compressed"] == "1"
    sent = last(upstream, ROUTE).json()["requests"]
    assert (sent[0], sent[2]) == (requests[0], requests[2])
    assert len(json.dumps(sent[1])) < len(json.dumps(requests[1]))


@pytest.mark.parametrize("failing", ["closed"], indirect=True)
def test_a_request_that_fails_to_compress_fails_the_batch_when_failing_closed(
    failing: str, upstream: FakeUpstream
) -> None:
    sent = len(upstream.requests)
    r = httpx.post(failing + ROUTE, json={"requests": batch("closed")}, headers={"x-api-key": "k"})
    assert r.status_code == 500
    assert r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "api_error"
    assert (r.headers["x-promptzip-status"], r.headers["x-promptzip-batch-index"]) == ("error", "0")
    assert len(upstream.requests) == sent


# ------------------------------------------------------------------------------------------------- the routes
def test_the_batch_route_is_the_messages_routes_own() -> None:
    s = ProxySettings(upstream="https://api.anthropic.com/v1")
    assert s.batch_route("/v1/messages/batches") is s.route("/v1/messages")
    assert s.batch_route("/v1/messages/batches/msgbatch_1") is None
    assert s.batch_route("/v1/chat/completions/batches") is None  # only Anthropic's Messages have batches
    gateway = ProxySettings(
        upstream="https://api.anthropic.com/v1",
        routes={"/v1/messages": RouteSettings(compress=False), "/v1/gw": RouteSettings(dialect="anthropic")},
    )
    assert gateway.batch_route("/v1/messages/batches") is None
    assert gateway.batch_route("/v1/gw/batches") is gateway.route("/v1/gw")
