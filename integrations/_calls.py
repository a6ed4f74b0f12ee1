"""What one wrapped call compresses: the per-call ``promptzip=`` options, and the compression of a chat's
``messages``, a whole prompt, or an API request read by a dialect (a Responses ``input`` list, an Anthropic
request). The wrapped clients (:mod:`promptzip.integrations._clients`), the decorator and the LiteLLM hook call
these; the request understanding is the core's."""

from __future__ import annotations

import copy
import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any

from promptzip._cache import Cache
from promptzip._errors import BudgetError, ConfigError, InputError
from promptzip._messages import SCOPES
from promptzip._pipeline import Zipper
from promptzip._pool import shared_zipper
from promptzip._pricing import CachePricing, listed_pricing, pricing_for
from promptzip._registry import registries
from promptzip._tokenizers import Tokenizer
from promptzip._types import Budget, Result, Source
from promptzip.integrations._dialects import Dialect

__all__ = [
    "KEYWORD",
    "CallOptions",
    "Compression",
    "cache_pricing",
    "call_context",
    "check_on_result",
    "check_pricing",
    "check_scope",
    "compressed_prompt",
    "compressed_text",
    "fits_whole",
    "report",
    "sent_messages",
    "tags_removed",
]

logger = logging.getLogger("promptzip.integrations")
KEYWORD = "promptzip"  # the per-call keyword of the wrapped client's methods
_OPTIONS = ("budget", "rate", "scope", "disable")


def call_context(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """What a call's own arguments say about its conversation, as the proxy reads them from a body:
    ``conversation``, its ``prompt_cache_key`` (OpenAI's name for the cache a conversation shares), and
    ``pricing``, the listed prices of its ``model`` (one client often calls several models, and their cache
    discounts differ: gpt-4.1's is not gpt-4o's, a Claude model's is read at breakpoints)."""
    key, model = kwargs.get("prompt_cache_key"), kwargs.get("model")
    return {
        "conversation": key if isinstance(key, str) and key else None,
        "pricing": listed_pricing(model) if isinstance(model, str) else None,
    }


def check_pricing(value: object) -> str | CachePricing | None:
    """``value`` if it can name a model's cache prices: a model name (see :func:`cache_pricing`), a
    :class:`~promptzip.CachePricing`, or ``None`` (the target's)."""
    if value is None or isinstance(value, str | CachePricing):
        return value
    raise ConfigError(f"pricing must be a model name or a promptzip.CachePricing, not {type(value).__name__}")


def cache_pricing(value: str | CachePricing | None) -> CachePricing | None:
    """The prices ``value`` names: a model name through :func:`promptzip.pricing_for`, else ``value`` itself."""
    return pricing_for(value) if isinstance(value, str) else value


def check_on_result(value: object) -> Callable[[Result], object] | None:
    """``value`` if it can be a door's ``on_result``: ``None`` or a callable that takes a promptzip.Result."""
    if value is not None and not callable(value):
        raise ConfigError(f"on_result must be a callable that takes a promptzip.Result, not {value!r}")
    return value


def report(on_result: Callable[[Result], object] | None, result: Result | None) -> Result | None:
    """``result`` handed to ``on_result`` when there is a Result (``None``: sent as given) and a callback; what the
    callback raises propagates, so that it stops the call."""
    if result is not None and on_result is not None:
        on_result(result)
    return result


def check_scope(value: object, where: str = "scope") -> str:
    """``value`` if it is a scope: ``"all"`` (the context in every message) or ``"history"`` (earlier turns only)."""
    if not isinstance(value, str) or value not in SCOPES:
        raise ConfigError(
            f"{where} must be 'all' (the context in every message) or 'history' (earlier turns only), got {value!r}"
        )
    return value


@dataclass(frozen=True, slots=True)
class CallOptions:
    """One call's ``promptzip=`` keyword, read. ``enabled=False`` sends the call exactly as given; ``spec`` and
    ``scope``, when set, replace the wrapper's own for this call only.

    >>> CallOptions.parse(800)
    CallOptions(enabled=True, spec=Budget(tokens=800, rate=None), scope=None)
    >>> CallOptions.parse({"rate": 0.2, "scope": "history"}).scope
    'history'
    >>> CallOptions.parse(False).enabled
    False
    """

    enabled: bool = True
    spec: Budget | None = None
    scope: str | None = None

    @classmethod
    def parse(cls, value: object) -> CallOptions:
        """Accept ``None``/``True`` (the wrapper's settings), ``False`` (off), an int token budget, a ``Budget``, or a
        dict with ``budget`` (int or Budget), ``rate`` (the kept fraction), ``scope`` and ``disable`` (a bool).

        Raises :class:`promptzip.BudgetError` for a budget that is not one (a float included: write
        ``{"rate": 0.2}``), :class:`promptzip.ConfigError` for any other value, key or scope.
        """
        if value is None or value is True:
            return cls()
        if value is False:
            return cls(enabled=False)
        if isinstance(value, Budget | Integral | float):  # Integral: numpy's integers too (bools are taken above)
            return cls(spec=_budget(value, f"{KEYWORD}={value!r}"))
        if isinstance(value, Mapping):
            return cls._from_mapping(value)
        raise ConfigError(
            f"{KEYWORD}= takes False, an int token budget, a promptzip.Budget, or a dict with "
            f"{', '.join(_OPTIONS)}; not {type(value).__name__}"
        )

    @classmethod
    def _from_mapping(cls, options: Mapping[Any, Any]) -> CallOptions:
        unknown = [k for k in options if k not in _OPTIONS]
        if unknown:
            raise ConfigError(f"unknown {KEYWORD}= option {unknown[0]!r}; the options are {', '.join(_OPTIONS)}")
        disable = options.get("disable", False)
        if not isinstance(disable, bool):
            raise ConfigError(f"{KEYWORD}={{'disable': ...}} must be True or False, got {disable!r}")
        if disable:
            if len(options) > 1:
                raise ConfigError(f"{KEYWORD}={{'disable': True}} sends the call as given; it takes no other option")
            return cls(enabled=False)
        if "budget" in options and "rate" in options:
            raise BudgetError(f"give either 'budget' or 'rate' in {KEYWORD}=, not both")
        spec = None
        if "budget" in options:
            spec = _budget(options["budget"], f"{KEYWORD}={{'budget': {options['budget']!r}}}")
        elif "rate" in options:
            rate = options["rate"]
            try:
                spec = Budget(rate=rate)
            except BudgetError as exc:
                raise BudgetError(f"{KEYWORD}={{'rate': {rate!r}}}: {exc}") from exc
        scope = check_scope(options["scope"], f"{KEYWORD}={{'scope': ...}}") if "scope" in options else None
        return cls(spec=spec, scope=scope)


def _budget(value: object, where: str) -> Budget:
    """A per-call budget: a Budget or an int number of tokens; never a bare float, which could mean either."""
    if isinstance(value, Budget):
        return value
    if isinstance(value, float):
        raise BudgetError(
            f"{where} is a float: give an int number of tokens, or the kept fraction as "
            f"{KEYWORD}={{'rate': {value!r}}} or promptzip.Budget(rate={value!r})"
        )
    if isinstance(value, bool) or not isinstance(value, Integral):  # numpy's integers are ints, as in Budget
        raise BudgetError(f"{where} must be an int number of tokens or a promptzip.Budget, not {type(value).__name__}")
    try:
        return Budget(tokens=int(value))
    except BudgetError as exc:
        raise BudgetError(f"{where}: {exc}", budget=int(value)) from exc


class Compression:
    """A budget, a scope and a Zipper built on first use (or the one given), shared by every call that holds them.
    ``on_result`` is called with the :class:`~promptzip.Result` of every call it compressed (not of one sent as
    given), in the thread that compressed it, before the call is sent; what it raises propagates to the caller."""

    def __init__(
        self,
        *,
        budget: Budget | int | float | None,
        rate: float | None,
        target: str | Tokenizer,
        preset: str,
        cache: str | Cache | None,
        zipper: Zipper | None,
        scope: str = "all",
        on_result: Callable[[Result], object] | None = None,
    ) -> None:
        self.spec = Budget.coerce(budget, rate=rate)
        self.scope = check_scope(scope)
        self.on_result = check_on_result(on_result)
        if zipper is not None and not isinstance(zipper, Zipper):
            raise ConfigError(f"zipper must be a promptzip.Zipper, not {type(zipper).__name__}")
        if zipper is None:  # a setting that cannot work fails now, not at the first call
            if not isinstance(preset, str):
                raise ConfigError(f"preset must be a preset name, not {type(preset).__name__}")
            registries.presets.get(preset)
            if not isinstance(target, str | Tokenizer):
                raise ConfigError(f"target must be a model name, encoding or Tokenizer, not {target!r}")
            if cache is not None and not isinstance(cache, str | Cache):
                raise ConfigError(f"cache must be a cache URL, a Cache or None, not {type(cache).__name__}")
        self._preset, self._target, self._cache = preset, target, cache
        self._zipper = zipper

    def __repr__(self) -> str:
        return (
            f"Compression(spec={self.spec!r}, scope={self.scope!r}, preset={self._preset!r}, target={self._target!r})"
        )

    @property
    def zipper(self) -> Zipper:
        if self._zipper is None:
            self._zipper = shared_zipper(self._preset, self._target, self._cache)
        return self._zipper

    def reporting(self, on_result: Callable[[Result], object] | None) -> Compression:
        """This Compression's settings and Zipper (built now, if it was not), reporting to ``on_result`` instead: one
        call's own view of a Compression that many calls share."""
        twin = copy.copy(self)
        twin._zipper = self.zipper
        twin.on_result = check_on_result(on_result)
        return twin

    def chat(
        self,
        messages: object,
        *,
        spec: Budget | None = None,
        scope: str | None = None,
        conversation: str | None = None,
        pricing: CachePricing | None = None,
        question: str | None = None,
    ) -> list[Any]:
        """Compressed chat messages; messages whose content did not change are returned as given. ``spec`` and
        ``scope`` replace this Compression's own for one call; ``conversation`` names the conversation (the call's
        ``prompt_cache_key``), else it is recognised by its messages; ``pricing`` is the cache prices of the model
        the call goes to (:func:`~promptzip._pricing.listed_pricing`), else the target's; ``question``, given apart
        from the chat (the decorator's ``question=``), is what relevance is measured against."""
        items = _as_list(messages, "messages")
        dicts = [_as_mapping(m, f"messages[{i}]") for i, m in enumerate(items)]
        result = self.sent(
            dicts,
            spec or self.spec,
            scope=scope or self.scope,
            conversation=conversation,
            pricing=pricing,
            question=question,
        )
        if result is None:
            return items
        out = result.messages or ()
        return [
            m if new.get("content") == d.get("content") else new for m, d, new in zip(items, dicts, out, strict=True)
        ]

    def call(
        self,
        dialect: Dialect,
        kwargs: Mapping[str, Any],
        keys: tuple[str, ...],
        *,
        spec: Budget | None = None,
        scope: str | None = None,
        conversation: str | None = None,
        pricing: CachePricing | None = None,
    ) -> dict[str, Any]:
        """A call's keyword arguments with their prompt compressed as the proxy compresses the same API's route: the
        ``keys`` that hold the prompt (with ``model`` and ``stream``) are the body ``dialect`` reads as chat, the core
        compresses that chat, and the texts it changed go back. Arguments the core did not change keep the caller's
        own objects (a reply's content blocks appended to the chat, say); a call with nothing to compress, or that
        fits whole, comes back as given. A body the dialect refuses is an :class:`~promptzip.InputError`."""
        # An iterator of messages can be read once: it becomes a list, which is what is then sent.
        kwargs = {k: list(v) if isinstance(v, Iterator) else v for k, v in kwargs.items()}
        body = {k: plain(kwargs[k]) for k in ("model", "stream", *keys) if k in kwargs}
        chat = dialect.read(body)
        if isinstance(chat, str):  # nothing the dialect may change (an unknown role, say): sent as given
            return dict(kwargs)
        result = self.sent(
            chat.messages, spec or self.spec, scope=scope or self.scope, conversation=conversation, pricing=pricing
        )
        if result is None:
            return dict(kwargs)
        new = dialect.write(body, chat, [dict(m) for m in result.messages or ()])
        out = dict(kwargs)
        for key in keys:
            if key in body and new[key] != body[key]:
                out[key] = _restored(kwargs[key], body[key], new[key])
        return out

    def sent(self, messages: Sequence[Mapping[str, Any]], spec: Budget, **options: Any) -> Result | None:
        """:func:`sent_messages` on this Compression's Zipper, reported to ``on_result`` when it compressed."""
        return self._report(sent_messages(self.zipper, messages, spec, **options))

    def prompt(self, prompt: str | bytes, *, question: str | None = None) -> str:
        """A string prompt compressed (:func:`compressed_prompt`), or with ``question`` apart only its compressed
        context (:func:`compressed_text`), reported to ``on_result`` when it compressed."""
        if question is not None:
            result = self.zipper.compress(prompt, question=question, budget=self.spec)
            self._report(None if fits_whole(result) else result)
            return compressed_text(result)
        text, compressed = _prompt(self.zipper, prompt, self.spec)
        self._report(compressed)
        return text

    def _report(self, result: Result | None) -> Result | None:
        return report(self.on_result, result)


# ---------------------------------------------------------------------------------------------------- helpers
def sent_messages(zipper: Zipper, messages: Sequence[Mapping[str, Any]], spec: Budget, **options: Any) -> Result | None:
    """``zipper.compress_messages`` for a door that sends the chat on: ``None`` where the chat goes as given, because
    it fits whole or because a ``rate`` cannot be met. A rate is a target, not a cap: a request made mostly of what
    is kept verbatim (an agent's first step, a system prompt and a question) cannot shrink to it, and raising there
    would fail the call for a request with nothing to compress; so it goes out as given, as the proxy forwards it. A
    token budget is a cap the caller set: missing it stays a :class:`~promptzip.BudgetError`."""
    try:
        result = zipper.compress_messages(messages, budget=spec, **options)
    except BudgetError as exc:
        if spec.rate is None:
            raise
        logger.debug("promptzip: the chat is sent as given: rate=%s cannot be met (%s)", spec.rate, exc)
        return None
    return None if fits_whole(result) else result


def fits_whole(result: Result) -> bool:
    """Whether the input already fit and nothing was cut: the caller then sends it exactly as given, since the
    pipeline re-joins the paragraphs it kept, which would change their whitespace."""
    return (
        result.decision == "kept_all"
        and result.tokens_in <= result.budget
        and not any(map(tags_removed, result.sources))
    )


def tags_removed(source: Source) -> bool:
    """Whether the output of ``source`` loses promptzip's tags: it holds some, and they parse (a retrieved
    document's that do not are its own words, :attr:`Source.lenient_tags`)."""
    if "<pz" not in source.text.lower():
        return False
    if not source.lenient_tags:
        return True
    from promptzip._split import parse_tags

    try:
        parse_tags(source.text)
    except InputError:
        return False
    return True


def compressed_text(result: Result) -> str:
    """The compressed context of one text, or the text itself when it fit whole."""
    if fits_whole(result) and len(result.sources) == 1:
        return result.sources[0].text
    return result.context


def compressed_prompt(zipper: Zipper, prompt: str | bytes, spec: Budget) -> str:
    """A whole string prompt with only its context compressed (its instruction and question are kept byte for
    byte), or the prompt itself when it fit whole."""
    return _prompt(zipper, prompt, spec)[0]


def _prompt(zipper: Zipper, prompt: str | bytes, spec: Budget) -> tuple[str, Result | None]:
    """:func:`compressed_prompt` and the Result it came from (``None`` when the prompt fit whole)."""
    result = zipper.compress_prompt(prompt, budget=spec)
    if fits_whole(result):
        return (prompt if isinstance(prompt, str) else prompt.decode("utf-8")), None
    return result.text, result


def _as_list(value: object, where: str) -> list[Any]:
    if isinstance(value, str | bytes | bytearray | Mapping) or not isinstance(value, Iterable):
        raise InputError(f"{where} must be a list of messages, not {type(value).__name__}")
    return list(value)


def _as_mapping(item: object, where: str) -> Mapping[str, Any]:
    """A message as a mapping: dicts as they are, SDK objects (a previous reply appended) through model_dump."""
    if isinstance(item, Mapping):
        return item
    # A LangChain message dumps to a dict with no role; its own door reads it (blocks, tool calls, types kept).
    langchain = sys.modules.get("langchain_core.messages")
    if langchain is not None and isinstance(item, langchain.BaseMessage):
        raise InputError(
            f"{where} is a LangChain {type(item).__name__}: compress LangChain messages with "
            "promptzip.integrations.langchain.PromptZipRunnable, or pass them as OpenAI-style dicts "
            "(langchain_core.messages.convert_to_openai_messages)"
        )
    dump = getattr(item, "model_dump", None)
    if callable(dump):
        dumped = dump(exclude_none=True)
        if isinstance(dumped, Mapping):
            return dumped
    raise InputError(f"{where} must be an object with a 'role', not {type(item).__name__}")


def plain(value: object) -> Any:
    """``value`` as JSON-like data, as the SDK would send it: SDK objects (a reply's content blocks appended to the
    chat) through ``model_dump``, tuples and other iterables as lists."""
    if value is None or isinstance(value, str | bytes | int | float):
        return value
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return plain(dump(exclude_none=True))
    if isinstance(value, Iterable):
        return [plain(v) for v in value]
    return value


def _restored(original: object, before: object, after: object) -> Any:
    """``after``, with the caller's own objects wherever nothing changed (a list of messages item by item)."""
    if after == before:
        return original
    if (
        isinstance(original, list | tuple)
        and isinstance(before, list)
        and isinstance(after, list)
        and len(original) == len(before) == len(after)
    ):
        return [o if a == b else a for o, b, a in zip(original, before, after, strict=True)]
    return after
