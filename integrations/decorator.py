"""Compress around LLM calls: a decorator for your own functions, and a wrapped OpenAI or Anthropic SDK client.

>>> import promptzip as pz
>>> @pz.compress_call(budget=2000, arg="messages")  # doctest: +SKIP
... def ask(messages: list[dict[str, str]]) -> str:
...     return client.chat.completions.create(model="gpt-4o", messages=messages).choices[0].message.content
>>> client = pz.wrap(openai.OpenAI(), budget=2000)  # doctest: +SKIP

Both return new objects; the decorated function and the user's client are left as they were.

:func:`compress_call` rewrites one argument of each call, given by position or keyword: a ``str`` (or UTF-8
``bytes``) prompt through :meth:`promptzip.Zipper.compress_prompt` (its instruction and question are kept, only its
context shrinks; with ``question=`` the prompt becomes its compressed context alone), a list of chat messages through
:meth:`promptzip.Zipper.compress_messages` (``scope="all"`` compresses the context wherever it is, the system
message and last user turn included; ``scope="history"`` only earlier turns; tool calls and images stay verbatim).
An argument that is not passed, or is ``None``, is left alone; anything else is an :class:`promptzip.InputError`.

:func:`wrap` compresses ``messages`` of ``chat.completions``, ``input`` of ``responses`` and an Anthropic client's
``messages`` requests: ``create`` (streaming requests included), ``parse``, the ``stream(...)`` helpers, and their
``with_raw_response`` / ``with_streaming_response`` forms; what comes back, a stream included, is the SDK's own,
untouched. Each of these methods takes a ``promptzip=`` keyword for that call alone, removed before the SDK sees
it::

    client.chat.completions.create(model="gpt-4o", messages=messages, promptzip=False)  # sent as given
    client.chat.completions.create(model="gpt-4o", messages=messages, promptzip=800)  # this call's budget
    client.responses.create(model="gpt-4o", input=items, promptzip={"rate": 0.2, "scope": "history"})

The budget covers the prompt in the target tokenizer: a chat's ``messages``; a Responses request's
``instructions`` (a system message) and ``input`` (a string is one user turn); an Anthropic request's ``system`` and
``messages``. Each is read by the proxy's dialect for its API (:mod:`promptzip.integrations._dialects`).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from promptzip._cache import Cache
from promptzip._errors import ConfigError, InputError
from promptzip._pipeline import Zipper
from promptzip._tokenizers import Tokenizer
from promptzip._types import Budget, Result
from promptzip.integrations._calls import Compression
from promptzip.integrations._clients import ANTHROPIC, OPENAI, Sdk, WrappedClient

if TYPE_CHECKING:
    from anthropic import Anthropic, AsyncAnthropic
    from openai import AsyncOpenAI, OpenAI

__all__ = ["compress_call", "wrap"]

P = ParamSpec("P")
R = TypeVar("R")
ClientT = TypeVar("ClientT", bound="OpenAI | AsyncOpenAI | Anthropic | AsyncAnthropic")

_NOT_NAMEABLE = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def compress_call(
    *,
    budget: Budget | int | float | None = None,
    rate: float | None = None,
    target: str | Tokenizer = "gpt-4o",
    arg: str = "messages",
    preset: str = "fast",
    question: str | None = None,
    cache: str | Cache | None = None,
    zipper: Zipper | None = None,
    scope: str = "all",
    on_result: Callable[[Result], object] | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a sync or async function so that its ``arg`` argument is compressed before each call.

    ``question`` names another parameter whose value (its default, when a call does not pass it) is the question
    relevance is measured against; a prompt then becomes only its compressed context, and the budget covers that
    context plus the question. A chat is read as :func:`wrap` reads one: dicts, or SDK message objects (a reply
    appended), the unchanged ones passed on as given. ``zipper`` uses a ready Zipper instead of building ``preset``
    for ``target`` on the first call. ``scope`` says where a chat's context is compressed: ``"all"`` (every message)
    or ``"history"`` (earlier turns only). ``on_result`` sees what the model does not get: it is called with the
    :class:`promptzip.Result` of each call that was compressed (``Result.dropped``, ``Result.tokens_in``/
    ``tokens_out``), in the thread that compressed it, before the call.

    Raises :class:`promptzip.ConfigError` (or ``BudgetError``) at decoration time for a bad setup, such as a
    function without a parameter named ``arg`` or an unknown ``scope``.
    """
    compression = Compression(
        budget=budget,
        rate=rate,
        target=target,
        preset=preset,
        cache=cache,
        zipper=zipper,
        scope=scope,
        on_result=on_result,
    )

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        signature = _signature(fn)
        for name in (arg, question):
            if name is not None:
                _check_parameter(fn, signature, name)

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def acall(*args: Any, **kwargs: Any) -> Any:
                bound = _bind(signature, args, kwargs)
                if bound is None or bound.arguments.get(arg) is None:
                    return await fn(*args, **kwargs)
                q = _question(bound, question)
                bound.arguments[arg] = await asyncio.to_thread(_rewrite, compression, bound.arguments[arg], q, fn, arg)
                return await fn(*bound.args, **bound.kwargs)

            return cast(Callable[P, R], acall)

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            bound = _bind(signature, args, kwargs)
            if bound is None or bound.arguments.get(arg) is None:
                return fn(*args, **kwargs)
            q = _question(bound, question)
            bound.arguments[arg] = _rewrite(compression, bound.arguments[arg], q, fn, arg)
            return fn(*bound.args, **bound.kwargs)

        return cast(Callable[P, R], call)

    return decorate


def wrap(
    client: ClientT,
    *,
    budget: Budget | int | float | None = None,
    rate: float | None = None,
    target: str | Tokenizer = "gpt-4o",
    preset: str = "fast",
    cache: str | Cache | None = None,
    zipper: Zipper | None = None,
    scope: str = "all",
    on_result: Callable[[Result], object] | None = None,
) -> ClientT:
    """A client that compresses its prompts before sending them: an ``openai.OpenAI``/``AsyncOpenAI`` client's chat,
    Responses and legacy Completions calls, an ``anthropic.Anthropic``/``AsyncAnthropic`` client's Messages calls
    (read as the proxy's ``/v1/messages`` route reads them: ``cache_control`` kept, tool results cut by their
    structure). ``client`` itself is unchanged.

    The result has the client's type for editors and type checkers, but it is a proxy: ``isinstance`` checks
    against the SDK's client class do not hold for it. ``with_options``/``copy`` return wrapped clients too.
    ``scope`` says where a chat's context is compressed: ``"all"`` (every message, the system message and the
    last user turn included) or ``"history"`` (earlier turns only; a Responses ``input`` string is the last user turn).
    ``on_result`` is called with the :class:`promptzip.Result` of each call that was compressed (what was kept and
    ``Result.dropped``, what the model does not get), in the thread that compressed it, before the call is sent.

    Per call, ``promptzip=`` overrides these settings: ``False`` (or ``{"disable": True}``) sends the call as
    given, an int or a :class:`promptzip.Budget` replaces the budget, and a dict sets any of ``budget``, ``rate``
    and ``scope``. A bad value raises :class:`promptzip.BudgetError` or ``ConfigError`` before anything is sent.
    """
    if isinstance(client, WrappedClient):
        raise ConfigError("this client is already wrapped by promptzip")
    found = _sdk_of(client)
    if found is None:
        raise ConfigError(
            "wrap() takes an openai.OpenAI, openai.AsyncOpenAI, anthropic.Anthropic or anthropic.AsyncAnthropic "
            f"client, not {type(client).__name__}"
        )
    sdk, is_async = found
    compression = Compression(
        budget=budget,
        rate=rate,
        target=target,
        preset=preset,
        cache=cache,
        zipper=zipper,
        scope=scope,
        on_result=on_result,
    )
    return cast(ClientT, WrappedClient(client, compression, sdk=sdk, is_async=is_async))


_CLIENTS = ((OPENAI, "OpenAI", "AsyncOpenAI"), (ANTHROPIC, "Anthropic", "AsyncAnthropic"))


def _sdk_of(client: object) -> tuple[Sdk, bool] | None:
    """The SDK ``client`` belongs to, and whether it is async. A client's SDK is imported already, so this imports
    none (an SDK that is not installed is simply not the client's)."""
    for sdk, sync_name, async_name in _CLIENTS:
        module = sys.modules.get(sdk.name)
        if module is None:
            continue
        if isinstance(client, getattr(module, async_name)):
            return sdk, True
        if isinstance(client, getattr(module, sync_name)):
            return sdk, False
    return None


# ---------------------------------------------------------------------------------------------------- helpers
def _signature(fn: object) -> inspect.Signature:
    if not callable(fn):
        raise ConfigError(f"compress_call decorates a function, not {type(fn).__name__}")
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot read the parameters of {fn!r}: {exc}") from exc


def _check_parameter(fn: object, signature: inspect.Signature, name: str) -> None:
    parameter = signature.parameters.get(name)
    if parameter is None:
        names = ", ".join(signature.parameters) or "none"
        raise ConfigError(f"{_name(fn)}() has no parameter named {name!r} (its parameters: {names})")
    if parameter.kind in _NOT_NAMEABLE:
        raise ConfigError(f"{_name(fn)}() parameter {name!r} is *args or **kwargs; name a single parameter")


def _bind(
    signature: inspect.Signature, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> inspect.BoundArguments | None:
    """The call's arguments, or None when they do not fit the signature (the function then raises its own
    TypeError, before its body runs)."""
    try:
        return signature.bind(*args, **kwargs)
    except TypeError:
        return None


def _question(bound: inspect.BoundArguments, name: str | None) -> str | None:
    """The question argument, its default when the call does not pass it (``bound`` holds only what was passed, so
    that an ``arg`` not passed is left alone)."""
    if name is None:
        return None
    default = bound.signature.parameters[name].default
    value = bound.arguments.get(name, None if default is inspect.Parameter.empty else default)
    if value is not None and not isinstance(value, str):
        raise InputError(f"the question argument {name!r} must be a str, not {type(value).__name__}")
    return value


def _rewrite(compression: Compression, value: object, question: str | None, fn: object, arg: str) -> Any:
    """The compressed argument: the prompt with its context compressed (only that context when a question is
    given apart), or the compressed messages; as given when they fit."""
    if isinstance(value, bytearray):
        value = bytes(value)
    if isinstance(value, str | bytes):
        return compression.prompt(value, question=question)
    if isinstance(value, Sequence):  # read as wrap() reads a chat: dicts, or SDK objects such as a reply appended
        chat = compression.chat(value, question=question)
        return value if all(new is old for new, old in zip(chat, value, strict=True)) else chat
    raise InputError(
        f"{_name(fn)}() argument {arg!r} must be a str prompt or a list of chat messages, not {type(value).__name__}"
    )


def _name(fn: object) -> str:
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn))
