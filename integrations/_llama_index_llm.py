"""LlamaIndex: an LLM that compresses every prompt it is given, then calls the LLM it wraps.

>>> llm = PromptZipLLM(OpenAI(model="gpt-4o"), budget=2000)  # doctest: +SKIP
>>> engine = index.as_chat_engine(chat_mode="context", llm=llm)  # doctest: +SKIP

Where :class:`~promptzip.integrations.llama_index.PromptZipNodePostprocessor` compresses the retrieved nodes of one
query, this compresses the whole request a chat engine, a query engine or an agent sends: its messages are read
as the proxy and ``pz.wrap`` read a chat (OpenAI's form: each text block a text part, images and other blocks parts
the core never changes, ``tool_calls`` from ``additional_kwargs`` and from ``ToolCallBlock``s, ``tool_call_id``
from ``additional_kwargs``), so the instruction and the question stay whole, tool results are cut by their structure
and a conversation's sent prefix is kept. Messages keep their role, blocks and ``additional_kwargs``; only the text
of text blocks changes, and a message the core left alone is passed on as the same object. A ``complete`` prompt is
one whole prompt (its instruction and question kept). A chat with a role the core does not know (``chatbot``,
``model``) goes to the wrapped LLM as given.

Function calling (``chat_with_tools``, agents) works when the wrapped LLM is a ``FunctionCallingLLM``: the tools
are prepared and read back by it, and the chat it sends is compressed here. ``metadata`` is the wrapped LLM's.
The async methods compress in a worker thread. The callbacks and instrumentation events are the wrapped LLM's own.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    LLMMetadata,
    TextBlock,
    ToolCallBlock,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr, SerializeAsAny
from llama_index.core.callbacks import CallbackManager
from llama_index.core.llms import LLM
from llama_index.core.llms.function_calling import FunctionCallingLLM

from promptzip._chat_format import ROLES
from promptzip._errors import ConfigError, InputError
from promptzip._pipeline import Zipper
from promptzip._pricing import CachePricing, listed_pricing
from promptzip._types import Budget, Result
from promptzip.integrations._calls import (
    Compression,
    cache_pricing,
    check_pricing,
    check_scope,
    plain,
)
from promptzip.integrations._documents import check_settings, checked_list

__all__ = ["PromptZipLLM"]


class PromptZipLLM(FunctionCallingLLM):
    """Compress every prompt, then call ``llm`` (see the module docstring).

    ``budget`` (an int number of tokens or a :class:`promptzip.Budget`) or ``rate`` (the kept fraction) is the
    whole request's; ``preset``, ``target``, ``cache`` and ``zipper`` are as for the node postprocessor; ``scope``
    is ``"all"`` (the context in every message) or ``"history"`` (earlier turns only); ``pricing`` is the wrapped
    model's cache prices, which cache-stable history weighs: a model name or a :class:`promptzip.CachePricing`
    (``None``: the prices listed for the wrapped LLM's ``model_name``, else the target's). ``on_result`` is called
    with the :class:`promptzip.Result` of each request that was compressed (not of one sent as given), before the
    wrapped LLM is called; what it raises propagates, and the wrapped LLM is not called.
    """

    llm: SerializeAsAny[LLM]
    budget: int | None = None
    rate: float | None = None
    preset: str = "fast"
    target: str = "gpt-4o"
    cache: str | None = None
    scope: str = "all"
    on_result: Callable[[Result], object] | None = Field(default=None, exclude=True)
    """Called with the Result of each compressed request before it is sent (not serialized)."""

    _compression: Compression = PrivateAttr()
    _pricing: CachePricing | None = PrivateAttr(default=None)

    def __init__(
        self,
        llm: LLM,
        *,
        budget: int | Budget | None = None,
        rate: float | None = None,
        preset: str = "fast",
        target: str = "gpt-4o",
        cache: str | None = None,
        zipper: Zipper | None = None,
        scope: str = "all",
        pricing: str | CachePricing | None = None,
        on_result: Callable[[Result], object] | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        # Checked before pydantic sees the values, so a bad setting is a promptzip error, not a ValidationError.
        if not isinstance(llm, LLM):
            raise ConfigError(f"llm must be a LlamaIndex LLM, not {type(llm).__name__}")
        compression = check_settings(budget, rate, preset, target, cache, zipper, on_result)
        pricing = cache_pricing(check_pricing(pricing))
        spec = compression.spec
        fields: dict[str, Any] = {"llm": llm, "budget": spec.tokens, "rate": spec.rate, "preset": preset}
        fields |= {"target": target, "cache": cache, "scope": check_scope(scope), "on_result": on_result}
        if callback_manager is not None:
            fields["callback_manager"] = callback_manager
        super().__init__(**fields)
        self._compression = compression
        self._pricing = pricing if pricing is not None else listed_pricing(llm.metadata.model_name)

    @classmethod
    def class_name(cls) -> str:
        return "PromptZipLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return self.llm.metadata

    @property
    def spec(self) -> Budget:
        """The budget of each request."""
        return self._compression.spec

    # ------------------------------------------------------------------------------------------- chat
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self.llm.chat(self._messages(messages), **kwargs)

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return await self.llm.achat(await asyncio.to_thread(self._messages, messages), **kwargs)

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> Generator[ChatResponse, None, None]:
        return self.llm.stream_chat(self._messages(messages), **kwargs)

    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> AsyncGenerator[ChatResponse, None]:
        return await self.llm.astream_chat(await asyncio.to_thread(self._messages, messages), **kwargs)

    # ------------------------------------------------------------------------------------------- complete
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return self.llm.complete(self._prompt(prompt), formatted=formatted, **kwargs)

    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return await self.llm.acomplete(await asyncio.to_thread(self._prompt, prompt), formatted=formatted, **kwargs)

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> Generator[CompletionResponse, None, None]:
        return self.llm.stream_complete(self._prompt(prompt), formatted=formatted, **kwargs)

    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> AsyncGenerator[CompletionResponse, None]:
        prompt = await asyncio.to_thread(self._prompt, prompt)
        return await self.llm.astream_complete(prompt, formatted=formatted, **kwargs)

    # ------------------------------------------------------------------------------------------- tools
    def _prepare_chat_with_tools(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self._function_calling()._prepare_chat_with_tools(*args, **kwargs)

    def _validate_chat_with_tools_response(self, *args: Any, **kwargs: Any) -> ChatResponse:
        return self._function_calling()._validate_chat_with_tools_response(*args, **kwargs)

    def get_tool_calls_from_response(self, *args: Any, **kwargs: Any) -> Any:
        return self._function_calling().get_tool_calls_from_response(*args, **kwargs)

    def _function_calling(self) -> FunctionCallingLLM:
        if not isinstance(self.llm, FunctionCallingLLM):
            raise ConfigError(f"the wrapped {type(self.llm).__name__} does not call functions")
        return self.llm

    # ------------------------------------------------------------------------------------------- compression
    def _prompt(self, prompt: str) -> str:
        if not isinstance(prompt, str):
            raise InputError(f"prompt must be a str, not {type(prompt).__name__}")
        return self._compression.prompt(prompt)

    def _messages(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        given = checked_list(messages, ChatMessage, "messages", "LlamaIndex ChatMessage")
        if any(m.role.value not in ROLES for m in given):  # a chat the core cannot read goes as it is
            return given
        read = [_as_chat(m) for m in given]
        out = self._compression.chat(read, scope=self.scope, pricing=self._pricing)
        return [m if new is d else _written_back(m, new) for m, d, new in zip(given, read, out, strict=True)]


# ---------------------------------------------------------------------------------------------------- helpers
def _as_chat(message: ChatMessage) -> dict[str, Any]:
    """A ChatMessage as an OpenAI chat message whose content parts are its blocks, one for one, save its tool calls:
    those of ``additional_kwargs`` and its ``ToolCallBlock``s (LlamaIndex 0.14's own form) go in ``tool_calls``."""
    chat: dict[str, Any] = {"role": message.role.value}
    extra = message.additional_kwargs
    for key in ("name", "tool_call_id"):
        if isinstance(extra.get(key), str):
            chat[key] = extra[key]
    calls = _tool_calls(message)
    if calls:  # counted in the budget as sent: JSON
        chat["tool_calls"] = calls
    parts = [
        {"type": "text", "text": b.text} if isinstance(b, TextBlock) else {"type": "media"}
        for b in message.blocks
        if not isinstance(b, ToolCallBlock)
    ]
    if len(parts) == 1 and parts[0]["type"] == "text":
        chat["content"] = parts[0]["text"]
    elif parts:
        chat["content"] = parts
    else:
        chat["content"] = None if chat.get("tool_calls") else ""
    return chat


def _tool_calls(message: ChatMessage) -> Any:
    """The message's tool calls in OpenAI's form: ``additional_kwargs["tool_calls"]``, then each ``ToolCallBlock``
    not already among them. An LLM may keep one call in both places; counted twice, it would cost the budget twice."""
    given = message.additional_kwargs.get("tool_calls")
    calls = json.loads(json.dumps(plain(given), default=str)) if given else []
    blocks = [b for b in message.blocks if isinstance(b, ToolCallBlock)]
    if not blocks or not isinstance(calls, list):  # not a list: the core says what is wrong with it
        return calls
    ids = {c.get("id") for c in calls if isinstance(c, dict) and c.get("id")}
    for block in blocks:
        if block.tool_call_id and block.tool_call_id in ids:
            continue
        # Arguments as an OpenAI-style LLM sends them: a string as it is, a dict as JSON (default=str, as above, so
        # a value JSON has no form for, a date, is counted as its text rather than refused).
        kwargs = block.tool_kwargs
        arguments = kwargs if isinstance(kwargs, str) else json.dumps(plain(kwargs), default=str)
        function = {"name": block.tool_name, "arguments": arguments}
        calls.append({"id": block.tool_call_id, "type": "function", "function": function})
    return calls


def _written_back(message: ChatMessage, chat: dict[str, Any]) -> ChatMessage:
    """``message`` with the texts of ``chat`` (its compressed OpenAI form) in its text blocks; its ToolCallBlocks,
    which are no content part, stay as they were."""
    content = chat["content"]
    texts = [content] if isinstance(content, str) else [p.get("text") for p in content or ()]
    blocks = list(message.blocks)
    parts = [k for k, b in enumerate(blocks) if not isinstance(b, ToolCallBlock)]
    for k, t in zip(parts, texts, strict=True):
        b = blocks[k]
        if isinstance(b, TextBlock) and t is not None and t != b.text:
            blocks[k] = b.model_copy(update={"text": t})
    return message.model_copy(update={"blocks": blocks})
