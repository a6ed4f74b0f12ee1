"""One bounded pool of shared Zippers.

Every door that builds a Zipper on first use (``pz.compress``, the demonstrations helper, the wrapped client and
decorator, LangChain, LlamaIndex, Haystack, LiteLLM, the proxy) asks a :class:`ZipperPool` for it, so a process holds
one stack per configuration and never more than ``max_size`` of them: each Zipper holds models and caches, and an
unbounded dict keyed by user input (a target, a cache URL) would grow without limit.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from promptzip._cache import Cache
    from promptzip._pipeline import Zipper
    from promptzip._tokenizers import Tokenizer

__all__ = ["ZipperPool", "shared_pool", "shared_zipper"]


class ZipperPool:
    """Least-recently-used Zippers by key; a build runs outside the lock (it may load models), and when two threads
    build the same key at once the first one stored wins, so every caller gets the same Zipper."""

    def __init__(self, max_size: int = 16) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size}")
        self.max_size = max_size
        self._items: OrderedDict[Hashable, Zipper] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, build: Callable[[], Zipper]) -> Zipper:
        found = self.peek(key)
        if found is not None:
            return found
        zipper = build()
        with self._lock:
            zipper = self._items.setdefault(key, zipper)
            self._items.move_to_end(key)
            while len(self._items) > self.max_size:
                self._items.popitem(last=False)
        return zipper

    def peek(self, key: Hashable) -> Zipper | None:
        """The Zipper for ``key`` when it is built already (never builds)."""
        with self._lock:
            zipper = self._items.get(key)
            if zipper is not None:
                self._items.move_to_end(key)
            return zipper

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


shared_pool = ZipperPool()


def _key(preset: str, target: str | Tokenizer, cache: str | Cache | None) -> Hashable:
    # A tokenizer or a cache object counts by identity: two equal-looking objects may hold different state.
    return (
        "preset",
        preset,
        target if isinstance(target, str) else ("object", id(target)),
        cache if cache is None or isinstance(cache, str) else ("object", id(cache)),
    )


def shared_zipper(preset: str, target: str | Tokenizer = "gpt-4o", cache: str | Cache | None = None) -> Zipper:
    """The process's shared Zipper for (preset, target, cache), built on first use."""
    from promptzip._pipeline import Zipper

    return shared_pool.get(_key(preset, target, cache), lambda: Zipper.from_preset(preset, target=target, cache=cache))
