"""No client can stall the proxy or read another's traffic: presets, deadlines, the bounded queue, cache hits that
never wait for a compression thread, single flight, tenants by configuration and the per-credential result cache.

Everything runs through a real uvicorn server on 127.0.0.1 in front of the fake upstream; the compressors that
block or run long are real Compressors (BM25 selection behind a gate or a slow loop)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from proxy_helpers import bm25, settings
from starlette.testclient import TestClient

from promptzip._cache import Cache, MemoryCache
from promptzip._deadline import check, deadline, remaining
from promptzip._errors import DeadlineExceeded
from promptzip._pipeline import Zipper
from promptzip._roles import Compressor
from promptzip._tiered import TieredCache
from promptzip._tokenizers import Tokenizer
from promptzip._types import Chunk, Variant
from promptzip.compressors.extractive import ExtractiveCompressor
from promptzip.integrations.proxy import TenantSettings, create_app, key_digest
from promptzip.integrations.proxy.testing import FakeUpstream, live_server
from promptzip.retrievers.sparse import BM25Scorer

KEY_A = "sk-alice-00000000000000000000000000000000"
KEY_B = "sk-bob-1111111111111111111111111111111111"
ROUTE = "/v1/chat/completions"
TEXT = " ".join(
    f"Sentence {i} of the report says the harbour handled {i * 7} ships and {i * 3} storms that year."
    for i in range(40)
)


def body(tag: str = "") -> dict[str, Any]:
    """A chat well above min_tokens; ``tag`` makes it distinct (and "BLOCK" makes the gated compressor wait)."""
    return {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Answer from the documents.\n\nDocuments:\n" + TEXT + " " + tag},
            {"role": "user", "content": "How many ships in year 12?"},
        ],
    }


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", "x-promptzip-budget": "120"}


class Gated(Compressor):
    """BM25 selection that waits for ``gate`` on chats holding "BLOCK", counting its calls."""

    name = "gated"

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate
        self.calls = 0
        self.inner = ExtractiveCompressor(BM25Scorer(), min_relevance=None)

    def _propose(self, chunks: Sequence[Chunk], query: str | None, tokenizer: Tokenizer) -> list[list[Variant]]:
        self.calls += 1
        if any("BLOCK" in c.text for c in chunks):
            assert self.gate.wait(timeout=30), "the test never opened the gate"
        return self.inner.propose(chunks, query, tokenizer)


class Slow(Compressor):
    """Runs for ``seconds``; ``cooperative`` ones check the deadline between steps, as the model loops do."""

    name = "slow"

    def __init__(self, seconds: float, *, cooperative: bool) -> None:
        self.seconds, self.cooperative = seconds, cooperative
        self.steps = 0

    def _propose(self, chunks: Sequence[Chunk], query: str | None, tokenizer: Tokenizer) -> list[list[Variant]]:
        end = time.monotonic() + self.seconds
        while time.monotonic() < end:
            if self.cooperative:
                check("the slow test compressor")
            time.sleep(0.01)
            self.steps += 1
        return [[] for _ in chunks]


def factory_of(compressor: Compressor) -> Any:
    return lambda preset, target, cache: Zipper(compressor, target=target, name=preset)


# ----------------------------------------------------------------------------------------------- presets
def test_a_request_may_name_only_the_presets_the_operator_allows(upstream: FakeUpstream) -> None:
    with TestClient(create_app(settings(upstream.url), zipper_factory=bm25)) as c:
        r = c.post(ROUTE, json=body(), headers={"x-promptzip-preset": "max"})
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "unknown_preset"
        assert c.post(ROUTE, json=body(), headers={"x-promptzip-preset": "fast"}).status_code == 200  # the server's
    opened = settings(upstream.url, allowed_presets=("fast", "max"))
    with TestClient(create_app(opened, zipper_factory=bm25)) as c:
        r = c.post(ROUTE, json=body(), headers={"x-promptzip-preset": "max"})
        assert r.status_code == 200
        assert r.headers["x-promptzip-preset"] == "max"


class Niceness(Compressor):
    """BM25 selection that notes the CPU priority (nice value) of the thread it runs on."""

    name = "niceness"

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.inner = ExtractiveCompressor(BM25Scorer(), min_relevance=None)

    def _propose(self, chunks: Sequence[Chunk], query: str | None, tokenizer: Tokenizer) -> list[list[Variant]]:
        self.seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return self.inner.propose(chunks, query, tokenizer)


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread priorities need Linux")
@pytest.mark.parametrize("nice", [10, 0])
def test_compression_threads_run_at_a_lower_priority(upstream: FakeUpstream, nice: int) -> None:
    noted = Niceness()
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    with TestClient(create_app(settings(upstream.url, compression_nice=nice), zipper_factory=factory_of(noted))) as c:
        assert c.post(ROUTE, json=body()).headers["x-promptzip-status"] == "compressed"
    assert noted.seen == [min(19, own + nice)]


# ----------------------------------------------------------------------------------------------- deadline
@pytest.mark.parametrize("cooperative", [True, False])
def test_a_compression_past_its_deadline_fails_open(upstream: FakeUpstream, cooperative: bool) -> None:
    slow = Slow(3.0, cooperative=cooperative)
    app = create_app(settings(upstream.url, compression_deadline=0.3), zipper_factory=factory_of(slow))
    with TestClient(app) as c:
        started = time.monotonic()
        r = c.post(ROUTE, json=body(), headers=auth(KEY_A))
        waited = time.monotonic() - started
        assert r.status_code == 200
        assert r.headers["x-promptzip-status"] == "fail-open"
        assert r.headers["x-promptzip-error"] == "deadline_exceeded"
        assert r.headers["x-promptzip-deadline"] == "0.3"
        assert upstream.requests[-1].json() == body()  # the original went upstream
        assert waited < 2.5  # answered without waiting for the 3 s compression to end
        assert "promptzip_proxy_deadline_exceeded_total 1" in c.get("/metrics").text
    if cooperative:  # the thread stopped itself at the deadline instead of running for 3 s
        assert slow.steps < 150


def test_fail_closed_answers_504_at_the_deadline(upstream: FakeUpstream) -> None:
    s = settings(upstream.url, compression_deadline=0.2, fail_mode="closed")
    with TestClient(create_app(s, zipper_factory=factory_of(Slow(2.0, cooperative=True)))) as c:
        r = c.post(ROUTE, json=body())
        assert r.status_code == 504
        assert r.json()["error"]["code"] == "deadline_exceeded"
        assert r.headers["x-promptzip-deadline"] == "0.2"


def test_the_route_deadline_overrides_the_server_one(upstream: FakeUpstream) -> None:
    s = settings(upstream.url, compression_deadline=60, routes={ROUTE: {"compression_deadline": 0.2}})
    with TestClient(create_app(s, zipper_factory=factory_of(Slow(2.0, cooperative=True)))) as c:
        assert c.post(ROUTE, json=body()).headers["x-promptzip-deadline"] == "0.2"


def test_deadline_scopes_nest_and_check_raises() -> None:
    assert remaining() is None
    check("nothing")  # no deadline: never raises
    with deadline(10):
        outer = remaining()
        assert outer is not None
        assert 9 < outer <= 10
        with deadline(100):  # an inner, later deadline never extends the outer one
            inner = remaining()
            assert inner is not None
            assert inner <= outer
        with deadline(0):
            time.sleep(0.001)
            with pytest.raises(DeadlineExceeded, match="in the step"):
                check("the step")
        check("the outer block")  # its own deadline is still ahead
    assert remaining() is None
    assert issubclass(DeadlineExceeded, TimeoutError)


# ------------------------------------------------------------------------ hits, queue and single flight
@pytest.fixture
def gated(upstream: FakeUpstream) -> Iterator[tuple[str, Gated, threading.Event]]:
    gate = threading.Event()
    compressor = Gated(gate)
    s = settings(upstream.url, compression_threads=1, compression_queue=2, compression_deadline=30)
    try:
        with live_server(create_app(s, zipper_factory=factory_of(compressor))) as url:
            yield url, compressor, gate
    finally:
        gate.set()


def test_cache_hits_and_small_chats_never_wait_for_a_compression_thread(
    gated: tuple[str, Gated, threading.Event],
) -> None:
    url, _, gate = gated
    with httpx.Client(base_url=url, timeout=30) as http, ThreadPoolExecutor(4) as pool:
        assert http.post(ROUTE, json=body("warm"), headers=auth(KEY_A)).headers["x-promptzip-cache"] == "miss"
        blocked = pool.submit(http.post, ROUTE, json=body("BLOCK 1"), headers=auth(KEY_A))
        time.sleep(0.3)  # the only compression thread now waits on the gate
        assert not blocked.done()
        hit = http.post(ROUTE, json=body("warm"), headers=auth(KEY_A), timeout=5)
        assert hit.headers["x-promptzip-cache"] == "hit"
        small = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
        assert http.post(ROUTE, json=small, timeout=5).headers["x-promptzip-status"] == "passthrough"
        assert not blocked.done()
        gate.set()
        assert blocked.result().headers["x-promptzip-status"] == "compressed"


def test_a_full_queue_is_a_503_with_retry_after(gated: tuple[str, Gated, threading.Event]) -> None:
    url, _, gate = gated
    with httpx.Client(base_url=url, timeout=30) as http, ThreadPoolExecutor(4) as pool:
        waiting = [pool.submit(http.post, ROUTE, json=body(f"BLOCK {i}"), headers=auth(KEY_A)) for i in range(2)]
        time.sleep(0.5)  # one runs (blocked), one waits: the queue of 2 is full
        r = http.post(ROUTE, json=body("BLOCK 3"), headers=auth(KEY_A), timeout=5)
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "overloaded"
        assert int(r.headers["retry-after"]) >= 1
        assert "promptzip_proxy_overloaded_total 1" in http.get("/metrics").text
        gate.set()
        assert [w.result().headers["x-promptzip-status"] for w in waiting] == ["compressed", "compressed"]
        again = http.post(ROUTE, json=body("BLOCK 3"), headers=auth(KEY_A))
        assert again.headers["x-promptzip-status"] == "compressed"  # room again once they finished


def test_identical_chats_in_flight_share_one_compression(gated: tuple[str, Gated, threading.Event]) -> None:
    url, compressor, gate = gated
    with httpx.Client(base_url=url, timeout=30) as http, ThreadPoolExecutor(4) as pool:
        before = compressor.calls
        first = pool.submit(http.post, ROUTE, json=body("BLOCK same"), headers=auth(KEY_A))
        time.sleep(0.3)
        second = pool.submit(http.post, ROUTE, json=body("BLOCK same"), headers=auth(KEY_A))
        time.sleep(0.3)
        gate.set()
        a, b = first.result(), second.result()
        assert compressor.calls == before + 1
        assert (a.headers["x-promptzip-cache"], b.headers["x-promptzip-cache"]) == ("miss", "joined")
        assert a.headers["x-promptzip-tokens-out"] == b.headers["x-promptzip-tokens-out"]


# ------------------------------------------------------------------------ tenants and credential scope
def test_the_result_cache_is_scoped_per_credential(upstream: FakeUpstream) -> None:
    app = create_app(settings(upstream.url), zipper_factory=bm25)
    with TestClient(app) as c:
        got = [c.post(ROUTE, json=body(), headers=auth(k)).headers["x-promptzip-cache"] for k in (KEY_A, KEY_B, KEY_A)]
        assert got == ["miss", "miss", "hit"]  # B never learns that A sent this chat
        cache = app.state.proxy.compressions.cache
        assert isinstance(cache, MemoryCache)
        for key, value in cache._data.items():
            for secret in (KEY_A, KEY_B):
                assert secret not in key
                assert secret.encode() not in value
    shared = create_app(settings(upstream.url, result_cache_scope="shared"), zipper_factory=bm25)
    with TestClient(shared) as c:
        got = [c.post(ROUTE, json=body(), headers=auth(k)).headers["x-promptzip-cache"] for k in (KEY_A, KEY_B)]
        assert got == ["miss", "hit"]


def test_tenants_exist_only_by_configuration_and_share_one_zipper(upstream: FakeUpstream) -> None:
    tenants = {"acme": TenantSettings(keys=(key_digest(KEY_A),)), "globex": TenantSettings(keys=(key_digest(KEY_B),))}
    app = create_app(settings(upstream.url, tenants=tenants, result_cache_scope="shared"), zipper_factory=bm25)
    with TestClient(app) as c:
        for key in (KEY_A, KEY_A, KEY_B):
            assert c.post(ROUTE, json=body(), headers=auth(key)).status_code == 200
        # Without tenant_header configured the header is not a control: it cannot pick a namespace.
        r = c.post(ROUTE, json=body(), headers={"x-promptzip-tenant": "acme", "x-promptzip-budget": "120"})
        assert r.headers["x-promptzip-cache"] == "miss"  # the default namespace, not acme's
        cache = app.state.proxy.compressions.cache
        assert isinstance(cache, MemoryCache)
        namespaces = sorted(k.split("/")[0] for k in cache._data if "/" in k)
        assert namespaces == ["acme", "globex"]
        assert len(app.state.proxy.compressions._zippers) == 1  # models and memos are shared by every tenant

    gated = settings(upstream.url, tenants=tenants, tenant_header="x-gateway-tenant")
    with TestClient(create_app(gated, zipper_factory=bm25)) as c:
        r = c.post(ROUTE, json=body(), headers={"x-gateway-tenant": "initech"})
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "unknown_tenant"
        assert c.post(ROUTE, json=body(), headers={"x-gateway-tenant": "acme"}).status_code == 200


def test_tenant_keys_are_digests_never_keys() -> None:
    with pytest.raises(ValueError, match="sha256"):
        TenantSettings(keys=(KEY_A,))
    assert key_digest("test") == "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


# ---------------------------------------------------------------------------------------- tiered cache
class Dead(Cache):
    """A back end that has gone away."""

    def _get(self, key: str) -> bytes | None:
        raise ConnectionError("down")

    def _put(self, key: str, value: bytes) -> None:
        raise ConnectionError("down")


def test_the_in_process_tier_answers_while_the_back_is_down() -> None:
    back = MemoryCache()
    tiered = TieredCache(back, MemoryCache(max_bytes=1 << 20))
    back.put("old", b"1")
    assert tiered.get("old") == b"1"  # filled from the back
    tiered.put("new", b"2")
    assert back.get("new") == b"2"  # written through
    tiered.back = Dead()
    assert tiered.get_many(["old", "new", "gone"]) == {"old": b"1", "new": b"2"}
    assert tiered.get("gone") is None
    tiered.put("later", b"3")  # the back's failure is counted, the front keeps it
    assert tiered.get("later") == b"3"
    assert tiered.errors >= 2
