"""A two-level cache: a small in-process LRU in front of a shared backend (Redis).

Reads try the front first and fill it from the back; writes go to both. When the back fails (Redis down, its
circuit breaker open) the front still answers what this process has seen, so warm requests stay warm through an
outage instead of all turning into cold compressions. A failure of the back counts as an error of this cache and
never loses what the front found.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from promptzip._cache import Cache, MemoryCache

__all__ = ["TieredCache"]


class TieredCache(Cache):
    """``front`` (default: a 64 MiB :class:`MemoryCache`) over ``back``; ``close()`` closes both."""

    def __init__(self, back: Cache, front: Cache | None = None) -> None:
        super().__init__()
        self.back = back
        self.front = front if front is not None else MemoryCache()

    def __repr__(self) -> str:
        return f"TieredCache({self.back!r}, front={self.front!r})"

    def _get(self, key: str) -> bytes | None:
        value = self.front._get(key)
        if value is None:
            value = self.back._get(key)  # a failure here is the base class's: counted, a miss
            if value is not None:
                self.front._put(key, value)
        return value

    def _get_many(self, keys: Sequence[str]) -> Mapping[str, bytes | None]:
        found = {k: v for k, v in self.front._get_many(keys).items() if v is not None}
        rest = [k for k in keys if k not in found]
        if rest:
            try:
                more = {k: v for k, v in self.back._get_many(rest).items() if v is not None}
            except Exception as exc:
                self._failed("get_many", exc)
                more = {}
            self.front._put_many(more)
            found.update(more)
        return found

    def _put(self, key: str, value: bytes) -> None:
        self.front._put(key, value)
        self.back._put(key, value)

    def _put_many(self, items: Mapping[str, bytes]) -> None:
        self.front._put_many(items)
        self.back._put_many(items)

    def _close(self) -> None:
        self.front.close()
        self.back.close()

    def _stats(self) -> dict[str, int]:
        return {k: v for k, v in self.back.stats().items() if k in ("entries", "bytes")}
