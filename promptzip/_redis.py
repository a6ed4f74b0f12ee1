"""A Redis cache backend, so that several proxy replicas (or workers) share one cache.

``redis://[[user]:[password]@]host[:port][/db][?ttl=SECONDS&prefix=P&timeout=SECONDS]`` (and ``rediss://`` for
TLS). The scheme is registered by :func:`register_redis`; redis-py is imported only when such a URL is opened, so
the core never needs it.

Like every :class:`~promptzip._cache.Cache`, a Redis that is down, killed, slow or full degrades to misses, counted
in :attr:`Cache.errors`, and never fails a request. To keep a dead Redis cheap the client uses short socket
timeouts and no retries, and after a failure the backend is skipped for ``retry_after`` seconds (a small circuit
breaker): lookups in that window are misses counted as errors without touching the network.

Keys are the core's content hashes under ``prefix`` (default ``promptzip:``); values carry a TTL (default 7 days).
Size is bounded by the server: run Redis with ``maxmemory`` and ``maxmemory-policy allkeys-lru``. The URL's
password is never shown: :func:`repr` redacts it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from promptzip._cache import Cache
from promptzip._errors import ConfigError

if TYPE_CHECKING:
    import redis

    from promptzip._registry import Registries

__all__ = ["RedisCache", "RedisUnavailable", "register_redis"]

DEFAULT_TTL_S = 7 * 24 * 3600
DEFAULT_TIMEOUT_S = 0.25
DEFAULT_RETRY_AFTER_S = 2.0
_OPTIONS = ("ttl", "prefix", "timeout", "retry_after")


class RedisUnavailable(ConnectionError):
    """Raised inside the backend while the circuit breaker is open; the Cache base turns it into a miss."""


class RedisCache(Cache):
    """A cache in Redis (redis-py), shared by every process that opens the same URL.

    >>> cache = RedisCache("redis://127.0.0.1:6379/0", ttl=3600)  # doctest: +SKIP
    >>> cache.put("k", b"v"); cache.get("k")  # doctest: +SKIP
    b'v'

    Nothing connects until first use. ``timeout`` bounds each connect and each command (seconds); ``ttl`` is the
    lifetime of each value (``None`` keeps them until Redis evicts them); ``retry_after`` is how long the backend
    is skipped after a failure.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl: int | None = DEFAULT_TTL_S,
        prefix: str = "promptzip:",
        timeout: float = DEFAULT_TIMEOUT_S,
        retry_after: float = DEFAULT_RETRY_AFTER_S,
        max_connections: int = 64,
    ) -> None:
        super().__init__()
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ConfigError(f"a Redis cache URL starts with redis:// or rediss://, got scheme {parts.scheme!r}")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0):
            raise ConfigError(f"ttl must be a positive number of seconds or None, got {ttl!r}")
        if not isinstance(timeout, int | float) or not 0 < timeout <= 60:
            raise ConfigError(f"timeout must be in (0, 60] seconds, got {timeout!r}")
        if not isinstance(retry_after, int | float) or retry_after < 0:
            raise ConfigError(f"retry_after must be a non-negative number of seconds, got {retry_after!r}")
        if not isinstance(prefix, str) or any(c.isspace() for c in prefix):
            raise ConfigError(f"prefix must be a string without spaces, got {prefix!r}")
        self.url = url
        self.ttl = ttl
        self.prefix = prefix
        self.timeout = float(timeout)
        self.retry_after = float(retry_after)
        self.max_connections = max_connections
        self._client: redis.Redis | None = None
        self._lock = threading.Lock()
        self._down_until = 0.0

    def __repr__(self) -> str:
        return f"RedisCache({redact(self.url)!r}, prefix={self.prefix!r})"

    # ------------------------------------------------------------------------------------------------ backend
    def _redis(self) -> redis.Redis:
        if time.monotonic() < self._down_until:
            raise RedisUnavailable("Redis failed recently; skipping it for a moment")
        client = self._client
        if client is None:
            with self._lock:
                client = self._client
                if client is None:
                    client = self._client = _connect(self.url, self.timeout, self.max_connections)
        return client

    def _guarded(self, operation: Any) -> Any:
        client = self._redis()
        try:
            return operation(client)
        except Exception:
            self._down_until = time.monotonic() + self.retry_after
            raise

    def _get(self, key: str) -> bytes | None:
        value = self._guarded(lambda r: r.get(self.prefix + key))
        return None if value is None else bytes(value)

    def _get_many(self, keys: Sequence[str]) -> Mapping[str, bytes | None]:
        values = self._guarded(lambda r: r.mget([self.prefix + k for k in keys]))
        return {k: None if v is None else bytes(v) for k, v in zip(keys, values, strict=True)}

    def _put(self, key: str, value: bytes) -> None:
        self._guarded(lambda r: r.set(self.prefix + key, value, ex=self.ttl))

    def _put_many(self, items: Mapping[str, bytes]) -> None:
        def run(r: redis.Redis) -> None:
            pipe = r.pipeline(transaction=False)
            for key, value in items.items():
                pipe.set(self.prefix + key, value, ex=self.ttl)
            pipe.execute()

        self._guarded(run)

    def _close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


def _connect(url: str, timeout: float, max_connections: int) -> redis.Redis:
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError("a redis:// cache needs redis-py: pip install 'promptzip[proxy]'") from exc
    try:
        return redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            max_connections=max_connections,
            decode_responses=False,
        )
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {redact(url)!r}: {exc}") from exc


def redact(url: str) -> str:
    """The URL with any user name and password replaced by ``***``."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


def _redis_factory(url: Any) -> Cache:
    """Redis shared by processes and replicas (redis://host:port/db?ttl=S&prefix=P&timeout=S&retry_after=S)."""
    options: dict[str, str] = {}
    passthrough: list[tuple[str, str]] = []
    for name, value in parse_qsl(url.query, keep_blank_values=True):
        if name in _OPTIONS:
            options[name] = value
        else:
            passthrough.append((name, value))
    clean = urlunsplit(url._replace(query=urlencode(passthrough)))
    kwargs: dict[str, Any] = {}
    try:
        if "ttl" in options:
            kwargs["ttl"] = None if options["ttl"] in ("", "0", "none") else int(options["ttl"])
        if "timeout" in options:
            kwargs["timeout"] = float(options["timeout"])
        if "retry_after" in options:
            kwargs["retry_after"] = float(options["retry_after"])
    except ValueError:
        raise ConfigError(f"ttl, timeout and retry_after must be numbers in cache URL {redact(clean)!r}") from None
    if "prefix" in options:
        kwargs["prefix"] = options["prefix"]
    return RedisCache(clean, **kwargs)


def register_redis(registries: Registries) -> None:
    """Register the ``redis`` and ``rediss`` cache schemes (idempotent: the same factory may be registered twice)."""
    for scheme in ("redis", "rediss"):
        registries.caches.register(scheme, _redis_factory)
