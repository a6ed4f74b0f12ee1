"""What a request costs once the provider's prompt cache is counted, and which prefix the provider serves from it.

Providers bill input tokens they find in their prompt cache at a fraction of the price. The cache holds *prefixes*
of earlier prompts: a request whose first N tokens equal an earlier request's is served those N tokens from the cache
(OpenAI: automatically, from 1024 tokens on, in steps of 128; Anthropic: up to the last ``cache_control``
breakpoint, from 1024 tokens on for Sonnet and Opus and 2048 for Haiku, with writes billed at 1.25x). Compressing a
conversation differently on every turn changes its prefix, so the cache misses; :mod:`promptzip._conversation`
keeps the prefix stable and weighs a re-compression against the discount it would lose with :meth:`CachePricing.cost`.

Prices are per million tokens in US dollars, from the providers' published price lists (2026); they are defaults,
and every door takes a :class:`CachePricing` of its own (``pricing=``, the proxy's ``pricing`` route setting).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from promptzip._errors import ConfigError, check_int

__all__ = ["PRICING", "CachePricing", "listed_pricing", "pricing_for"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CachePricing:
    """Input prices of one target model, per million tokens, and how its provider caches prompt prefixes.

    ``input``: an uncached input token. ``cached``: a token served from the cache. ``write``: a token written to the
    cache (Anthropic bills 1.25x ``input``; ``None`` means ``input``). ``min_prefix``: the shortest prefix that is
    cached. ``step``: cached prefixes are counted in multiples of it past ``min_prefix`` (OpenAI: 128).
    ``breakpoints``: the provider caches a prefix only where a request put a cache breakpoint (Anthropic's
    ``cache_control``, at the end of each request in an agent loop), so only a whole earlier request is read from
    it; otherwise (OpenAI) any prefix of an earlier request is.

    >>> p = CachePricing(input=2.5, cached=1.25, min_prefix=1024, step=128)
    >>> p.cached_tokens(1500)
    1408
    >>> round(p.cost(2000, cached=1408), 6)
    0.00324
    """

    input: float
    cached: float
    write: float | None = None
    min_prefix: int = 1024
    step: int = 1
    breakpoints: bool = False

    def __post_init__(self) -> None:
        for name in ("input", "cached"):
            if not _is_price(getattr(self, name)):
                raise ConfigError(f"CachePricing.{name} must be a finite price >= 0, not {getattr(self, name)!r}")
        if self.write is not None and not _is_price(self.write):
            raise ConfigError(f"CachePricing.write must be a finite price >= 0 or None, not {self.write!r}")
        check_int(self.min_prefix, "CachePricing.min_prefix", minimum=0)
        check_int(self.step, "CachePricing.step", minimum=1)
        if not isinstance(self.breakpoints, bool):
            raise ConfigError(f"CachePricing.breakpoints must be a bool, not {self.breakpoints!r}")

    @property
    def discount(self) -> float:
        """The fraction of the input price a cached token saves."""
        return 1.0 - self.cached / self.input if self.input else 0.0

    def cached_tokens(self, common_prefix: int) -> int:
        """How many of ``common_prefix`` tokens (shared with an earlier prompt) the provider serves from its cache."""
        check_int(common_prefix, "common_prefix", minimum=0)
        if common_prefix < max(self.min_prefix, 1):
            return 0
        return self.min_prefix + (common_prefix - self.min_prefix) // self.step * self.step

    def cost(self, tokens: int, *, cached: int = 0) -> float:
        """US dollars for a prompt of ``tokens`` input tokens of which ``cached`` are read from the cache; the rest
        is billed as written (``write``, else ``input``)."""
        check_int(tokens, "tokens", minimum=0)
        check_int(cached, "cached", minimum=0)
        if cached > tokens:
            raise ConfigError(f"cached tokens must be within [0, {tokens}], not {cached}")
        fresh = self.write if self.write is not None else self.input
        return (cached * self.cached + (tokens - cached) * fresh) / 1e6


def _is_price(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value) and value >= 0


_OPENAI_STEP = 128

# Model-name prefixes → prices; the longest matching prefix wins. Sources: openai.com/api/pricing and
# docs.anthropic.com prompt-caching pages (prices per million input tokens).
PRICING: dict[str, CachePricing] = {
    "gpt-4o-mini": CachePricing(input=0.15, cached=0.075, min_prefix=1024, step=_OPENAI_STEP),
    "gpt-4o": CachePricing(input=2.5, cached=1.25, min_prefix=1024, step=_OPENAI_STEP),
    "gpt-4.1": CachePricing(input=2.0, cached=0.5, min_prefix=1024, step=_OPENAI_STEP),
    "gpt-4.1-mini": CachePricing(input=0.4, cached=0.1, min_prefix=1024, step=_OPENAI_STEP),
    "gpt-5": CachePricing(input=1.25, cached=0.125, min_prefix=1024, step=_OPENAI_STEP),
    "gpt-5-mini": CachePricing(input=0.25, cached=0.025, min_prefix=1024, step=_OPENAI_STEP),
    "o3": CachePricing(input=2.0, cached=0.5, min_prefix=1024, step=_OPENAI_STEP),
    "o4-mini": CachePricing(input=1.1, cached=0.275, min_prefix=1024, step=_OPENAI_STEP),
    "claude-opus-4": CachePricing(input=15.0, cached=1.5, write=18.75, min_prefix=1024, breakpoints=True),
    "claude-sonnet-4": CachePricing(input=3.0, cached=0.3, write=3.75, min_prefix=1024, breakpoints=True),
    "claude-3-7-sonnet": CachePricing(input=3.0, cached=0.3, write=3.75, min_prefix=1024, breakpoints=True),
    "claude-3-5-haiku": CachePricing(input=0.8, cached=0.08, write=1.0, min_prefix=2048, breakpoints=True),
    "claude-haiku-4": CachePricing(input=1.0, cached=0.1, write=1.25, min_prefix=2048, breakpoints=True),
}

# A target that matches nothing above is billed like OpenAI's gpt-4o: half price for cached tokens from 1024 on.
DEFAULT = PRICING["gpt-4o"]


def pricing_for(target: str | None) -> CachePricing:
    """The default :class:`CachePricing` of a target model name (``"gpt-4o"``, ``"claude-sonnet-4-5"``, ...): the
    entry with the longest matching prefix, else OpenAI's gpt-4o prices.

    >>> pricing_for("claude-sonnet-4-5").cached
    0.3
    >>> pricing_for("claude-sonnet-4-5").breakpoints, pricing_for("gpt-4o").breakpoints
    (True, False)
    >>> pricing_for("my-local-model") is DEFAULT
    True
    """
    found = listed_pricing(target)
    return found if found is not None else DEFAULT


def listed_pricing(model: str | None) -> CachePricing | None:
    """The :data:`PRICING` entry with the longest prefix of ``model`` (a provider prefix such as ``openai/`` is
    dropped), or ``None`` when none matches."""
    if model is not None and not isinstance(model, str):
        raise ConfigError(f"a model name must be a str or None, not {type(model).__name__}")
    name = (model or "").lower().rsplit("/", 1)[-1]
    best = max((k for k in PRICING if name.startswith(k)), key=len, default=None)
    return PRICING[best] if best is not None else None
