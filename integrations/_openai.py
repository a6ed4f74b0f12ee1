"""OpenAI-style requests: compress a chat's ``messages`` or a Responses ``input``, and the wrapped SDK client.

The wrapped client is a proxy: attribute access goes to the user's client, except ``chat.completions.create`` /
``.parse`` and ``responses.create`` / ``.parse``, which compress the request first. The user's client is never
changed. Requests with ``stream=True`` are sent exactly as given, uncompressed; so are the SDK's other entry points
(``with_raw_response``, ``with_streaming_response``, ``chat.completions.stream``, ``beta``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from promptzip._cache import Cache
from promptzip._errors import ConfigError, InputError
from promptzip._pipeline import Zipper
from promptzip._registry import registries
from promptzip._tokenizers import Tokenizer
from promptzip._types import Budget, Result

__all__ = ["Compression", "WrappedClient", "compressed_text", "fits_whole"]

_TEXT_PARTS = ("text", "input_text", "output_text")


class Compression:
    """A budget and a Zipper built on first use (or the one given), shared by every call that holds it."""

    def __init__(
        self,
        *,
        budget: Budget | int | float | None,
        rate: float | None,
        target: str | Tokenizer,
        preset: str,
        cache: str | Cache | None,
        zipper: Zipper | None,
    ) -> None:
        self.spec = Budget.coerce(budget, rate=rate)
        if zipper is not None and not isinstance(zipper, Zipper):
            raise ConfigError(f"zipper must be a promptzip.Zipper, not {type(zipper).__name__}")
        if zipper is None:
            registries.presets.get(preset)  # an unknown preset fails now, not at the first call
        self._preset, self._target, self._cache = preset, target, cache
        self._zipper = zipper
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Compression(spec={self.spec!r}, preset={self._preset!r}, target={self._target!r})"

    @property
    def zipper(self) -> Zipper:
        if self._zipper is None:
            with self._lock:
                if self._zipper is None:
                    self._zipper = Zipper.from_preset(self._preset, target=self._target, cache=self._cache)
        return self._zipper

    def chat(self, messages: object) -> list[Any]:
        """Compressed chat messages; messages whose content did not change are returned as given."""
        items = _as_list(messages, "messages")
        dicts = [_as_mapping(m, f"messages[{i}]") for i, m in enumerate(items)]
        result = self.zipper.compress_messages(dicts, budget=self.spec)
        if fits_whole(result):
            return items
        out = result.messages or ()
        return [
            m if new.get("content") == d.get("content") else new for m, d, new in zip(items, dicts, out, strict=True)
        ]

    def responses_input(self, value: object) -> str | list[Any]:
        """A Responses API ``input``: a string is compressed as text, a list of items as a chat (items that are
        not messages, such as function calls and their outputs, are counted and sent unchanged)."""
        if isinstance(value, bytearray):
            value = bytes(value)
        if isinstance(value, str | bytes):
            return compressed_text(self.zipper.compress(value, budget=self.spec))
        items = _as_list(value, "input")
        dicts = [_as_mapping(m, f"input[{i}]") for i, m in enumerate(items)]
        chat = [_item_as_message(d, i) for i, d in enumerate(dicts)]
        result = self.zipper.compress_messages(chat, budget=self.spec)
        if fits_whole(result):
            return items
        out = result.messages or ()
        return [_item_back(item, d, c, new) for item, d, c, new in zip(items, dicts, chat, out, strict=True)]


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


class WrappedClient(_Delegate):
    """An ``openai.OpenAI`` / ``AsyncOpenAI`` whose chat and Responses calls compress their prompt first."""

    def __init__(self, client: Any, compression: Compression, *, is_async: bool) -> None:
        super().__init__(client, compression)
        self._async = is_async
        self.chat = _Chat(client.chat, compression, is_async=is_async)
        self.responses = _Endpoint(client.responses, compression, "input", compression.responses_input, is_async)

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
    def __init__(self, chat: Any, compression: Compression, *, is_async: bool) -> None:
        super().__init__(chat, compression)
        self.completions = _Endpoint(chat.completions, compression, "messages", compression.chat, is_async)


class _Endpoint(_Delegate):
    """A resource whose ``create``/``parse`` rewrite one keyword argument before calling the real method."""

    def __init__(
        self, resource: Any, compression: Compression, key: str, rewrite: Callable[[Any], Any], is_async: bool
    ) -> None:
        super().__init__(resource, compression)
        for name in ("create", "parse"):
            real = getattr(resource, name, None)
            if real is not None:
                setattr(self, name, _rewriting(real, key, rewrite, is_async))


def _rewriting(real: Callable[..., Any], key: str, rewrite: Callable[[Any], Any], is_async: bool) -> Callable[..., Any]:
    if is_async:

        @functools.wraps(real)
        async def acall(*args: Any, **kwargs: Any) -> Any:
            if key in kwargs and kwargs.get("stream") is not True:
                kwargs[key] = await asyncio.to_thread(rewrite, kwargs[key])
            return await real(*args, **kwargs)

        return acall

    @functools.wraps(real)
    def call(*args: Any, **kwargs: Any) -> Any:
        if key in kwargs and kwargs.get("stream") is not True:
            kwargs[key] = rewrite(kwargs[key])
        return real(*args, **kwargs)

    return call


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
