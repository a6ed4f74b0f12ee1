"""OpenAI-style requests: compress a chat's ``messages`` or a Responses ``input``, and the wrapped SDK client.

The wrapped client is a proxy: attribute access goes to the user's client, except the entry points that send a
prompt, which compress it first and then call the SDK's own method with everything else as given:

* ``chat.completions``: ``create`` (``stream=True`` included), ``parse`` and the ``stream(...)`` helper;
* ``responses``: ``create`` (``stream=True`` included), ``parse`` and ``stream(...)``;
* the same resources' ``with_raw_response`` and ``with_streaming_response`` views (``create``/``parse``), reached
  from the resource (``client.chat.completions.with_raw_response``) or from the client
  (``client.with_raw_response.chat.completions``).

What comes back (a completion, a ``Stream``, a stream manager, a raw response) is the SDK's own, untouched. The
user's client is never changed.

Every wrapped method takes one more keyword, ``promptzip=``, removed before the SDK is called (see
:class:`CallOptions`): ``False`` sends the call as given, an int or a :class:`promptzip.Budget` is this call's
budget, and a dict sets ``budget``, ``rate``, ``scope`` or ``disable``.

An async client compresses in a worker thread. Its ``stream(...)`` helpers and ``with_streaming_response`` methods
return an async context manager, as the SDK's do; the prompt is compressed when it is entered (``async with``), so
compression errors are raised there, while a bad ``promptzip=`` value is raised at the call.
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from promptzip._cache import Cache
from promptzip._errors import BudgetError, ConfigError, InputError
from promptzip._messages import SCOPES
from promptzip._pipeline import Zipper
from promptzip._registry import registries
from promptzip._tokenizers import Tokenizer
from promptzip._types import Budget, Result

__all__ = [
    "CallOptions",
    "Compression",
    "WrappedClient",
    "check_scope",
    "compressed_prompt",
    "compressed_text",
    "fits_whole",
]

KEYWORD = "promptzip"  # the per-call keyword of the wrapped client's methods
_OPTIONS = ("budget", "rate", "scope", "disable")
_TEXT_PARTS = ("text", "input_text", "output_text")


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
        if isinstance(value, Budget | int | float):
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
    if isinstance(value, bool) or not isinstance(value, int):
        raise BudgetError(f"{where} must be an int number of tokens or a promptzip.Budget, not {type(value).__name__}")
    try:
        return Budget(tokens=value)
    except BudgetError as exc:
        raise BudgetError(f"{where}: {exc}", budget=value) from exc


class Compression:
    """A budget, a scope and a Zipper built on first use (or the one given), shared by every call that holds them."""

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
    ) -> None:
        self.spec = Budget.coerce(budget, rate=rate)
        self.scope = check_scope(scope)
        if zipper is not None and not isinstance(zipper, Zipper):
            raise ConfigError(f"zipper must be a promptzip.Zipper, not {type(zipper).__name__}")
        if zipper is None:
            registries.presets.get(preset)  # an unknown preset fails now, not at the first call
        self._preset, self._target, self._cache = preset, target, cache
        self._zipper = zipper
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"Compression(spec={self.spec!r}, scope={self.scope!r}, preset={self._preset!r}, target={self._target!r})"
        )

    @property
    def zipper(self) -> Zipper:
        if self._zipper is None:
            with self._lock:
                if self._zipper is None:
                    self._zipper = Zipper.from_preset(self._preset, target=self._target, cache=self._cache)
        return self._zipper

    def chat(self, messages: object, *, spec: Budget | None = None, scope: str | None = None) -> list[Any]:
        """Compressed chat messages; messages whose content did not change are returned as given. ``spec`` and
        ``scope`` replace this Compression's own for one call."""
        items = _as_list(messages, "messages")
        dicts = [_as_mapping(m, f"messages[{i}]") for i, m in enumerate(items)]
        result = self.zipper.compress_messages(dicts, budget=spec or self.spec, scope=scope or self.scope)
        if fits_whole(result):
            return items
        out = result.messages or ()
        return [
            m if new.get("content") == d.get("content") else new for m, d, new in zip(items, dicts, out, strict=True)
        ]

    def responses_input(
        self, value: object, *, spec: Budget | None = None, scope: str | None = None
    ) -> str | list[Any]:
        """A Responses API ``input``: a string is a whole prompt (its instruction and question kept, its context
        compressed; ``scope`` does not apply to it), a list of items a chat (items that are not messages, such as
        function calls and their outputs, are counted and sent unchanged)."""
        if isinstance(value, bytearray):
            value = bytes(value)
        if isinstance(value, str | bytes):
            return compressed_prompt(self.zipper, value, spec or self.spec)
        items = _as_list(value, "input")
        dicts = [_as_mapping(m, f"input[{i}]") for i, m in enumerate(items)]
        chat = [_item_as_message(d, i) for i, d in enumerate(dicts)]
        result = self.zipper.compress_messages(chat, budget=spec or self.spec, scope=scope or self.scope)
        if fits_whole(result):
            return items
        out = result.messages or ()
        return [_item_back(item, d, c, new) for item, d, c, new in zip(items, dicts, chat, out, strict=True)]


# ---------------------------------------------------------------------------------------------------- the client
class _Rewrite(Protocol):
    """``Compression.chat`` or ``Compression.responses_input``: the new value of the keyword a method sends."""

    def __call__(self, value: object, /, *, spec: Budget | None = None, scope: str | None = None) -> Any: ...


# How a method of a resource is called. A sync method is compressed at the call. An async one is a coroutine
# function ("call") or returns an async context manager that sends the request when entered ("context").
_Kind = Literal["sync", "call", "context"]
_METHODS: Mapping[str, _Kind] = {"create": "call", "parse": "call", "stream": "context"}
_VIEWS: Mapping[str, Mapping[str, _Kind]] = {
    "with_raw_response": {"create": "call", "parse": "call"},
    "with_streaming_response": {"create": "context", "parse": "context"},
}


class _Delegate:
    """Everything not defined here is the wrapped object's own attribute."""

    def __init__(self, wrapped: Any, compression: Compression) -> None:
        self._wrapped = wrapped
        self._compression = compression

    def __getattr__(self, name: str) -> Any:
        if name in ("_wrapped", "_compression"):  # not set yet (copy, pickle): never recurse
            raise AttributeError(name)
        return getattr(self._wrapped, name)

    def __repr__(self) -> str:
        return f"<promptzip wrapped {self._wrapped!r}>"


class _Resources(_Delegate):
    """A client, or its ``with_raw_response`` / ``with_streaming_response`` view, whose ``chat.completions`` and
    ``responses`` compress; ``views`` says whether their own ``with_raw_response``/``with_streaming_response``
    are wrapped too (a view's resources have none)."""

    def __init__(
        self, client: Any, compression: Compression, *, is_async: bool, methods: Mapping[str, _Kind], views: bool
    ) -> None:
        super().__init__(client, compression)
        self.chat = _Chat(client.chat, compression, is_async=is_async, methods=methods, views=views)
        self.responses = _Endpoint(
            client.responses, compression, "input", compression.responses_input, is_async, methods, views
        )


class WrappedClient(_Resources):
    """An ``openai.OpenAI`` / ``AsyncOpenAI`` whose chat and Responses calls compress their prompt first."""

    def __init__(self, client: Any, compression: Compression, *, is_async: bool) -> None:
        super().__init__(client, compression, is_async=is_async, methods=_METHODS, views=True)
        self._async = is_async
        for view, methods in _VIEWS.items():
            setattr(
                self,
                view,
                _Resources(getattr(client, view), compression, is_async=is_async, methods=methods, views=False),
            )

    # Dunder methods are looked up on the type, not through __getattr__: `with wrap(client) as c` closes the client.
    def __enter__(self) -> WrappedClient:
        self._wrapped.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        return self._wrapped.__exit__(*exc_info)

    async def __aenter__(self) -> WrappedClient:
        await self._wrapped.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        return await self._wrapped.__aexit__(*exc_info)

    def with_options(self, **options: Any) -> WrappedClient:
        """The client's ``with_options``/``copy``, wrapped the same way."""
        return WrappedClient(self._wrapped.with_options(**options), self._compression, is_async=self._async)

    copy = with_options


class _Chat(_Delegate):
    def __init__(
        self, chat: Any, compression: Compression, *, is_async: bool, methods: Mapping[str, _Kind], views: bool
    ) -> None:
        super().__init__(chat, compression)
        self.completions = _Endpoint(
            chat.completions, compression, "messages", compression.chat, is_async, methods, views
        )


class _Endpoint(_Delegate):
    """A resource whose prompt-sending methods rewrite one keyword argument before calling the real method."""

    def __init__(
        self,
        resource: Any,
        compression: Compression,
        key: str,
        rewrite: _Rewrite,
        is_async: bool,
        methods: Mapping[str, _Kind],
        views: bool,
    ) -> None:
        super().__init__(resource, compression)
        for name, kind in methods.items():
            real = getattr(resource, name, None)
            if callable(real):
                setattr(self, name, _rewriting(real, key, rewrite, kind if is_async else "sync"))
        if views:
            for view, view_methods in _VIEWS.items():
                inner = getattr(resource, view, None)
                if inner is not None:
                    setattr(self, view, _Endpoint(inner, compression, key, rewrite, is_async, view_methods, False))


def _rewriting(real: Callable[..., Any], key: str, rewrite: _Rewrite, kind: _Kind) -> Callable[..., Any]:
    """``real`` with the ``promptzip=`` keyword read and removed, and its ``key`` argument compressed."""
    if kind == "call":

        @functools.wraps(real)
        async def acall(*args: Any, **kwargs: Any) -> Any:
            options = CallOptions.parse(kwargs.pop(KEYWORD, None))
            if _applies(kwargs, key, options):
                kwargs = await asyncio.to_thread(_compressed, kwargs, key, rewrite, options)
            return await real(*args, **kwargs)

        return acall

    if kind == "context":

        @functools.wraps(real)
        def open_later(*args: Any, **kwargs: Any) -> _DeferredAsyncContext:
            options = CallOptions.parse(kwargs.pop(KEYWORD, None))
            return _DeferredAsyncContext(real, args, kwargs, key, rewrite, options)

        return open_later

    @functools.wraps(real)
    def call(*args: Any, **kwargs: Any) -> Any:
        options = CallOptions.parse(kwargs.pop(KEYWORD, None))
        return real(*args, **_compressed(kwargs, key, rewrite, options))

    return call


class _DeferredAsyncContext:
    """Stands for the async context manager an SDK helper returns (``stream(...)``, ``with_streaming_response``):
    entering it compresses the prompt in a worker thread, then calls the SDK method and enters what it returns."""

    def __init__(
        self,
        real: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        key: str,
        rewrite: _Rewrite,
        options: CallOptions,
    ) -> None:
        self._real, self._args, self._kwargs = real, args, kwargs
        self._key, self._rewrite, self._options = key, rewrite, options
        self._inner: Any = None

    async def __aenter__(self) -> Any:
        if self._inner is not None:
            raise RuntimeError("this stream was already opened; call the method again for a new one")
        kwargs = self._kwargs
        if _applies(kwargs, self._key, self._options):
            kwargs = await asyncio.to_thread(_compressed, kwargs, self._key, self._rewrite, self._options)
        self._inner = self._real(*self._args, **kwargs)
        return await self._inner.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> Any:
        if self._inner is None:
            return None
        return await self._inner.__aexit__(*exc_info)

    def __repr__(self) -> str:
        return f"<promptzip deferred {getattr(self._real, '__qualname__', self._real)!r}>"


def _applies(kwargs: Mapping[str, Any], key: str, options: CallOptions) -> bool:
    """Whether this call has a prompt to compress: compression is on and ``key`` was given a value (not None, nor
    the SDK's ``omit``/``NOT_GIVEN``)."""
    value = kwargs.get(key)
    return options.enabled and value is not None and not isinstance(value, _sdk_sentinels())


@functools.cache
def _sdk_sentinels() -> tuple[type, ...]:
    import openai  # only a wrapped client calls this, so the SDK is installed

    found = (getattr(openai, "NotGiven", None), getattr(openai, "Omit", None))
    return tuple(t for t in found if isinstance(t, type))


def _compressed(kwargs: dict[str, Any], key: str, rewrite: _Rewrite, options: CallOptions) -> dict[str, Any]:
    if not _applies(kwargs, key, options):
        return kwargs
    return {**kwargs, key: rewrite(kwargs[key], spec=options.spec, scope=options.scope)}


# ---------------------------------------------------------------------------------------------------- helpers
def fits_whole(result: Result) -> bool:
    """Whether the input already fit and nothing was cut: the caller then sends it exactly as given, since the
    pipeline re-joins the paragraphs it kept, which would change their whitespace."""
    return (
        result.decision == "kept_all"
        and result.tokens_in <= result.budget
        and not any("<pz" in s.text.lower() for s in result.sources)  # promptzip's tags are always removed
    )


def compressed_text(result: Result) -> str:
    """The compressed context of one text, or the text itself when it fit whole."""
    if fits_whole(result) and len(result.sources) == 1:
        return result.sources[0].text
    return result.context


def compressed_prompt(zipper: Zipper, prompt: str | bytes, spec: Budget) -> str:
    """A whole string prompt with only its context compressed (its instruction and question are kept byte for
    byte), or the prompt itself when it fit whole."""
    result = zipper.compress_prompt(prompt, budget=spec)
    if fits_whole(result):
        return prompt if isinstance(prompt, str) else prompt.decode("utf-8")
    return result.text


def _as_list(value: object, where: str) -> list[Any]:
    if isinstance(value, str | bytes | bytearray | Mapping) or not isinstance(value, Iterable):
        raise InputError(f"{where} must be a list of messages, not {type(value).__name__}")
    return list(value)


def _as_mapping(item: object, where: str) -> Mapping[str, Any]:
    """A message as a mapping: dicts as they are, SDK objects (a previous reply appended) through model_dump."""
    if isinstance(item, Mapping):
        return item
    dump = getattr(item, "model_dump", None)
    if callable(dump):
        dumped = dump(exclude_none=True)
        if isinstance(dumped, Mapping):
            return dumped
    raise InputError(f"{where} must be an object with a 'role', not {type(item).__name__}")


def _item_as_message(item: Mapping[str, Any], i: int) -> dict[str, Any]:
    """A Responses input item as a chat message: messages keep their role and text parts; anything else is a
    protected system message holding the item's JSON, so it is counted and never compressed."""
    if "role" in item and item.get("type", "message") == "message":
        content = item.get("content")
        if isinstance(content, list):
            parts: list[dict[str, Any]] = []
            for j, part in enumerate(content):
                part = _as_mapping(part, f"input[{i}].content[{j}]")
                if part.get("type") in _TEXT_PARTS and isinstance(part.get("text"), str):
                    parts.append({"type": "text", "text": part["text"]})
                else:
                    parts.append({"type": str(part.get("type"))})
            return {"role": item["role"], "content": parts}
        return {"role": item["role"], "content": content}
    return {"role": "system", "content": json.dumps(item, ensure_ascii=False, sort_keys=True, default=str)}


def _item_back(original: Any, item: Mapping[str, Any], sent: Mapping[str, Any], new: Mapping[str, Any]) -> Any:
    if new.get("content") == sent.get("content"):
        return original
    content = item["content"]
    if isinstance(content, list):
        merged = []
        for part, new_part in zip(content, new["content"], strict=True):
            mapped = _as_mapping(part, "input part")
            is_text = mapped.get("type") in _TEXT_PARTS and isinstance(mapped.get("text"), str)
            merged.append({**mapped, "text": new_part["text"]} if is_text else part)
        return {**item, "content": merged}
    return {**item, "content": new["content"]}
