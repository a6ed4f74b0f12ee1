"""Caches: keys, backends, eviction, versioning, corruption, concurrency, URLs and value helpers."""

from __future__ import annotations

import io
import logging
import multiprocessing
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from promptzip import _registry
from promptzip._cache import (
    CACHE_VERSION,
    Cache,
    MemoryCache,
    NullCache,
    cache_from_url,
    decode_array,
    decode_json,
    default_cache_path,
    encode_array,
    encode_json,
    make_key,
    register_caches,
)
from promptzip._errors import ConfigError, InputError
from promptzip._sqlite_cache import SQLiteCache


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "promptzip" and r.levelno == logging.WARNING]


@pytest.fixture
def sqlite_cache(tmp_path: Path) -> Iterator[SQLiteCache]:
    cache = SQLiteCache(tmp_path / "cache.db")
    yield cache
    cache.close()


@pytest.fixture(params=["null", "memory", "sqlite"])
def any_cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cache]:
    factories: dict[str, Callable[[], Cache]] = {
        "null": NullCache,
        "memory": MemoryCache,
        "sqlite": lambda: SQLiteCache(tmp_path / "cache.db"),
    }
    cache = factories[request.param]()
    yield cache
    cache.close()


@pytest.fixture
def regs(monkeypatch: pytest.MonkeyPatch) -> _registry.Registries:
    """A fresh registry holding only the cache schemes; plug-in loading is switched off for the test."""
    monkeypatch.setattr(_registry, "_loaded", True)
    fresh = _registry.Registries()
    register_caches(fresh)
    return fresh


# -- keys --------------------------------------------------------------------------------------------------------
def test_make_key_is_stable_hex_and_length_prefixed() -> None:
    key = make_key("scores", "model-a", "text")
    assert key == make_key("scores", "model-a", "text")
    assert len(key) == 64
    assert int(key, 16) >= 0
    assert make_key("ns", "ab", "c") != make_key("ns", "a", "bc")
    assert make_key("ns", "a") != make_key("nsa")
    assert make_key("ns", "a", "") != make_key("ns", "a")
    assert make_key("a", "x") != make_key("b", "x")
    assert make_key("ns", "é") == make_key("ns", "é".encode())
    assert make_key("ns", "\ud800")  # lone surrogates hash instead of raising


def test_make_key_rejects_other_types() -> None:
    with pytest.raises(InputError):
        make_key("ns", 3)  # type: ignore[arg-type]


# -- every backend -------------------------------------------------------------------------------------------------
def test_round_trip(any_cache: Cache) -> None:
    assert any_cache.get("k") is None
    any_cache.put("k", b"value")
    any_cache.put_many({"a": b"1", "b": bytearray(b"2"), "empty": b""})  # type: ignore[dict-item]
    found = any_cache.get_many(["a", "b", "missing", "a", "empty"])
    if isinstance(any_cache, NullCache):
        assert any_cache.get("k") is None
        assert found == {}
        assert any_cache.stats() == {"entries": 0, "bytes": 0, "hits": 0, "misses": 6, "errors": 0}
        return
    assert any_cache.get("k") == b"value"
    assert found == {"a": b"1", "b": b"2", "empty": b""}
    assert list(found) == ["a", "b", "empty"]
    any_cache.put("k", b"other")
    assert any_cache.get("k") == b"other"
    stats = any_cache.stats()
    assert (stats["hits"], stats["misses"], stats["errors"]) == (5, 2, 0)
    assert (stats["entries"], stats["bytes"]) == (4, len(b"other" + b"1" + b"2"))


def test_empty_batches_and_bad_values(any_cache: Cache) -> None:
    assert any_cache.get_many([]) == {}
    any_cache.put_many({})
    with pytest.raises(InputError):
        any_cache.put("k", "text")  # type: ignore[arg-type]


def test_namespaced_views_do_not_see_each_other(any_cache: Cache) -> None:
    tenant_a, tenant_b = any_cache.namespaced("a"), any_cache.namespaced("b")
    tenant_a.put("k", b"A")
    tenant_b.put_many({"k": b"B"})
    if isinstance(any_cache, NullCache):
        assert tenant_a.get("k") is None
        return
    assert tenant_a.get("k") == b"A"
    assert tenant_b.get_many(["k", "x"]) == {"k": b"B"}
    assert any_cache.get("k") is None
    assert tenant_a.namespaced("inner").get("k") is None
    assert (tenant_a.hits, tenant_b.hits, tenant_b.misses) == (1, 1, 1)
    assert (any_cache.hits, any_cache.misses) == (2, 3)  # views count in their base too
    with pytest.raises(ConfigError):
        any_cache.namespaced("a/b")


class _Broken(Cache):
    def _get(self, key: str) -> bytes | None:
        raise RuntimeError("backend down")

    def _put(self, key: str, value: bytes) -> None:
        raise OSError("disk full")


def test_backend_failures_degrade_and_warn_once(caplog: pytest.LogCaptureFixture) -> None:
    cache = _Broken()
    with caplog.at_level(logging.DEBUG, logger="promptzip"):
        assert cache.get("k") is None
        assert cache.get_many(["a", "b"]) == {}
        cache.put("k", b"v")
        cache.put_many({"k": b"v"})
        view = cache.namespaced("t")
        view.put("k", b"v")
        assert view.get("k") is None
    assert (view.hits, view.misses, view.errors) == (0, 1, 2)
    assert (cache.hits, cache.misses, cache.errors) == (0, 4, 6)  # a view's traffic counts in its base too
    warnings = _warnings(caplog)
    assert len(warnings) == 1
    assert "backend down" in warnings[0].getMessage()


# -- MemoryCache -----------------------------------------------------------------------------------------------
def test_memory_lru_is_bounded_by_bytes() -> None:
    cache = MemoryCache(max_bytes=1000)
    for i in range(50):
        cache.put(f"k{i}", bytes(100))
        assert cache.get("k0") == bytes(100)  # keep k0 hot
    stats = cache.stats()
    assert stats["bytes"] <= 1000
    assert stats["entries"] == 10
    assert cache.get("k0") is not None
    assert cache.get("k49") is not None
    assert cache.get("k1") is None
    cache.put("huge", bytes(1001))
    assert cache.get("huge") is None
    with pytest.raises(ConfigError):
        MemoryCache(max_bytes=-1)


# -- SQLiteCache -------------------------------------------------------------------------------------------------
def test_sqlite_is_lazy_and_creates_parents(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "cache.db"
    cache = SQLiteCache(path)
    assert not path.parent.exists()
    cache.put("k", b"v")
    assert path.exists()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == CACHE_VERSION
    conn.close()
    cache.close()
    assert cache.get("k") == b"v"  # a closed cache reopens itself
    cache.close()
    with SQLiteCache(path) as again:
        assert again.get("k") == b"v"  # persisted


def test_sqlite_evicts_least_recently_used(tmp_path: Path) -> None:
    with SQLiteCache(tmp_path / "cache.db", max_bytes=10_000) as cache:
        for i in range(60):
            cache.put(f"k{i}", bytes(1000))
            assert cache.get("k0") is not None  # keep k0 hot
        stats = cache.stats()
        assert 0 < stats["bytes"] <= 10_000
        assert cache.get("k0") is not None
        assert cache.get("k59") is not None
        assert cache.get("k1") is None
        cache.put("huge", bytes(10_001))
        assert cache.get("huge") is None
        assert cache.errors == 0


def test_sqlite_batches(sqlite_cache: SQLiteCache) -> None:
    items = {f"k{i}": str(i).encode() for i in range(1200)}  # more than one SQL batch
    sqlite_cache.put_many(items)
    assert sqlite_cache.get_many([*items, "missing"]) == items
    assert sqlite_cache.stats()["entries"] == 1200


def test_sqlite_version_mismatch_clears(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    with SQLiteCache(path) as cache:
        cache.put("k", b"v")
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {CACHE_VERSION + 7}")
    conn.close()
    with SQLiteCache(path) as cache:
        assert cache.get("k") is None
        cache.put("k2", b"v2")
        assert cache.get("k2") == b"v2"
        assert cache.stats()["entries"] == 1
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == CACHE_VERSION
    conn.close()


def test_sqlite_corrupt_file_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "cache.db"
    garbage = b"this is not a database" * 300
    path.write_bytes(garbage)
    with caplog.at_level(logging.WARNING, logger="promptzip"), SQLiteCache(path) as cache:
        assert cache.get("k") is None
        cache.put("k", b"v")
        assert cache.get("k") == b"v"
        assert cache.errors == 0
    aside = list(tmp_path.glob("cache.db.corrupt-*"))
    assert len(aside) == 1
    assert aside[0].read_bytes() == garbage
    warnings = _warnings(caplog)
    assert len(warnings) == 1
    assert "not a valid SQLite database" in warnings[0].getMessage()


def test_sqlite_unwritable_location_degrades_to_misses(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file where a directory should be")
    cache = SQLiteCache(blocker / "sub" / "cache.db")
    with caplog.at_level(logging.WARNING, logger="promptzip"):
        assert cache.get("k") is None
        cache.put("k", b"v")
        cache.put_many({"a": b"1"})
        assert cache.get_many(["a", "k"]) == {}
        stats = cache.stats()
        cache.close()
    assert (stats["entries"], stats["hits"], stats["misses"], stats["errors"]) == (0, 0, 3, 5)
    assert len(_warnings(caplog)) == 1


def test_sqlite_threads(sqlite_cache: SQLiteCache) -> None:
    def work(worker: int) -> int:
        bad = 0
        for i in range(100):
            key = f"w{worker}-{i}"
            sqlite_cache.put(key, key.encode())
            bad += sqlite_cache.get(key) != key.encode()
        sqlite_cache.put_many({f"w{worker}-batch-{i}": b"x" for i in range(20)})
        return bad

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sum(pool.map(work, range(8))) == 0
    assert sqlite_cache.stats()["entries"] == 8 * 120
    assert sqlite_cache.errors == 0


def test_memory_threads() -> None:
    cache = MemoryCache(max_bytes=1 << 20)

    def work(worker: int) -> int:
        for i in range(200):
            cache.put(f"w{worker}-{i}", bytes(10))
        return len(cache.get_many([f"w{worker}-{i}" for i in range(200)]))

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sum(pool.map(work, range(8))) == 1600
    assert (cache.hits, cache.errors, cache.stats()["bytes"]) == (1600, 0, 16_000)


def _write_keys(path: str, worker: int) -> int:
    """Runs in a spawned process: write 200 keys one by one, return the cache's error count."""
    with SQLiteCache(path) as cache:
        for i in range(200):
            cache.put(f"p{worker}-{i}", f"{worker}:{i}".encode())
        return cache.errors


def test_sqlite_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    with ProcessPoolExecutor(max_workers=4, mp_context=multiprocessing.get_context("spawn")) as pool:
        errors = list(pool.map(_write_keys, [path] * 4, range(4)))
    assert errors == [0, 0, 0, 0]
    keys = [f"p{w}-{i}" for w in range(4) for i in range(200)]
    with SQLiteCache(path) as cache:
        found = cache.get_many(keys)
    assert len(found) == 800
    assert found["p3-199"] == b"3:199"


# -- URLs --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "kind", "max_bytes"),
    [
        ("none", NullCache, None),
        ("off", NullCache, None),
        (" NONE ", NullCache, None),
        ("none://", NullCache, None),
        ("memory", MemoryCache, 64 << 20),
        ("memory://", MemoryCache, 64 << 20),
        ("memory://?max_bytes=1000", MemoryCache, 1000),
        ("sqlite://", SQLiteCache, 1 << 30),
        ("sqlite://?max_bytes=5000", SQLiteCache, 5000),
    ],
)
def test_cache_from_url_schemes(
    url: str, kind: type[Cache], max_bytes: int | None, regs: _registry.Registries, tmp_path: Path
) -> None:
    cache = cache_from_url(url, registries=regs)
    assert type(cache) is kind
    if max_bytes is not None:
        assert cache.max_bytes == max_bytes  # type: ignore[attr-defined]


def test_cache_from_url_paths(regs: _registry.Registries, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTZIP_CACHE_DIR", str(tmp_path / "dir"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_path() == tmp_path / "dir" / "cache.db"

    def path_of(url: str) -> Path:
        cache = cache_from_url(url, registries=regs)
        assert isinstance(cache, SQLiteCache)
        return cache.path

    assert path_of("sqlite://") == tmp_path / "dir" / "cache.db"
    assert path_of(f"sqlite:///{tmp_path}/x.db") == tmp_path / "x.db"  # four slashes: absolute
    assert path_of("sqlite:///~/x.db") == tmp_path / "home" / "x.db"
    assert path_of(f"sqlite:///{tmp_path}/with%20space.db") == tmp_path / "with space.db"
    assert not (tmp_path / "dir").exists()  # resolving a URL touches nothing


def test_cache_from_url_none_and_env(
    regs: _registry.Registries, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMPTZIP_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("PROMPTZIP_CACHE", raising=False)
    cache = cache_from_url(None, registries=regs)
    assert isinstance(cache, SQLiteCache)
    assert cache.path == tmp_path / "cache.db"
    monkeypatch.setenv("PROMPTZIP_CACHE", "memory://?max_bytes=10")
    assert isinstance(cache_from_url(None, registries=regs), MemoryCache)
    mine = MemoryCache()
    assert cache_from_url(mine, registries=regs) is mine


def test_cache_from_url_errors(regs: _registry.Registries) -> None:
    with pytest.raises(ConfigError, match="sqlite"):
        cache_from_url("bogus://x", registries=regs)
    with pytest.raises(ConfigError, match="max_bytes"):
        cache_from_url("memory://?max_bytes=lots", registries=regs)
    with pytest.raises(ConfigError, match="max_bytes"):
        cache_from_url("memory://?max_bytes=-5", registries=regs)
    with pytest.raises(ConfigError, match="colour"):
        cache_from_url("sqlite://?colour=red", registries=regs)
    with pytest.raises(ConfigError):
        cache_from_url("", registries=regs)

    regs.caches.register("weird", lambda url: "not a cache")
    with pytest.raises(ConfigError, match="not a Cache"):
        cache_from_url("weird://", registries=regs)


def test_cache_from_url_uses_the_global_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_registry, "_loaded", True)
    register_caches(_registry.registries)
    register_caches(_registry.registries)  # idempotent: the built-ins hook may run it again
    assert isinstance(cache_from_url("memory"), MemoryCache)
    assert {"none", "off", "memory", "sqlite"} <= set(_registry.registries.caches.names())


# -- values ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.array([], dtype=np.int64),
        np.array([1.5, np.nan, -np.inf]),
        np.asfortranarray(np.ones((2, 3), dtype=np.float16)),
    ],
)
def test_array_round_trip(array: np.ndarray) -> None:
    back = decode_array(encode_array(array))
    assert back.dtype == array.dtype
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def _stored_arrays() -> list[np.ndarray]:
    """Every layout the cache stores (and a few more): sentence, clause and query vectors (float32, one row),
    token scores (float64 start/end/score rows, none for an empty text), soft prompts and self-information (float16
    and float32 matrices), and odd ones (0-d, Fortran order, big-endian, bool, structured, unicode)."""
    rng = np.random.default_rng(0)
    return [
        rng.standard_normal(384).astype(np.float32),
        rng.standard_normal(768).astype(np.float32),
        np.column_stack([np.arange(5), np.arange(5) + 3, rng.random(5)]).astype(np.float64),
        np.zeros((0, 3), dtype=np.float64),
        rng.standard_normal((7, 576)).astype(np.float16),
        rng.standard_normal((4, 16)).astype(np.float32),
        np.array(2.5),
        np.asfortranarray(rng.standard_normal((3, 5))),
        np.arange(6, dtype=">f4").reshape(2, 3),
        np.array([True, False, True]),
        np.arange(10, dtype=np.int32),
        np.array([(1, 2.0)], dtype=[("a", "<i4"), ("b", "<f8")]),
        np.array(["naïve", "☃"]),
        np.zeros((2, 0, 4), dtype=np.uint8),
    ]


def test_every_stored_array_round_trips_in_the_npy_format() -> None:
    for array in _stored_arrays():
        data = encode_array(array)
        back = decode_array(data)
        assert back.dtype == array.dtype
        assert back.shape == array.shape
        np.testing.assert_array_equal(back, array)
        assert back.flags.writeable
        assert back.flags.f_contiguous == array.flags.f_contiguous
        assert back.flags.c_contiguous == array.flags.c_contiguous
        # the stored bytes stay exactly numpy's own .npy format, and decoding agrees with np.load
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        assert data == buffer.getvalue()
        assert encode_array(array) == data  # written again from a remembered header: the same bytes
        np.testing.assert_array_equal(np.load(io.BytesIO(data), allow_pickle=False), back)
        assert decode_array(memoryview(data)).tobytes() == back.tobytes()  # a remembered header, any buffer
    vector = _stored_arrays()[0]
    one, two = decode_array(encode_array(vector)), decode_array(encode_array(vector))
    one[0] = 99.0  # each decode is a new array: writing one leaves the other (and the cached bytes) alone
    assert two[0] == vector[0]


def test_a_remembered_header_still_checks_the_data_length() -> None:
    data = encode_array(np.arange(384, dtype=np.float32))
    decode_array(data)  # the header is remembered now
    for broken in (data[:-4], data + b"\0\0\0\0", data[:20]):
        with pytest.raises(InputError):
            decode_array(broken)


def test_arrays_never_pickle() -> None:
    objects = np.array([{"a": 1}, None], dtype=object)
    with pytest.raises(InputError):
        encode_array(objects)
    pickled = io.BytesIO()
    np.save(pickled, objects, allow_pickle=True)
    with pytest.raises(InputError):
        decode_array(pickled.getvalue())
    with pytest.raises(InputError):
        decode_array(b"\x80\x04garbage")
    with pytest.raises(InputError):
        decode_array(encode_array(np.arange(10))[:-8])  # truncated


def test_json_round_trip() -> None:
    value = {"b": [1, 2.5, None, True], "a": "naïve ☃"}
    data = encode_json(value)
    assert decode_json(data) == value
    assert data == encode_json({"a": "naïve ☃", "b": [1, 2.5, None, True]})  # keys sorted: deterministic
    with pytest.raises(InputError):
        encode_json({"x": object()})
    with pytest.raises(InputError):
        decode_json(b"{not json")
    with pytest.raises(InputError):
        decode_json(b"\xff\xfe")
