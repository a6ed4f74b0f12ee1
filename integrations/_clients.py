"""Wrapped SDK clients: compress the prompt of every call that sends one, then call the SDK's own method.

The wrapped client is a proxy: attribute access goes to the user's client, except the entry points that send a
prompt, which compress it first and then call the SDK's own method with everything else as given:

* OpenAI (``openai.OpenAI`` / ``AsyncOpenAI``):

  * ``chat.completions``: ``create`` (``stream=True`` included), ``parse`` and the ``stream(...)`` helper;
  * ``responses``: ``create`` (``stream=True`` included), ``parse``, ``stream(...)`` and ``compact``;
  * ``completions.create`` (the legacy Completions API, ``stream=True`` included): a ``prompt`` string, or a list of
    one, read as the proxy's ``/v1/completions`` route reads it; token ids (bytes too, which the SDK sends as a list
    of their values), several prompts and ``echo=True`` are sent as given;
  * ``files.create`` with ``purpose="batch"``: each line of the Batch API input file whose ``url`` is
    ``/v1/chat/completions``, ``/v1/responses`` or ``/v1/completions`` has its ``body`` compressed as that call would
    send it (:mod:`promptzip.integrations._openai_batches`; the file is read whole first); other purposes, and the
    Uploads API, are the SDK's, uncompressed;

* Anthropic (``anthropic.Anthropic`` / ``AsyncAnthropic``): ``messages``: ``create`` (``stream=True`` included),
  ``parse`` and the ``stream(...)`` helper; ``messages.batches.create``, each request's ``params`` as
  ``messages.create`` would send it (:mod:`promptzip.integrations._batches`); ``count_tokens`` and the other batch
  methods are the SDK's, uncompressed;
* the same under ``client.beta``, and there also ``messages.tool_runner(...)`` (``stream=True`` included): the
  SDK's own runner, made on a resource of its class bound to a wrapped client, so that every turn of its loop goes
  through the wrapped ``beta.messages.create`` and is compressed as that call is, with the runner's ``promptzip=``
  (``False``: the SDK's loop on the user's client, every turn as given). On the SDK's message thread (its default),
  a later turn sends only what was appended (the tool results) and the server continues from the compressed turns
  it holds; with ``thread=False`` every turn resends the history, and the prefix sent before goes again byte for
  byte where the budget allows (cache-stable history, below). A thread the caller drives
  (``beta.messages.thread(...)``, then its ``send``/``stream``/``tool_runner``) is made the same way: each turn it
  sends is compressed;
* the same resources' ``with_raw_response`` and ``with_streaming_response`` views (``create``/``parse``), reached
  from the resource (``client.chat.completions.with_raw_response``), from the client
  (``client.with_raw_response.chat.completions``) or from the view of the resource above it
  (``client.messages.with_raw_response.batches``).

A chat's ``messages`` go to the core as they are. A Responses ``input`` list (with ``instructions``) and an
Anthropic request (``system``, ``messages``, ``cache_control``) are read by the same dialects as the proxy's
routes (:mod:`promptzip.integrations._dialects`), so a wrapped client sends what the proxy would: tool outputs are
cut by their structure, ``cache_control`` breakpoints are kept, and texts the core did not change keep the caller's
own objects. A Responses ``input`` string is the user message, as on the proxy's route: the core tells its
instruction, context and question apart, and ``instructions`` count in the budget.

What comes back (a completion, a ``Stream``, a stream manager, a raw response) is the SDK's own, untouched. The
user's client is never changed.

Every wrapped method takes one more keyword, ``promptzip=``, removed before the SDK is called (see
:class:`CallOptions`): ``False`` sends the call as given, an int or a :class:`promptzip.Budget` is this call's
budget, and a dict sets ``budget``, ``rate``, ``scope`` or ``disable``. A call's ``prompt_cache_key`` (OpenAI's
name for the cache a conversation shares) also names the conversation whose sent prefix is kept byte for byte
(cache-stable history, :mod:`promptzip._conversation`); other conversations are recognised by their messages.

An async client compresses in a worker thread. Its ``stream(...)`` helpers and ``with_streaming_response`` methods
return an async context manager, as the SDK's do; the prompt is compressed when it is entered (``async with``), so
compression errors are raised there, while a bad ``promptzip=`` value is raised at the call.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from promptzip._inputs import check_text
from promptzip._pricing import CachePricing
from promptzip._types import Budget
from promptzip.integrations._batches import each_request
from promptzip.integrations._calls import (
    KEYWORD,
    CallOptions,
    Compression,
    call_context,
    check_scope,
    compressed_text,
    fits_whole,
)
from promptzip.integrations._dialects import AnthropicMessages, Completions, OpenAIResponses
from promptzip.integrations._openai_batches import each_line

__all__ = [
    "ANTHROPIC",
    "OPENAI",
    "CallOptions",
    "Compression",
    "Sdk",
    "WrappedClient",
    "check_scope",
    "compressed_text",
    "fits_whole",
]


# ---------------------------------------------------------------------------------------------------- the SDKs
class _Rewrite(Protocol):
    """A prompt-sending method's keyword arguments with the prompt compressed (the rest as given)."""

    def __call__(
        self,
        compression: Compression,
        kwargs: Mapping[str, Any],
        /,
        *,
        spec: Budget | None,
        scope: str | None,
        conversation: str | None,
        pricing: CachePricing | None,
    ) -> dict[str, Any]: ...


def _chat(compression: Compression, kwargs: Mapping[str, Any], /, **options: Any) -> dict[str, Any]:
    return {**kwargs, "messages": compression.chat(kwargs["messages"], **options)}


_RESPONSES, _ANTHROPIC, _COMPLETIONS = OpenAIResponses(), AnthropicMessages(), Completions()


def _responses(compression: Compression, kwargs: Mapping[str, Any], /, **options: Any) -> dict[str, Any]:
    given = _given(kwargs)
    if isinstance(given.get("input"), bytes | bytearray):  # the SDK sends only text: bytes are read as UTF-8
        given["input"] = check_text(given["input"], "input", allow_empty=True, allow_nul=True)
    return compression.call(_RESPONSES, given, ("instructions", "input"), **options)


def _messages(compression: Compression, kwargs: Mapping[str, Any], /, **options: Any) -> dict[str, Any]:
    return compression.call(_ANTHROPIC, _given(kwargs), ("system", "messages", "cache_control"), **options)


def _completions(compression: Compression, kwargs: Mapping[str, Any], /, **options: Any) -> dict[str, Any]:
    if isinstance(kwargs["prompt"], bytes | bytearray):  # the SDK sends bytes as a list of ints: token ids
        return dict(kwargs)
    return compression.call(_COMPLETIONS, _given(kwargs), ("prompt", "echo"), **options)


@dataclass(frozen=True, slots=True)
class Sdk:
    """Which resources of one SDK's client send prompts: an attribute path, the keyword that holds the prompt (a
    call without it is sent as given), and how the call's arguments are compressed."""

    name: str
    endpoints: tuple[tuple[tuple[str, ...], str, _Rewrite], ...]


OPENAI = Sdk(
    "openai",
    (
        (("chat", "completions"), "messages", _chat),
        (("responses",), "input", _responses),
        (("completions",), "prompt", _completions),
        (("files",), "file", each_line),  # a batch file's lines; other purposes go as given
    ),
)
# messages before messages.batches: the batches resource is set on the messages endpoint wrapped first.
ANTHROPIC = Sdk(
    "anthropic",
    ((("messages",), "messages", _messages), (("messages", "batches"), "requests", each_request(_messages))),
)


# ---------------------------------------------------------------------------------------------------- the client
# How a method of a resource is called. A sync method is compressed at the call. An async one is a coroutine
# function ("call") or returns an async context manager that sends the request when entered ("context").
_Kind = Literal["sync", "call", "context"]
_METHODS: Mapping[str, _Kind] = {"create": "call", "parse": "call", "stream": "context", "compact": "call"}
_GIVEN = CallOptions()  # a call without promptzip=: the wrapper's own settings
# Methods that make a message thread on their resource's client, which sends each turn with beta.messages.create.
_ON_WRAPPED_CLIENT = ("tool_runner", "thread")
_VIEWS: Mapping[str, Mapping[str, _Kind]] = {
    "with_raw_response": {"create": "call", "parse": "call", "compact": "call"},
    "with_streaming_response": {"create": "context", "parse": "context", "compact": "context"},
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
    """A client, its ``beta``, or its ``with_raw_response`` / ``with_streaming_response`` view, whose prompt-sending
    resources (``sdk.endpoints``) compress; ``views`` says whether their own ``with_raw_response`` and
    ``with_streaming_response`` are wrapped too (a view's resources have none)."""

    def __init__(
        self,
        client: Any,
        compression: Compression,
        *,
        sdk: Sdk,
        is_async: bool,
        methods: Mapping[str, _Kind],
        views: bool,
        defaults: CallOptions = _GIVEN,
    ) -> None:
        super().__init__(client, compression)
        for path, key, rewrite in sdk.endpoints:
            # A view of beta has no chat in some SDK versions: wrap what is there, delegate the rest
            resource = client
            for name in path:
                resource = getattr(resource, name, None)
            if resource is None:
                continue
            endpoint = _Endpoint(resource, compression, key, rewrite, is_async, methods, views, defaults)
            for name in _ON_WRAPPED_CLIENT if views else ():  # Anthropic's beta messages
                if callable(getattr(resource, name, None)):
                    setattr(endpoint, name, _on_wrapped_client(resource, name, compression, sdk=sdk, is_async=is_async))
            owner: _Delegate = self
            for name in path[:-1]:  # the namespaces on the way (chat for chat.completions)
                inner = owner.__dict__.get(name)
                if inner is None:
                    inner = _Delegate(getattr(owner._wrapped, name), compression)
                    setattr(owner, name, inner)
                owner = inner
            setattr(owner, path[-1], endpoint)
            if views and isinstance(owner, _Endpoint):  # also reached through the owner's own views
                _nest_in_views(owner, path[-1], compression, key, rewrite, is_async, defaults)
        beta = getattr(client, "beta", None)
        if beta is not None:  # the same endpoints under client.beta (older SDKs keep parse/stream there)
            self.beta = _Resources(
                beta, compression, sdk=sdk, is_async=is_async, methods=methods, views=views, defaults=defaults
            )


class WrappedClient(_Resources):
    """An OpenAI or Anthropic client whose prompt-sending calls compress their prompt first. ``defaults`` are the
    options of a call that gives no ``promptzip=`` (a tool runner's, for the turns it sends)."""

    def __init__(
        self, client: Any, compression: Compression, *, sdk: Sdk, is_async: bool, defaults: CallOptions = _GIVEN
    ) -> None:
        super().__init__(
            client, compression, sdk=sdk, is_async=is_async, methods=_METHODS, views=True, defaults=defaults
        )
        self._sdk = sdk
        self._async = is_async
        self._defaults = defaults
        for view, methods in _VIEWS.items():
            inner = getattr(client, view, None)
            if inner is not None:
                resources = _Resources(
                    inner, compression, sdk=sdk, is_async=is_async, methods=methods, views=False, defaults=defaults
                )
                setattr(self, view, resources)

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
        return WrappedClient(
            self._wrapped.with_options(**options),
            self._compression,
            sdk=self._sdk,
            is_async=self._async,
            defaults=self._defaults,
        )

    copy = with_options


class _Endpoint(_Delegate):
    """A resource whose prompt-sending methods compress their arguments before calling the real method."""

    # set by _Resources where the resource has them (Anthropic's beta messages)
    tool_runner: Callable[..., Any]
    thread: Callable[..., Any]

    def __init__(
        self,
        resource: Any,
        compression: Compression,
        key: str,
        rewrite: _Rewrite,
        is_async: bool,
        methods: Mapping[str, _Kind],
        views: bool,
        defaults: CallOptions,
    ) -> None:
        super().__init__(resource, compression)
        for name, kind in methods.items():
            real = getattr(resource, name, None)
            if callable(real):
                method = _rewriting(real, compression, key, rewrite, kind if is_async else "sync", defaults)
                setattr(self, name, method)
        if views:
            for view, view_methods in _VIEWS.items():
                inner = getattr(resource, view, None)
                if inner is not None:
                    endpoint = _Endpoint(inner, compression, key, rewrite, is_async, view_methods, False, defaults)
                    setattr(self, view, endpoint)


def _nest_in_views(
    owner: _Endpoint,
    name: str,
    compression: Compression,
    key: str,
    rewrite: _Rewrite,
    is_async: bool,
    defaults: CallOptions,
) -> None:
    """The endpoint ``name`` under ``owner`` (``batches`` under ``messages``) as the SDK also reaches it through the
    owner's views: ``client.messages.with_raw_response.batches.create`` sends a batch as well."""
    for view, methods in _VIEWS.items():
        wrapped_view = owner.__dict__.get(view)
        inner = getattr(getattr(wrapped_view, "_wrapped", None), name, None)
        if wrapped_view is not None and inner is not None:
            endpoint = _Endpoint(inner, compression, key, rewrite, is_async, methods, False, defaults)
            setattr(wrapped_view, name, endpoint)


def _rewriting(
    real: Callable[..., Any], compression: Compression, key: str, rewrite: _Rewrite, kind: _Kind, defaults: CallOptions
) -> Callable[..., Any]:
    """``real`` with the ``promptzip=`` keyword read and removed (``defaults`` without one), and its prompt
    compressed."""
    send = functools.partial(_compressed, compression, key, rewrite)
    if kind == "call":

        @functools.wraps(real)
        async def acall(*args: Any, **kwargs: Any) -> Any:
            options = _call_options(kwargs, defaults)
            if _applies(kwargs, key, options):
                kwargs = await asyncio.to_thread(send, kwargs, options)
            return await real(*args, **kwargs)

        return acall

    if kind == "context":

        @functools.wraps(real)
        def open_later(*args: Any, **kwargs: Any) -> _DeferredAsyncContext:
            options = _call_options(kwargs, defaults)
            return _DeferredAsyncContext(real, args, kwargs, key, send, options)

        return open_later

    @functools.wraps(real)
    def call(*args: Any, **kwargs: Any) -> Any:
        options = _call_options(kwargs, defaults)
        return real(*args, **send(kwargs, options))

    return call


def _call_options(kwargs: dict[str, Any], defaults: CallOptions) -> CallOptions:
    """The call's ``promptzip=`` keyword, read and removed from ``kwargs``; ``defaults`` when it has none."""
    return CallOptions.parse(kwargs.pop(KEYWORD)) if KEYWORD in kwargs else defaults


def _on_wrapped_client(
    resource: Any, name: str, compression: Compression, *, sdk: Sdk, is_async: bool
) -> Callable[..., Any]:
    """The method ``name`` of ``resource`` (the user's ``beta.messages``: ``tool_runner``, ``thread``) with the
    ``promptzip=`` keyword read and removed, called on a resource of the same class bound to a wrapped client whose
    calls take those options. The message thread the SDK makes (for a runner's loop, or for the caller to drive)
    sends every turn with its client's ``beta.messages.create`` (``stream=True`` included), so each turn goes
    through that wrapped ``create`` and is compressed as a direct call is; what comes back (the runner, its tools and
    what it yields; the thread) is the SDK's own. ``promptzip=False`` calls the user's resource, every turn as
    given."""
    real = getattr(resource, name)

    @functools.wraps(real)
    def on_wrapped(*args: Any, **kwargs: Any) -> Any:
        options = CallOptions.parse(kwargs.pop(KEYWORD, None))
        if not options.enabled:
            return real(*args, **kwargs)
        client = WrappedClient(resource._client, compression, sdk=sdk, is_async=is_async, defaults=options)
        return getattr(type(resource)(client), name)(*args, **kwargs)

    return on_wrapped


class _DeferredAsyncContext:
    """Stands for the async context manager an SDK helper returns (``stream(...)``, ``with_streaming_response``):
    entering it compresses the prompt in a worker thread, then calls the SDK method and enters what it returns."""

    def __init__(
        self,
        real: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        key: str,
        send: Callable[[dict[str, Any], CallOptions], dict[str, Any]],
        options: CallOptions,
    ) -> None:
        self._real, self._args, self._kwargs = real, args, kwargs
        self._key, self._send, self._options = key, send, options
        self._inner: Any = None

    async def __aenter__(self) -> Any:
        if self._inner is not None:
            raise RuntimeError("this stream was already opened; call the method again for a new one")
        kwargs = self._kwargs
        if _applies(kwargs, self._key, self._options):
            kwargs = await asyncio.to_thread(self._send, kwargs, self._options)
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


def _given(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments actually given: the SDK's ``omit``/``NOT_GIVEN`` stand for an argument left out."""
    return {k: v for k, v in kwargs.items() if not isinstance(v, _sdk_sentinels())}


def _sdk_sentinels() -> tuple[type, ...]:
    """The SDKs' types for an argument left out. Only imported SDKs are asked (a value of an SDK that was never
    imported cannot have been passed), so wrapping one SDK's client never imports the other."""
    found: list[object] = []
    for sdk in ("openai", "anthropic"):
        module = sys.modules.get(sdk)
        if module is not None:
            found += [getattr(module, "NotGiven", None), getattr(module, "Omit", None)]
    return tuple(t for t in found if isinstance(t, type))


def _compressed(
    compression: Compression, key: str, rewrite: _Rewrite, kwargs: dict[str, Any], options: CallOptions
) -> dict[str, Any]:
    if not _applies(kwargs, key, options):
        return kwargs
    return rewrite(compression, kwargs, spec=options.spec, scope=options.scope, **call_context(kwargs))
