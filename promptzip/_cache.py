"""Caches for expensive, deterministic results: token scores, variants, summaries, soft embeddings.

Design:

* **Content-addressed keys.** A key is :func:`make_key` over the method fingerprint (model weights hash, code
  version, parameters), the content and, for query-aware methods, the query. Equal inputs give equal keys in every
  process, so a cache can be shared; any change to the inputs or to :data:`CACHE_VERSION` gives new keys, and stale
  entries simply age out under the size bound.
* **Never store secrets.** Keys are hashes and values are derived data (arrays, JSON). Do not put API keys,
  headers or raw credentials in a key part or a value: a cache file or server may be shared between users.
  Values never use pickle (:func:`encode_array` refuses object arrays), so reading a shared cache cannot run code.
* **Degrade to a miss.** :class:`Cache` is a template: the public methods call the backend's protected ``_get`` /
  ``_put`` and turn any backend failure (a corrupt or locked file, a full disk, a directory that cannot be written)
  into a miss or a no-op, counted in :attr:`Cache.errors` and logged once per cache. A cache never fails a request.

Backends are chosen by URL through ``registries.caches`` (see :func:`cache_from_url`): ``none``/``off``,
``memory://``, ``sqlite:///relative/cache.db``, ``sqlite:////absolute/cache.db`` (SQLAlchemy's convention),
``sqlite:///~/cache.db``; plug-ins add schemes (``redis://``) with the same hook.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

import platformdirs

from promptzip._cache_codecs import decode_array, decode_json, encode_array, encode_json
from promptzip._errors import ConfigError, InputError, check_int
from promptzip._registry import Registries
from promptzip._registry import registries as default_registries

__all__ = [
    "CACHE_VERSION",
    "Cache",
    "MemoryCache",
    "NullCache",
    "cache_from_url",
    "decode_array",
    "decode_json",
    "default_cache_path",
    "encode_array",
    "encode_json",
    "make_key",
    "register_caches",
]

logger = logging.getLogger("promptzip")

CACHE_VERSION = 1
"""Bump when the meaning or encoding of cached values changes: it salts every key and versions SQLite files."""

MiB = 1 << 20


def make_key(namespace: str, *parts: str | bytes) -> str:
    """Return the sha256 hex key of ``namespace`` and ``parts``; each is length-prefixed, so no two splits collide.

    ``str`` parts are hashed as their UTF-8 bytes, so ``"a"`` and ``b"a"`` give the same key.
    """
    digest = hashlib.sha256(f"promptzip-cache/{CACHE_VERSION}".encode())
    for part in (namespace, *parts):
        if isinstance(part, str):
            data = part.encode("utf-8", "surrogatepass")
        elif isinstance(part, bytes | bytearray | memoryview):
            data = bytes(part)
        else:
            raise InputError(f"cache key parts must be str or bytes, not {type(part).__name__}")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


class Cache(ABC):
    """A bytes → bytes store that never fails its caller.

    Subclasses implement ``_get`` and ``_put`` (and may override ``_get_many``, ``_put_many``, ``_close`` and
    ``_stats``); this class counts hits, misses and errors and turns backend exceptions into misses::

        class DictCache(Cache):
            def __init__(self) -> None:
                super().__init__()
                self.data: dict[str, bytes] = {}

            def _get(self, key: str) -> bytes | None:
                return self.data.get(key)

            def _put(self, key: str, value: bytes) -> None:
                self.data[key] = value
    """

    def __init__(self) -> None:
        self._counter_lock = threading.Lock()
        self.hits = self.misses = self.errors = 0  # read freely; incremented under the lock
        self._warned = False

    def get(self, key: str) -> bytes | None:
        """The value stored under ``key``, or ``None`` on a miss (a backend failure is a miss)."""
        try:
            value = self._get(key)
        except Exception as exc:
            self._failed("get", exc)
            value = None
        self._count(hits=value is not None, misses=value is None)
        return value

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The values found for ``keys``; keys that miss are absent from the result."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        try:
            found = {k: v for k, v in self._get_many(wanted).items() if v is not None}
        except Exception as exc:
            self._failed("get_many", exc)
            found = {}
        found = {k: found[k] for k in wanted if k in found}
        self._count(hits=len(found), misses=len(wanted) - len(found))
        return found

    def put(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``; a backend failure is counted and ignored."""
        value = _as_bytes(value)
        try:
            self._put(key, value)
        except Exception as exc:
            self._failed("put", exc)

    def put_many(self, items: Mapping[str, bytes]) -> None:
        """Store every item, in one batch where the backend allows; failures are counted and ignored."""
        batch = {k: _as_bytes(v) for k, v in items.items()}
        if not batch:
            return
        try:
            self._put_many(batch)
        except Exception as exc:
            self._failed("put_many", exc)

    def close(self) -> None:
        """Release files and connections; a closed cache reopens itself if used again."""
        try:
            self._close()
        except Exception as exc:
            self._failed("close", exc)

    def stats(self) -> dict[str, int]:
        """``entries``, ``bytes``, ``hits``, ``misses`` and ``errors`` (entries and bytes are 0 when unknown)."""
        out = {"entries": 0, "bytes": 0}
        try:
            out.update(self._stats())
        except Exception as exc:
            self._failed("stats", exc)
        out.update(hits=self.hits, misses=self.misses, errors=self.errors)
        return out

    def namespaced(self, prefix: str) -> Cache:
        """A view of this cache whose keys live under ``prefix`` (one namespace per tenant, say)."""
        return _NamespacedCache(self, prefix)

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @abstractmethod
    def _get(self, key: str) -> bytes | None: ...

    @abstractmethod
    def _put(self, key: str, value: bytes) -> None: ...

    def _get_many(self, keys: Sequence[str]) -> Mapping[str, bytes | None]:
        return {key: self._get(key) for key in keys}

    def _put_many(self, items: Mapping[str, bytes]) -> None:
        for key, value in items.items():
            self._put(key, value)

    def _close(self) -> None:
        return None

    def _stats(self) -> dict[str, int]:
        return {}

    def _count(self, *, hits: int = 0, misses: int = 0, errors: int = 0) -> None:
        with self._counter_lock:
            self.hits += hits
            self.misses += misses
            self.errors += errors

    def _failed(self, operation: str, exc: Exception) -> None:
        self._count(errors=1)
        self._warn_once(operation, exc)

    def _warn_once(self, operation: str, exc: Exception) -> None:
        with self._counter_lock:
            first, self._warned = not self._warned, True
        if first:
            name = type(exc).__name__
            logger.warning("cache %r: %s failed, continuing without the cache: %s: %s", self, operation, name, exc)
        else:
            logger.debug("cache %r: %s failed: %s: %s", self, operation, type(exc).__name__, exc)


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise InputError(f"cache values must be bytes, not {type(value).__name__}")


class _NamespacedCache(Cache):
    """Keys are stored as ``prefix/key`` in the base cache; counts go to the view and the base, warnings to the base."""

    def __init__(self, base: Cache, prefix: str) -> None:
        super().__init__()
        if not prefix or "/" in prefix:
            raise ConfigError(f"a cache namespace must be a non-empty string without '/', got {prefix!r}")
        self._base, self._prefix = base, prefix + "/"

    def __repr__(self) -> str:
        return f"{self._base!r}.namespaced({self._prefix[:-1]!r})"

    def _count(self, *, hits: int = 0, misses: int = 0, errors: int = 0) -> None:
        super()._count(hits=hits, misses=misses, errors=errors)
        self._base._count(hits=hits, misses=misses, errors=errors)

    def _warn_once(self, operation: str, exc: Exception) -> None:
        self._base._warn_once(f"{operation} in namespace {self._prefix[:-1]!r}", exc)

    def _get(self, key: str) -> bytes | None:
        return self._base._get(self._prefix + key)

    def _get_many(self, keys: Sequence[str]) -> Mapping[str, bytes | None]:
        found = self._base._get_many([self._prefix + key for key in keys])
        return {key[len(self._prefix) :]: value for key, value in found.items() if key.startswith(self._prefix)}

    def _put(self, key: str, value: bytes) -> None:
        self._base._put(self._prefix + key, value)

    def _put_many(self, items: Mapping[str, bytes]) -> None:
        self._base._put_many({self._prefix + key: value for key, value in items.items()})


class NullCache(Cache):
    """Stores nothing: every lookup misses."""

    def __repr__(self) -> str:
        return "NullCache()"

    def _get(self, key: str) -> bytes | None:
        return None

    def _put(self, key: str, value: bytes) -> None:
        return None


class MemoryCache(Cache):
    """A thread-safe, in-process LRU bounded by the total bytes of its values; ``close()`` empties it."""

    def __init__(self, *, max_bytes: int = 64 * MiB) -> None:
        super().__init__()
        self.max_bytes = _check_max_bytes(max_bytes)
        self._data: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryCache(max_bytes={self.max_bytes})"

    def _get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def _put(self, key: str, value: bytes) -> None:
        with self._lock:
            old = self._data.pop(key, None)
            self._bytes -= 0 if old is None else len(old)
            if len(value) > self.max_bytes:
                return
            self._data[key] = value
            self._bytes += len(value)
            while self._bytes > self.max_bytes:
                _, evicted = self._data.popitem(last=False)
                self._bytes -= len(evicted)

    def _close(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def _stats(self) -> dict[str, int]:
        with self._lock:
            return {"entries": len(self._data), "bytes": self._bytes}


def _check_max_bytes(max_bytes: int) -> int:
    return check_int(max_bytes, "max_bytes", minimum=0)


def default_cache_path() -> Path:
    """``$PROMPTZIP_CACHE_DIR/cache.db``, else ``cache.db`` in the user cache directory for promptzip."""
    folder = os.environ.get("PROMPTZIP_CACHE_DIR")
    base = Path(folder).expanduser() if folder else Path(platformdirs.user_cache_dir("promptzip"))
    return base / "cache.db"


def cache_from_url(url: str | Cache | None, *, registries: Registries | None = None) -> Cache:
    """Resolve a cache setting to a :class:`Cache`.

    A ``Cache`` passes through. ``None`` means ``$PROMPTZIP_CACHE`` when set, else the default SQLite file.
    Otherwise the URL's scheme is looked up in ``registries.caches`` and its factory is called with the parsed
    :class:`urllib.parse.SplitResult`: ``none``/``off``, ``memory``, ``sqlite://`` (default file),
    ``sqlite:///cache.db`` (relative to the working directory), ``sqlite:////abs/path.db`` (absolute: four
    slashes), ``sqlite:///~/cache.db`` (the home folder), with an optional ``?max_bytes=N``.
    """
    if isinstance(url, Cache):
        return url
    if url is None:
        url = os.environ.get("PROMPTZIP_CACHE")
        if not url:
            from promptzip._sqlite_cache import SQLiteCache

            return SQLiteCache(default_cache_path())
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"a cache must be a URL, a Cache or None, got {url!r}")
    text = url.strip()
    parsed = urlsplit(text if "://" in text else f"{text}://")
    factory = (registries or default_registries).caches.get(parsed.scheme)
    cache = factory(parsed)
    if not isinstance(cache, Cache):
        raise ConfigError(f"the cache factory for {parsed.scheme!r} returned {type(cache).__name__}, not a Cache")
    return cache


def _max_bytes_option(url: SplitResult, default: int) -> int:
    options = parse_qs(url.query, keep_blank_values=True)
    unknown = sorted(set(options) - {"max_bytes"})
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} in cache URL {url.geturl()!r}; known: max_bytes")
    if "max_bytes" not in options:
        return default
    raw = options["max_bytes"][-1]
    try:
        return _check_max_bytes(int(raw))
    except ValueError:
        raise ConfigError(f"max_bytes must be a non-negative int in cache URL {url.geturl()!r}, got {raw!r}") from None


def _null_factory(url: SplitResult) -> Cache:
    """No cache: every lookup misses."""
    return NullCache()


def _memory_factory(url: SplitResult) -> Cache:
    """An in-process LRU (memory://?max_bytes=N)."""
    return MemoryCache(max_bytes=_max_bytes_option(url, 64 * MiB))


def _sqlite_factory(url: SplitResult) -> Cache:
    """A SQLite file shared by threads and processes, named as SQLAlchemy names one: ``sqlite:///rel/cache.db`` is
    relative to the working directory, ``sqlite:////abs/cache.db`` absolute, ``~`` is the home folder
    (``?max_bytes=N`` bounds it)."""
    from promptzip._sqlite_cache import SQLiteCache

    if url.netloc:
        raise ConfigError(
            f"a sqlite cache URL names no host: use sqlite:///relative/path.db or sqlite:////absolute/path.db, "
            f"not {url.geturl()!r}"
        )
    # The path after "sqlite://" starts with the "/" that ends the (empty) authority; what follows it is the file.
    location = unquote(url.path.removeprefix("/"))
    path = Path(location).expanduser().absolute() if location else default_cache_path()
    return SQLiteCache(path, max_bytes=_max_bytes_option(url, 1024 * MiB))


_FACTORIES: dict[str, Callable[[SplitResult], Cache]] = {
    "none": _null_factory,
    "off": _null_factory,
    "memory": _memory_factory,
    "sqlite": _sqlite_factory,
}


def register_caches(registries: Registries) -> None:
    """Register the built-in cache schemes: ``none`` (alias ``off``), ``memory`` and ``sqlite``."""
    for scheme, factory in _FACTORIES.items():
        registries.caches.register(scheme, factory)
