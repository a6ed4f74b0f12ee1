"""The expand store: originals by content id, per scope, on every cache backend, and ``pz.expand``.

Redis runs for real (``redis-server`` from the fixture in ``test_redis_cache.py``; skipped without the binary, except
in CI, where it fails).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_helpers import RedisServer, redis_server_in

import promptzip as pz
from promptzip._cache import Cache, MemoryCache, NullCache, cache_from_url
from promptzip._expand import EXPAND_ID, ExpandStore, expand_id
from promptzip._redis import RedisCache
from promptzip._sqlite_cache import SQLiteCache

MiB = 1 << 20


def tool_output(size: int, seed: int = 0) -> str:
    """A JSON array of API-like records, about ``size`` characters, with non-ASCII text and numbers that vary."""
    rng = random.Random(seed)
    items, length = [], 2
    while length < size:
        item = {
            "id": f"ord_{rng.getrandbits(48):012x}",
            "status": rng.choice(["paid", "refunded", "pending", "échoué"]),
            "amount": round(rng.uniform(1, 9999), 2),
            "note": rng.choice(["", "fragile ✓", "call before delivery", "ünïcode"]),
        }
        text = json.dumps(item, ensure_ascii=False)
        items.append(text)
        length += len(text) + 2
    return "[" + ", ".join(items) + "]"


@pytest.fixture(params=["memory", "sqlite", "redis"])
def cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cache]:
    """One cache of each backend, each big enough for the 5 MB texts."""
    made: Cache
    if request.param == "memory":
        made = MemoryCache()
    elif request.param == "sqlite":
        made = SQLiteCache(tmp_path / "cache.db")
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        made = RedisCache(server.url, prefix=f"expand-{tmp_path.name}:", timeout=5)
    try:
        yield made
    finally:
        made.close()


# ------------------------------------------------------------------------------------------------------ the id
def test_the_id_is_the_content_hash() -> None:
    text = "kept elsewhere: 42 rows"
    assert expand_id(text) == "pz-" + hashlib.sha256(text.encode()).hexdigest()[:16]
    assert EXPAND_ID.fullmatch(expand_id(text))
    assert expand_id(text) == expand_id("kept elsewhere: 42 rows")
    assert expand_id(text) != expand_id(text + " ")


# ------------------------------------------------------------------------------------------ every backend
def test_round_trip(cache: Cache) -> None:
    store = ExpandStore(cache)
    texts = ["", "one line", "naïve café ✓ 東京", "line\nbreaks\r\n\ttabs", "\ud800 a lone surrogate", "x" * 5000]
    ids = [store.put(t) for t in texts]
    assert ids == [expand_id(t) for t in texts]
    assert len(set(ids)) == len(texts)
    assert [store.get(i) for i in ids] == texts
    assert cache.errors == 0


def test_the_same_text_twice_is_one_entry(cache: Cache) -> None:
    store = ExpandStore(cache)
    text = tool_output(20_000, seed=3)
    assert store.put(text, scope="a") == store.put(text, scope="a")
    assert store.get(expand_id(text), scope="a") == text


def test_a_scope_sees_only_its_own_ids(cache: Cache) -> None:
    store = ExpandStore(cache)
    mine = store.put("the rows credential A's tool returned", scope="credential-a")
    with pytest.raises(pz.ExpandNotFound) as caught:
        store.get(mine, scope="credential-b")
    with pytest.raises(pz.ExpandNotFound) as unscoped:
        store.get(mine)  # the default scope "" is a scope like any other
    # The same text stored for B has the same id, and B then finds B's copy: ids name contents, not owners.
    assert store.put("the rows credential A's tool returned", scope="credential-b") == mine
    assert store.get(mine, scope="credential-b") == store.get(mine, scope="credential-a")
    # Unknown and foreign ids fail alike: the message tells nothing about other scopes.
    with pytest.raises(pz.ExpandNotFound) as never:
        store.get("pz-0123456789abcdef", scope="credential-b")
    assert str(caught.value).replace(mine, "ID") == str(never.value).replace("pz-0123456789abcdef", "ID")
    assert caught.value.id == mine
    assert unscoped.value.id == mine
    assert mine in str(caught.value)


def test_five_megabytes_round_trip(cache: Cache) -> None:
    store = ExpandStore(cache)
    big = tool_output(5 * MiB, seed=1)
    assert len(big.encode()) > 5 * MiB
    id = store.put(big, scope="s")
    assert store.get(id, scope="s") == big
    noise = base64.b64encode(random.Random(2).randbytes(4 * MiB)).decode()  # ~5.6 MB that zlib cannot shrink
    assert store.get(store.put(noise, scope="s"), scope="s") == noise
    assert cache.errors == 0


# --------------------------------------------------------------------------------------------- what fails
@pytest.mark.parametrize(
    "junk",
    [
        "",
        "pz-",
        "pz-0123456789abcde",  # 15 digits
        "pz-0123456789abcdef0",  # 17
        "pz-0123456789ABCDEF",  # upper case
        "PZ-0123456789abcdef",
        " pz-0123456789abcdef",
        "pz-0123456789abcdef\n",
        "../../etc/passwd",
        "pz-../../../etc/pass",
        "pz-0123456789abcdeg",
        "x" * 100_000,
    ],
)
def test_junk_ids_are_input_errors(junk: str) -> None:
    store = ExpandStore(MemoryCache())
    with pytest.raises(pz.InputError) as caught:
        store.get(junk)
    assert not isinstance(caught.value, pz.ExpandNotFound)
    assert len(str(caught.value)) < 200  # the junk is not echoed
    with pytest.raises(pz.InputError):
        pz.expand(junk, cache=MemoryCache())


def test_wrong_types_are_input_errors() -> None:
    store = ExpandStore(MemoryCache())
    with pytest.raises(pz.InputError):
        store.put(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(pz.InputError):
        store.put("text", scope=None)  # type: ignore[arg-type]
    with pytest.raises(pz.InputError):
        store.get(123)  # type: ignore[arg-type]
    with pytest.raises(pz.InputError):
        ExpandStore("memory")  # type: ignore[arg-type]


def test_expand_not_found_is_an_input_and_lookup_error() -> None:
    with pytest.raises(LookupError):
        ExpandStore(MemoryCache()).get("pz-0123456789abcdef")
    assert issubclass(pz.ExpandNotFound, pz.InputError)
    assert issubclass(pz.ExpandNotFound, pz.PromptZipError)


def test_a_cache_that_stores_nothing_never_fails_a_put() -> None:
    none = ExpandStore(NullCache())
    id = none.put("gone")
    with pytest.raises(pz.ExpandNotFound):
        none.get(id)
    small = MemoryCache(max_bytes=1000)  # a value over the bound is skipped, as any cache write would be
    assert ExpandStore(small).put(tool_output(50_000)) == expand_id(tool_output(50_000))
    with pytest.raises(pz.ExpandNotFound):
        ExpandStore(small).get(expand_id(tool_output(50_000)))


def test_a_broken_sqlite_file_degrades_to_not_found(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "not-writable"
    folder.write_text("a file where the cache's folder should be")
    cache = SQLiteCache(folder / "cache.db")
    store = ExpandStore(cache)
    with caplog.at_level(logging.WARNING, logger="promptzip"):
        id = store.put("an original")  # the write fails inside the cache: counted, logged, not raised
    assert cache.errors >= 1
    with pytest.raises(pz.ExpandNotFound):
        store.get(id)


def test_a_dead_redis_degrades_to_not_found(tmp_path: Path) -> None:
    server = redis_server_in(tmp_path)
    server.start()
    cache = RedisCache(server.url, retry_after=0)
    store = ExpandStore(cache)
    try:
        id = store.put("stored while Redis ran")
        assert store.get(id) == "stored while Redis ran"
        server.kill()
        assert store.put("written while Redis is down") == expand_id("written while Redis is down")
        with pytest.raises(pz.ExpandNotFound):
            store.get(id)
        assert cache.errors >= 2
    finally:
        cache.close()
        server.kill()


def test_a_damaged_value_is_not_returned() -> None:
    cache = MemoryCache()
    store = ExpandStore(cache)
    id = store.put("the real original")
    key = store._key(id, "")
    cache.put(key, b"t" + b"something else")
    with pytest.raises(pz.ExpandNotFound):
        store.get(id)
    cache.put(key, b"z" + b"not zlib")
    with pytest.raises(pz.ExpandNotFound):
        store.get(id)


# ------------------------------------------------------------------------------------------------ pz.expand
def test_pz_expand_reads_a_zippers_cache() -> None:
    zipper = pz.Zipper.from_preset("fast", cache="memory")  # nothing loads until a compression
    id = ExpandStore(zipper.cache).put("what the reducer cut", scope="me")
    assert pz.expand(id, cache=zipper.cache, scope="me") == "what the reducer cut"
    with pytest.raises(pz.ExpandNotFound):
        pz.expand(id, cache=zipper.cache)
    assert zipper.cache.stats()["entries"] == 1  # a Cache passed in is not closed (a memory cache would empty)


def test_pz_expand_defaults_to_the_presets_default_cache() -> None:
    # conftest points PROMPTZIP_CACHE_DIR at a temporary folder: this is the default SQLite file there.
    default = cache_from_url(None)
    assert isinstance(default, SQLiteCache)
    try:
        id = ExpandStore(default).put("stored through the default cache")
    finally:
        default.close()
    assert pz.expand(id) == "stored through the default cache"
    assert pz.expand(id, cache=f"sqlite:///{default.path}") == "stored through the default cache"


def test_pz_expand_over_redis_url(redis_server: RedisServer) -> None:
    from promptzip._redis import register_redis
    from promptzip._registry import registries

    register_redis(registries)
    writer = cache_from_url(redis_server.url)
    try:
        id = ExpandStore(writer).put("shared by replicas", scope="tenant/abc")
    finally:
        writer.close()
    assert pz.expand(id, cache=redis_server.url, scope="tenant/abc") == "shared by replicas"
