"""What a provider's prompt cache would serve of each request of a conversation, and what the request costs.

A request is serialized to the target tokenizer's tokens (:func:`serialize`): for each message in order, its role,
its name, its text (a str content or each text part), its tool calls as JSON and its tool-call id, each encoded on
its own. Encoding the pieces apart (rather than one joined string) keeps the serialization prefix-closed: a
request that appends messages to an earlier one serializes to the earlier one's tokens plus more, exactly as a
provider's cache sees an unchanged prefix.

Two cache models, one small class each behind :class:`ProviderCache` (``bill(tokens) -> Billed``), registered in
:data:`PROVIDER_CACHES`:

* ``openai`` (:class:`PrefixCache`): OpenAI caches prompt prefixes automatically. The tokens served from the cache
  are ``pricing.cached_tokens(n)`` with ``n`` the longest common token prefix with *any* earlier request of the
  trace (from 1024 tokens on, in steps of 128 for OpenAI's prices).
* ``anthropic`` (:class:`BreakpointCache`): Anthropic caches up to a ``cache_control`` breakpoint. The client
  puts one at the end of every request (the common agent-loop pattern), so a request reads from the cache the
  longest earlier request that is a whole prefix of it (at least ``min_prefix`` tokens), else nothing, and writes
  the rest (billed at ``write``, 1.25x input). A request shorter than ``min_prefix`` cannot be cached: it is
  billed at the plain input price.

Both assume every earlier request of the trace is still cached (an agent loop calls again within the providers'
5-minute lifetime) and count Anthropic's tokens with the gpt-4o tokenizer (its own is not public), so the two
providers differ in prices and cache rules, not in token counts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from promptzip._pricing import CachePricing, pricing_for

__all__ = [
    "PROVIDERS",
    "PROVIDER_CACHES",
    "Billed",
    "BreakpointCache",
    "PrefixCache",
    "Provider",
    "ProviderCache",
    "Serializer",
    "common_prefix",
    "serialize",
]

Encode = Callable[[str], list[int]]


def _pieces(message: Mapping[str, Any]) -> list[str]:
    pieces = [str(message.get("role", ""))]
    if message.get("name"):
        pieces.append(str(message["name"]))
    content = message.get("content")
    if isinstance(content, str):
        pieces.append(content)
    elif isinstance(content, list):
        pieces += [str(p.get("text", "")) for p in content if isinstance(p, Mapping) and p.get("type") == "text"]
    for key in ("tool_calls", "function_call"):
        if message.get(key):
            pieces.append(json.dumps(message[key], ensure_ascii=False, sort_keys=True))
    if message.get("tool_call_id"):
        pieces.append(str(message["tool_call_id"]))
    return [p for p in pieces if p]


def serialize(messages: Sequence[Mapping[str, Any]], encode: Encode) -> list[int]:
    """The tokens a provider's cache compares: each message's pieces (see the module docstring), encoded apart."""
    return [t for m in messages for piece in _pieces(m) for t in encode(piece)]


@dataclass(slots=True)
class Serializer:
    """:func:`serialize` with each piece's tokens memoized: the requests of a trace repeat their history."""

    encode: Encode
    _memo: dict[str, list[int]] = field(default_factory=dict)

    def __call__(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        out: list[int] = []
        for m in messages:
            for piece in _pieces(m):
                tokens = self._memo.get(piece)
                if tokens is None:
                    tokens = self._memo[piece] = self.encode(piece)
                out += tokens
        return out


def common_prefix(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> int:
    """The length of the longest common prefix of two token arrays."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


@dataclass(frozen=True, slots=True)
class Billed:
    """One request as the provider bills it: ``tokens`` input tokens, ``cached`` of them read from the cache,
    ``cost`` in US dollars."""

    tokens: int
    cached: int
    cost: float


class ProviderCache(Protocol):
    """A provider's prompt cache over the requests of one conversation, in the order they are sent."""

    def bill(self, tokens: Sequence[int]) -> Billed:
        """Bill one request (its serialized tokens) and remember it for the requests after it."""
        ...


class PrefixCache:
    """OpenAI's automatic prefix cache: the longest common prefix with any earlier request, rounded by
    :meth:`CachePricing.cached_tokens`."""

    def __init__(self, pricing: CachePricing) -> None:
        self.pricing = pricing
        self._seen: list[np.ndarray[Any, Any]] = []

    def bill(self, tokens: Sequence[int]) -> Billed:
        now = np.asarray(tokens, dtype=np.int64)
        common = max((common_prefix(now, earlier) for earlier in self._seen), default=0)
        self._seen.append(now)
        cached = self.pricing.cached_tokens(common)
        return Billed(len(now), cached, self.pricing.cost(len(now), cached=cached))


class BreakpointCache:
    """Anthropic's cache with a breakpoint at the end of every request: the longest earlier request (of at least
    ``min_prefix`` tokens) that is a whole prefix of this one is read; the rest is written, when this request is
    long enough to be cached, else billed as plain input."""

    def __init__(self, pricing: CachePricing) -> None:
        self.pricing = pricing
        self._plain = replace(pricing, write=None)
        self._seen: list[np.ndarray[Any, Any]] = []

    def bill(self, tokens: Sequence[int]) -> Billed:
        now = np.asarray(tokens, dtype=np.int64)
        floor = max(self.pricing.min_prefix, 1)
        cached = max(
            (len(e) for e in self._seen if floor <= len(e) <= len(now) and common_prefix(now, e) == len(e)),
            default=0,
        )
        self._seen.append(now)
        pricing = self.pricing if len(now) >= floor else self._plain
        return Billed(len(now), cached, pricing.cost(len(now), cached=cached))


@dataclass(frozen=True, slots=True)
class Provider:
    """A provider as the suite bills it: its price list (``target``'s :func:`pricing_for`) and cache model."""

    name: str
    target: str
    cache: Callable[[CachePricing], ProviderCache]

    @property
    def pricing(self) -> CachePricing:
        return pricing_for(self.target)

    def new_cache(self) -> ProviderCache:
        return self.cache(self.pricing)


PROVIDER_CACHES: dict[str, Callable[[CachePricing], ProviderCache]] = {
    "openai": PrefixCache,
    "anthropic": BreakpointCache,
}

PROVIDERS: dict[str, Provider] = {
    "openai": Provider("openai", "gpt-4o", PROVIDER_CACHES["openai"]),
    "anthropic": Provider("anthropic", "claude-sonnet-4", PROVIDER_CACHES["anthropic"]),
}
