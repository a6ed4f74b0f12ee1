"""``GET /v1/promptzip/expand/{id}`` on the real proxy (uvicorn on 127.0.0.1, httpx): an original stored for one
credential is returned to it, a 404 JSON error to anyone else or for an unknown id, a 400 for a malformed one, and
nothing under ``/v1/promptzip/`` ever reaches the upstream."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from proxy_helpers import bm25, settings
from redis_helpers import RedisServer, redis_server_in

from promptzip._expand import expand_id
from promptzip._redis import register_redis
from promptzip._registry import registries
from promptzip.integrations.proxy import TenantSettings, create_app, key_digest
from promptzip.integrations.proxy._expand import Expansions, expand_scope
from promptzip.integrations.proxy._options import parse_options
from promptzip.integrations.proxy._settings import RouteSettings
from promptzip.integrations.proxy.testing import FakeUpstream, live_server

KEY_A = "sk-alice-00000000000000000000000000000000"
KEY_B = "sk-bob-1111111111111111111111111111111111"
KEY_A2 = "sk-alice-second-key-222222222222222222222"
ORIGINAL = json.dumps(
    [{"id": i, "status": "failed" if i % 7 == 0 else "ok", "detail": f"row {i} of the export"} for i in range(500)]
)
EXPAND = "/v1/promptzip/expand/"


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


class Proxy:
    """A live proxy and its app's expand store."""

    def __init__(self, url: str, app: Any) -> None:
        self.url = url
        self.expansions: Expansions = app.state.proxy.expansions

    def store(self, text: str, headers: dict[str, str]) -> str:
        """Store ``text`` as the compression of a request with ``headers`` would (the compression path's helper)."""
        return self.expansions.put(text, self.expansions.scope_of(headers))

    def get(self, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> httpx.Response:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            return client.request(method, path, headers=headers)


@pytest.fixture(scope="module")
def proxy(upstream: FakeUpstream) -> Iterator[Proxy]:
    app = create_app(settings(upstream.url), zipper_factory=bm25)
    with live_server(app) as url:
        yield Proxy(url, app)


def error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = r.json()["error"]
    assert (body["type"], body["code"]) == ("invalid_request_error", code)
    assert set(body) == {"message", "type", "param", "code"}
    return body


def test_the_owner_gets_the_original(proxy: Proxy, upstream: FakeUpstream) -> None:
    before = len(upstream.requests)
    id = proxy.store(ORIGINAL, bearer(KEY_A))
    assert id == expand_id(ORIGINAL)
    r = proxy.get(EXPAND + id, bearer(KEY_A))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"id": id, "text": ORIGINAL}
    assert "no-store" in r.headers["cache-control"]
    # The same credential in the header another client library uses finds it too.
    assert proxy.get(EXPAND + id, {"x-api-key": KEY_A}).json()["text"] == ORIGINAL
    assert len(upstream.requests) == before


def test_another_credential_gets_the_same_404_as_for_an_unknown_id(proxy: Proxy, upstream: FakeUpstream) -> None:
    before = len(upstream.requests)
    id = proxy.store("credential A's log: 3 errors, 1,204 lines folded", bearer(KEY_A))
    foreign = error(proxy.get(EXPAND + id, bearer(KEY_B)), 404, "expand_not_found")
    anonymous = error(proxy.get(EXPAND + id), 404, "expand_not_found")
    unknown_id = "pz-0123456789abcdef"
    unknown = error(proxy.get(EXPAND + unknown_id, bearer(KEY_A)), 404, "expand_not_found")
    assert foreign["param"] == "id"
    assert foreign == anonymous
    assert foreign["message"].replace(id, "ID") == unknown["message"].replace(unknown_id, "ID")
    assert "credential A" not in foreign["message"]
    assert len(upstream.requests) == before


def test_an_empty_bearer_beside_an_api_key_does_not_share_one_partition(proxy: Proxy) -> None:
    # An empty "Bearer " (it arrives as "Bearer") was read as the credential itself, so every client sending it
    # beside its own x-api-key shared one partition: one got another's originals. The empty bearer names no one.
    victim = {"authorization": "Bearer", "x-api-key": KEY_A}
    id = proxy.store("the victim's export: 12 rows, one failed", victim)
    assert proxy.get(EXPAND + id, victim).status_code == 200
    assert proxy.get(EXPAND + id, bearer(KEY_A)).status_code == 200  # the same key however it is sent
    error(proxy.get(EXPAND + id, {"authorization": "Bearer", "x-api-key": KEY_B}), 404, "expand_not_found")
    error(proxy.get(EXPAND + id, {"authorization": "Bearer"}), 404, "expand_not_found")


@pytest.mark.parametrize(
    "junk",
    [
        "pz-0123",
        "pz-0123456789ABCDEF",
        "pz-0123456789abcdef0",
        "pz-0123456789abcdeg",
        "0123456789abcdef",
        "pz-..%2F..%2F..%2Fetc",
        "..%2F..%2Fhealthz",
        "pz-0123456789abcdef%00",
        "pz-0123456789abcdef/extra",
        "%70z-0123456789abcde",
        "",
        "x" * 4000,
    ],
)
def test_a_malformed_id_is_a_400(proxy: Proxy, upstream: FakeUpstream, junk: str) -> None:
    before = len(upstream.requests)
    body = error(proxy.get(EXPAND + junk, bearer(KEY_A)), 400, "invalid_expand_id")
    assert body["param"] == "id"
    assert len(body["message"]) < 200  # the junk is not echoed back
    assert len(upstream.requests) == before


def test_the_promptzip_paths_are_never_forwarded(proxy: Proxy, upstream: FakeUpstream) -> None:
    before = len(upstream.requests)
    id = proxy.store("stored", bearer(KEY_A))
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        r = proxy.get(EXPAND + id, bearer(KEY_A), method=method)
        error(r, 405, "method_not_allowed")
        assert r.headers["allow"] == "GET"
    error(proxy.get("/v1/promptzip/other", bearer(KEY_A)), 404, "not_found")
    error(proxy.get("/v1/promptzip/", bearer(KEY_A)), 404, "not_found")
    assert len(upstream.requests) == before
    assert proxy.get("/v1/models", bearer(KEY_A)).status_code == 200  # everything else still goes upstream
    assert len(upstream.requests) == before + 1


def test_five_megabytes_come_back_whole(proxy: Proxy) -> None:
    rng = random.Random(5)
    lines = [f"2024-05-0{rng.randint(1, 9)} INFO worker-{rng.randint(1, 64)} handled job {i}" for i in range(120_000)]
    big = "\n".join(lines) + "\nERROR worker-7 lost job 31337 — disk full ✗"
    assert len(big.encode()) > 5 * (1 << 20)
    id = proxy.store(big, bearer(KEY_A))
    r = proxy.get(EXPAND + id, bearer(KEY_A))
    assert r.status_code == 200
    assert r.json()["text"] == big


def test_the_compression_path_and_the_endpoint_agree_on_the_scope(proxy: Proxy) -> None:
    """What a compression stores with ``expand_scope(options)`` is what a GET with the same headers finds."""
    ex = proxy.expansions
    for headers in (bearer(KEY_A), {"x-api-key": KEY_A}, {"api-key": KEY_B}, {}):
        options = parse_options(headers, RouteSettings(), ex.settings, ex.compressions.secret)
        assert expand_scope(options) == ex.scope_of(headers)
    assert ex.scope_of(bearer(KEY_A)) != ex.scope_of(bearer(KEY_B)) != ex.scope_of({})
    assert KEY_A not in ex.scope_of(bearer(KEY_A))  # a keyed hash, never the key


def test_the_metrics_name_the_route_not_the_id(proxy: Proxy) -> None:
    id = proxy.store("counted", bearer(KEY_A))
    assert proxy.get(EXPAND + id, bearer(KEY_A)).status_code == 200
    metrics = proxy.get("/metrics").text
    assert 'route="expand",status="200"' in metrics
    assert id not in metrics


def test_tenants_keep_their_originals_apart(upstream: FakeUpstream) -> None:
    """With ``result_cache_scope = "shared"`` the credentials of one tenant share originals; tenants never do."""
    tenants = {
        "acme": TenantSettings(keys=(key_digest(KEY_A), key_digest(KEY_A2))),
        "globex": TenantSettings(keys=(key_digest(KEY_B),)),
    }
    app = create_app(settings(upstream.url, tenants=tenants, result_cache_scope="shared"), zipper_factory=bm25)
    with live_server(app) as url:
        proxy = Proxy(url, app)
        id = proxy.store("acme's export", bearer(KEY_A))
        assert proxy.get(EXPAND + id, bearer(KEY_A2)).json()["text"] == "acme's export"
        error(proxy.get(EXPAND + id, bearer(KEY_B)), 404, "expand_not_found")
        error(proxy.get(EXPAND + id), 404, "expand_not_found")


def test_replicas_sharing_redis_answer_for_each_other(upstream: FakeUpstream, tmp_path: Path) -> None:
    redis_server: RedisServer = redis_server_in(tmp_path)
    redis_server.start()
    register_redis(registries)
    try:
        shared = settings(upstream.url, cache=redis_server.url, cache_key_secret="the same on every replica")
        one, two = create_app(shared, zipper_factory=bm25), create_app(shared, zipper_factory=bm25)
        with live_server(one) as url_one, live_server(two) as url_two:
            id = Proxy(url_one, one).store("written by replica one", bearer(KEY_A))
            replica = Proxy(url_two, two)
            assert replica.get(EXPAND + id, bearer(KEY_A)).json()["text"] == "written by replica one"
            error(replica.get(EXPAND + id, bearer(KEY_B)), 404, "expand_not_found")
    finally:
        redis_server.kill()
