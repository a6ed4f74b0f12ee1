"""RedisCache against a real redis-server, and proxy replicas sharing it (also while Redis dies and comes back).

The fixture starts ``redis-server`` on a free port with persistence off, in a temporary folder, and kills it at the
end. Without the binary the tests skip with the reason, except under CI (``CI`` set), where they fail:
CI installs Debian's ``redis-server``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
from redis_helpers import RedisServer, free_port
from starlette.testclient import TestClient

from promptzip._cache import Cache, cache_from_url
from promptzip._errors import ConfigError
from promptzip._pipeline import Zipper
from promptzip._redis import RedisCache, redact, register_redis
from promptzip._registry import Registries, registries
from promptzip.compressors.extractive import ExtractiveCompressor
from promptzip.integrations.proxy import ProxySettings, TenantSettings, create_app, key_digest
from promptzip.integrations.proxy.testing import FakeUpstream
from promptzip.retrievers.sparse import BM25Scorer

redis = pytest.importorskip("redis")

SAMPLE = (Path(__file__).parents[1] / "promptzip" / "_sample" / "sotu.txt").read_text(encoding="utf-8")
SECRET = "sk-live-0123456789abcdef0123456789abcdef"
ACME_KEY = "sk-acme-fedcba9876543210fedcba9876543210"


@pytest.fixture(scope="module", autouse=True)
def _redis_scheme() -> None:
    register_redis(registries)  # the same factory object: harmless if promptzip's built-ins registered it already


# -------------------------------------------------------------------------------------------------- the cache
def test_round_trip_ttl_and_prefix(redis_server: RedisServer) -> None:
    cache = RedisCache(redis_server.url, ttl=120, prefix="t1:")
    try:
        assert cache.get("a") is None
        cache.put("a", b"\x00\x01binary")
        cache.put_many({"b": b"2", "c": b""})
        assert cache.get("a") == b"\x00\x01binary"
        assert cache.get_many(["a", "b", "c", "missing", "a"]) == {"a": b"\x00\x01binary", "b": b"2", "c": b""}
        assert cache.stats() | {"entries": 0, "bytes": 0} == {
            "entries": 0,
            "bytes": 0,
            "hits": 4,
            "misses": 2,
            "errors": 0,
        }
        raw = redis_server.client()
        assert raw.get("t1:a") == b"\x00\x01binary"
        assert 0 < raw.ttl("t1:b") <= 120
        view = cache.namespaced("tenant")
        view.put("k", b"v")
        assert raw.get("t1:tenant/k") == b"v"
        assert cache.get("k") is None
        raw.close()
    finally:
        cache.close()
    assert cache.get("a") == b"\x00\x01binary"  # a closed cache reconnects when used again
    cache.close()


def test_url_options_and_registration(redis_server: RedisServer) -> None:
    regs = Registries()
    register_redis(regs)
    register_redis(regs)  # idempotent
    cache = cache_from_url(f"redis://127.0.0.1:{redis_server.port}/3?ttl=60&prefix=app:&timeout=0.5", registries=regs)
    assert isinstance(cache, RedisCache)
    assert (cache.ttl, cache.prefix, cache.timeout) == (60, "app:", 0.5)
    cache.put("x", b"1")
    raw = redis.Redis(port=redis_server.port, db=3)
    assert raw.get("app:x") == b"1"
    raw.close()
    cache.close()
    assert cache_from_url(redis_server.url + "?ttl=none", registries=regs).ttl is None  # type: ignore[attr-defined]
    for bad in ("redis://h/0?ttl=soon", "redis://h/0?timeout=-1", "redis://h/0?ttl=-5", "redis://h/0?prefix=a%20b"):
        with pytest.raises(ConfigError):
            cache_from_url(bad, registries=regs)
    with pytest.raises(ConfigError):
        RedisCache("http://127.0.0.1:6379")


def test_the_password_is_never_shown() -> None:
    cache = RedisCache("redis://app:hunter2@10.0.0.5:6379/0")
    assert "hunter2" not in repr(cache)
    assert "10.0.0.5:6379" in repr(cache)
    assert redact("rediss://:pw@h:1/2") == "rediss://***@h:1/2"
    assert redact("redis://h:1/2") == "redis://h:1/2"


def test_a_dead_redis_is_a_fast_miss(caplog: pytest.LogCaptureFixture) -> None:
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2, retry_after=5)
    started = time.monotonic()
    for i in range(200):
        assert cache.get(f"k{i}") is None
        cache.put(f"k{i}", b"v")
    assert time.monotonic() - started < 2  # one refused connection, then the breaker skips Redis
    assert cache.errors == 400
    assert cache.misses == 200
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "continuing without the cache" in r.message
    ]
    assert len(warnings) == 1
    cache.close()


# ---------------------------------------------------------------------------------------- proxy replicas
def bm25(preset: str, target: str, cache: Cache) -> Zipper:
    return Zipper(ExtractiveCompressor(BM25Scorer(), min_relevance=None), target=target, name=preset)


def _chat(i: int = 0) -> dict[str, Any]:
    return {
        "model": "gpt-4o",
        "messages": [
            {"role": "user", "content": SAMPLE[i * 1000 : i * 1000 + 10_000]},
            {"role": "assistant", "content": "Read it."},
            {"role": "user", "content": "What does it say about college tuition and children?"},
        ],
    }


def _replica(upstream: FakeUpstream, cache: str) -> TestClient:
    """One proxy replica (its own app, cache client and metrics) in front of the fake upstream."""
    settings = ProxySettings(
        upstream=upstream.url,
        cache=cache,
        min_tokens=100,
        cache_key_secret="shared by the replicas",  # else each replica keys its result cache with its own secret
        tenants={"acme": TenantSettings(keys=(key_digest(ACME_KEY),))},
    )
    return TestClient(create_app(settings, zipper_factory=bm25))


def test_two_replicas_share_one_redis(redis_server: RedisServer, upstream: FakeUpstream) -> None:
    url = redis_server.url + "?prefix=share1:"
    with _replica(upstream, url) as a, _replica(upstream, url) as b:
        auth = {"authorization": f"Bearer {SECRET}"}
        ra = a.post("/v1/chat/completions", json=_chat(), headers=auth)
        rb = b.post("/v1/chat/completions", json=_chat(), headers=auth)
        assert ra.headers["x-promptzip-status"] == rb.headers["x-promptzip-status"] == "compressed"
        assert (ra.headers["x-promptzip-cache"], rb.headers["x-promptzip-cache"]) == ("miss", "hit")
        assert ra.headers["x-promptzip-tokens-out"] == rb.headers["x-promptzip-tokens-out"]
        b_metrics = b.get("/metrics").text
        assert "promptzip_proxy_cache_hits_total 1" in b_metrics
        assert 'promptzip_proxy_result_cache_total{result="hit"} 1' in b_metrics
        assert "promptzip_proxy_cache_errors_total 0" in b_metrics
        # Per-tenant namespaces are shared across replicas too, and kept apart from each other.
        t = {"authorization": f"Bearer {ACME_KEY}"}  # acme's key: its own namespace
        assert a.post("/v1/chat/completions", json=_chat(), headers=t).headers["x-promptzip-cache"] == "miss"
        assert b.post("/v1/chat/completions", json=_chat(), headers=t).headers["x-promptzip-cache"] == "hit"
    raw = redis_server.client()
    keys = list(raw.scan_iter("share1:*"))
    assert len(keys) == 2
    assert b"share1:acme/" in b" ".join(keys)
    for key in keys:  # keys are content hashes; values are compressed messages: never the credentials
        for key_text in (SECRET, ACME_KEY):
            assert key_text.encode() not in key
            assert key_text.encode() not in raw.get(key)
        assert len(key.split(b"/")[-1].split(b":")[-1]) == 64
    raw.close()


@pytest.mark.slow
def test_replicas_share_embeddings_of_the_fast_preset(redis_server: RedisServer, upstream: FakeUpstream) -> None:
    """With the real ``fast`` stack and no whole-request cache, the second replica finds every sentence embedding
    the first one computed in Redis: it misses nothing."""

    def fast(preset: str, target: str, cache: Cache) -> Zipper:
        return Zipper.from_preset("fast", target=target, cache=cache)

    url = redis_server.url + "?prefix=share2:"
    # The first compression loads the models: no deadline short enough to fail it open.
    settings = {
        "upstream": upstream.url,
        "cache": url,
        "min_tokens": 100,
        "result_cache": False,
        "compression_deadline": 600,
    }
    # Stateless requests: the conversation state of cache-stable history is looked up in the same cache, and its
    # lookups would count among the misses this test reads for embeddings (tests/test_conversation.py covers it).
    stateless = {"x-promptzip-history": "reselect"}
    with TestClient(create_app(ProxySettings(**settings), zipper_factory=fast)) as a:
        reply = a.post("/v1/chat/completions", json=_chat(3), headers=stateless)
        assert reply.headers["x-promptzip-status"] == "compressed"
        a_cache = a.app.state.proxy.compressions.cache  # type: ignore[attr-defined]
        assert a_cache.misses > 10  # every sentence embedding was computed here (then looked up again: hits)
    with TestClient(create_app(ProxySettings(**settings), zipper_factory=fast)) as b:
        reply = b.post("/v1/chat/completions", json=_chat(3), headers=stateless)
        assert reply.headers["x-promptzip-status"] == "compressed"
        b_cache = b.app.state.proxy.compressions.cache  # type: ignore[attr-defined]
        assert b_cache.hits >= a_cache.misses
        assert b_cache.misses == 0


def test_redis_killed_mid_run(own_redis: RedisServer, upstream: FakeUpstream) -> None:
    url = own_redis.url + "?timeout=0.2&retry_after=0.3"
    with _replica(upstream, url) as a, _replica(upstream, url) as b:
        assert a.post("/v1/chat/completions", json=_chat(0)).status_code == 200
        assert b.post("/v1/chat/completions", json=_chat(0)).headers["x-promptzip-cache"] == "hit"
        own_redis.kill()
        for i in range(6):  # new and known chats: all answered and compressed
            for replica in (a, b):
                r = replica.post("/v1/chat/completions", json=_chat(i % 3))
                assert r.status_code == 200
                assert r.headers["x-promptzip-status"] == "compressed"
                # Each replica's in-process tier still answers what it has seen: chat 0 from before the outage,
                # chats 1 and 2 from their first (cold) compression during it.
                seen = i % 3 == 0 or i >= 3
                assert r.headers["x-promptzip-cache"] == ("hit" if seen else "miss"), (i, r.headers)
        for replica in (a, b):
            errors = _metric(replica.get("/metrics").text, "promptzip_proxy_cache_errors_total")
            assert errors >= 2
        # Redis comes back (empty): after the breaker's pause the replicas use it again.
        own_redis.start()
        time.sleep(0.4)
        assert a.post("/v1/chat/completions", json=_chat(7)).headers["x-promptzip-cache"] == "miss"
        assert b.post("/v1/chat/completions", json=_chat(7)).headers["x-promptzip-cache"] == "hit"


def _metric(text: str, name: str) -> float:
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def test_replicas_continue_each_others_conversations_through_redis(redis_server: RedisServer) -> None:
    """Cache-stable history across replicas: what one replica sent for a conversation's prefix, another sends again
    byte for byte, because the conversation state lives in the shared Redis cache."""
    url = redis_server.url + "?prefix=conv:"

    def replica() -> Zipper:
        compressor = ExtractiveCompressor(BM25Scorer(), min_relevance=None)
        return Zipper(compressor, target="gpt-4o", cache=cache_from_url(url))

    report = " ".join(f"In year {i} the harbour handled {i * 7} ships and {i * 3} storms." for i in range(60))

    def ask(question: str) -> str:
        return f"Context:\n{report}\n\nQuestion: {question}"

    turn = [
        {"role": "system", "content": "Answer from the report."},
        {"role": "user", "content": ask("How many ships in year 12?")},
    ]
    first = replica().compress_messages(turn, rate=0.3)
    later = [
        *turn,
        {"role": "assistant", "content": "Seven."},
        {"role": "user", "content": ask("How many storms in year 40?")},
    ]
    second = replica().compress_messages(later, rate=0.3)
    assert first.messages is not None
    assert second.messages is not None
    assert list(second.messages[:2]) == list(first.messages)
    assert second.reused_messages == 2
