"""Haystack adapters: a component that compresses the documents of one query under one budget, and one that
compresses a chat (the messages a ``ChatPromptBuilder`` or an agent hands to a chat generator).

>>> from promptzip.integrations.haystack import PromptZipDocumentCompressor  # doctest: +SKIP
>>> pipeline.add_component("compressor", PromptZipDocumentCompressor(budget=800, target="gpt-4o"))  # doctest: +SKIP
>>> pipeline.connect("retriever.documents", "compressor.documents")  # doctest: +SKIP
>>> pipeline.connect("compressor.documents", "prompt_builder.documents")  # doctest: +SKIP

All documents of a run go into one :meth:`promptzip.Zipper.compress` call, so they share one budget, measured in
the target tokenizer on the documents' contents joined with the Zipper's separator (a blank line); what the prompt
template writes around them comes on top. The query only scores relevance; the prompt places it. Documents that
already fit come back whole.

Each returned document is a new ``Document`` with the same id, score, blob and embeddings, its content replaced by
the pipeline's own output for it (``Result.outputs``), and its meta extended with provenance under
``meta["promptzip"]``: ``kept`` (the ``[start, end]`` character spans of the original content that survived),
``tokens_in``, ``tokens_out`` and ``relevance``. A document of which nothing was kept is dropped; one without text
content (a blob) passes as it is, and one with a blob keeps it (only text is compressed). The order is the
retriever's (Haystack's ``LostInTheMiddleRanker`` can follow for another).

``on_result`` (every component takes it) is called with the :class:`promptzip.Result` of each compression that
changed what the component returns (not of input that fit whole, which comes back as given), before it returns:
``Result.dropped`` is what the model will not see (a document of which nothing was kept is among it). What it
raises stops the run (inside a ``Pipeline``, as Haystack's ``PipelineRuntimeError`` caused by it).

``run_async`` runs the compression in a worker thread (Haystack's ``AsyncPipeline`` uses it). ``to_dict`` /
``from_dict`` carry the init parameters, ``on_result`` by its import path as Haystack carries a
``streaming_callback`` (a lambda or a nested function cannot be serialized: Haystack's ``SerializationError``, and
loading needs the callback's module allowed, ``Pipeline.loads(..., allowed_modules=[...])``); a component built
around a ready ``zipper`` cannot be serialized (a :class:`promptzip.ConfigError` says so). Importing
:mod:`promptzip` never imports Haystack; only importing this module does. promptzip's own errors propagate as
themselves; input that is not documents is an ``InputError``.

:class:`PromptZipChatCompressor` sits between the prompt builder and the chat generator
(``builder.prompt -> compressor.messages -> llm.messages``) and gives the budget to the whole request, as the
proxy and ``pz.wrap`` do: the core tells each message's instruction, context and question apart, cuts tool results
by their structure, and keeps a conversation's sent prefix (cache-stable history). Messages keep their role, name,
meta, tool calls and media; only text (and text tool results) changes, and a message the core left alone is
returned as the same object.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

try:
    from haystack import Document, component, default_from_dict, default_to_dict
    from haystack.core.serialization import component_to_dict
    from haystack.dataclasses import ChatMessage
    from haystack.tools import ToolsType
    from haystack.utils import deserialize_callable, deserialize_component_inplace, serialize_callable
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("promptzip.integrations.haystack needs haystack-ai: pip install 'promptzip[haystack]'") from exc

from promptzip._errors import ConfigError
from promptzip._inputs import check_text
from promptzip._pipeline import Zipper
from promptzip._pricing import CachePricing, listed_pricing
from promptzip._types import Budget, Result
from promptzip.integrations._calls import cache_pricing, check_pricing, check_scope
from promptzip.integrations._documents import check_settings, checked_list, compress_texts
from promptzip.integrations._haystack_chat import check_messages, compress_chat

__all__ = ["PROVENANCE_KEY", "PromptZipChatCompressor", "PromptZipChatGenerator", "PromptZipDocumentCompressor"]

PROVENANCE_KEY = "promptzip"


class _Settings:
    """What both components share: the settings, read once at construction, and the Zipper, built on first use
    or by ``warm_up``."""

    def __init__(
        self,
        budget: int | Budget | None,
        rate: float | None,
        preset: str,
        target: str,
        cache: str | None,
        zipper: Zipper | None,
        on_result: Callable[[Result], object] | None,
    ) -> None:
        self._compression = check_settings(budget, rate, preset, target, cache, zipper, on_result)
        self.on_result = on_result
        self.preset, self.target, self.cache = preset, target, cache
        self._given_zipper = zipper is not None

    @property
    def spec(self) -> Budget:
        """The budget of each run."""
        return self._compression.spec

    def warm_up(self) -> None:
        """Build the Zipper now (Haystack calls this before a pipeline runs), not at the first run."""
        _ = self._compression.zipper

    def _settings_dict(self, **more: Any) -> dict[str, Any]:
        """The init parameters for ``to_dict`` (a Budget as its two numbers, ``on_result``, where there is one, as
        its import path), with the component's own ``more``."""
        if self._given_zipper:
            raise ConfigError(
                f"a {type(self).__name__} built around a ready zipper cannot be serialized: "
                "give preset=, target= and cache= instead"
            )
        spec = self.spec
        if self.on_result is not None:
            more["on_result"] = serialize_callable(self.on_result)
        return default_to_dict(
            self, budget=spec.tokens, rate=spec.rate, preset=self.preset, target=self.target, cache=self.cache, **more
        )

    @staticmethod
    def _callback_loaded(data: dict[str, Any]) -> dict[str, Any]:
        """``data`` (what ``to_dict`` wrote) with ``on_result`` imported from its path, in place, for ``from_dict``."""
        params = data.get("init_parameters", {})
        if params.get("on_result"):
            params["on_result"] = deserialize_callable(params["on_result"])
        return data


@component
class PromptZipDocumentCompressor(_Settings):
    """Compress retrieved documents to one shared token budget (a Haystack component).

    Give ``budget`` (an int number of tokens or a :class:`promptzip.Budget`) or ``rate`` (the kept fraction), and
    either a ``preset`` (built on first use, or by ``warm_up``, with ``target`` and ``cache``; ``cache`` is a URL:
    ``sqlite:///path``, ``memory``, ``none``, None for the SQLite cache in the user's cache folder) or a ready
    ``zipper``. ``on_result`` gets the :class:`promptzip.Result` of each run that compressed (see the module
    docstring). The settings are read once, at construction.
    """

    def __init__(
        self,
        *,
        budget: int | Budget | None = None,
        rate: float | None = None,
        preset: str = "fast",
        target: str = "gpt-4o",
        cache: str | None = None,
        zipper: Zipper | None = None,
        on_result: Callable[[Result], object] | None = None,
    ) -> None:
        # Not super(): @component builds a new class, so the zero-argument form would name the wrong one.
        _Settings.__init__(self, budget, rate, preset, target, cache, zipper, on_result)

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document], query: str) -> dict[str, list[Document]]:
        """The documents that survive, compressed, in the given order, with provenance in their meta.

        :param documents: the retrieved documents.
        :param query: the question they should answer; it scores relevance and is not added to any document.
        :returns: ``{"documents": [...]}``.
        """
        docs, texts = _check_documents(documents)
        return {"documents": self._compress(docs, texts, _query(query))}

    @component.output_types(documents=list[Document])
    async def run_async(self, documents: list[Document], query: str) -> dict[str, list[Document]]:
        """:meth:`run` with the compression in a worker thread, so the event loop keeps serving while models run."""
        docs, texts = _check_documents(documents)
        return {"documents": await asyncio.to_thread(self._compress, docs, texts, _query(query))}

    def to_dict(self) -> dict[str, Any]:
        """The init parameters, for ``Pipeline.dumps``; a Budget is written as its two numbers."""
        return self._settings_dict()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptZipDocumentCompressor:
        """The component that :meth:`to_dict` wrote (``Pipeline.loads``)."""
        return default_from_dict(cls, cls._callback_loaded(data))

    def _compress(self, docs: list[Document], texts: list[str | None], query: str | None) -> list[Document]:
        given = [t or "" for t in texts]
        pieces = compress_texts(self._compression, given, query, what="documents")
        out: list[Document] = []
        for doc, text, piece in zip(docs, texts, pieces, strict=True):
            if piece is None:  # no text to compress: a blob-only document passes as it is, an empty one is dropped
                if text is None or doc.blob is not None:
                    out.append(doc)
            elif piece.text or doc.blob is not None:  # only text is compressed: a document's blob always stays
                meta = {**doc.meta, PROVENANCE_KEY: piece.provenance()}
                out.append(dataclasses.replace(doc, content=piece.text, meta=meta))  # same id: it is passed on
        return out


class _ChatSettings(_Settings):
    """What both chat doors share besides the settings: the scope and the chat model's cache prices."""

    def __init__(
        self,
        budget: int | Budget | None,
        rate: float | None,
        preset: str,
        target: str,
        cache: str | None,
        zipper: Zipper | None,
        scope: str,
        pricing: str | CachePricing | dict[str, Any] | None,
        on_result: Callable[[Result], object] | None,
    ) -> None:
        _Settings.__init__(self, budget, rate, preset, target, cache, zipper, on_result)
        self.scope = check_scope(scope)
        if isinstance(pricing, dict):  # as to_dict wrote it
            try:
                pricing = CachePricing(**pricing)
            except TypeError as exc:  # a missing or unknown field
                raise ConfigError(f"pricing as a dict takes the fields of promptzip.CachePricing: {exc}") from None
        self.pricing = check_pricing(pricing)

    def _chat_dict(self, **more: Any) -> dict[str, Any]:
        """The init parameters (a Budget as its two numbers, a CachePricing as its fields), with ``more``."""
        pricing = self.pricing
        pricing_data = dataclasses.asdict(pricing) if isinstance(pricing, CachePricing) else pricing
        return self._settings_dict(scope=self.scope, pricing=pricing_data, **more)

    def _prices(self) -> CachePricing | None:
        return cache_pricing(self.pricing)

    def _compress(self, messages: list[ChatMessage]) -> list[ChatMessage]:
        return compress_chat(self._compression, messages, scope=self.scope, pricing=self._prices())


@component
class PromptZipChatCompressor(_ChatSettings):
    """Compress a chat to a token budget for the whole request (a Haystack component; see the module docstring).

    ``budget``, ``rate``, ``preset``, ``target``, ``cache`` and ``zipper`` are as for
    :class:`PromptZipDocumentCompressor`; ``scope`` is ``"all"`` (the context in every message) or ``"history"``
    (earlier turns only); ``pricing`` is the chat model's cache prices, which cache-stable history weighs: a model
    name (``"claude-sonnet-4-5"``) or a :class:`promptzip.CachePricing`; ``None``: the target's. ``on_result`` gets
    the :class:`promptzip.Result` of each chat that was compressed (not of one returned as given).
    """

    def __init__(
        self,
        *,
        budget: int | Budget | None = None,
        rate: float | None = None,
        preset: str = "fast",
        target: str = "gpt-4o",
        cache: str | None = None,
        zipper: Zipper | None = None,
        scope: str = "all",
        pricing: str | CachePricing | dict[str, Any] | None = None,
        on_result: Callable[[Result], object] | None = None,
    ) -> None:
        # Not super(): @component builds a new class, so the zero-argument form would name the wrong one.
        _ChatSettings.__init__(self, budget, rate, preset, target, cache, zipper, scope, pricing, on_result)

    @component.output_types(messages=list[ChatMessage])
    def run(self, messages: list[ChatMessage]) -> dict[str, list[ChatMessage]]:
        """The chat with its context compressed to the budget.

        :param messages: the chat, as a prompt builder or an agent hands it to a chat generator.
        :returns: ``{"messages": [...]}``, one message for each given, in order.
        """
        return {"messages": self._compress(check_messages(messages))}

    @component.output_types(messages=list[ChatMessage])
    async def run_async(self, messages: list[ChatMessage]) -> dict[str, list[ChatMessage]]:
        """:meth:`run` with the compression in a worker thread, so the event loop keeps serving while models run."""
        return {"messages": await asyncio.to_thread(self._compress, check_messages(messages))}

    def to_dict(self) -> dict[str, Any]:
        """The init parameters, for ``Pipeline.dumps``; a Budget is written as its two numbers, a CachePricing as
        its fields."""
        return self._chat_dict()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptZipChatCompressor:
        """The component that :meth:`to_dict` wrote (``Pipeline.loads``)."""
        return default_from_dict(cls, cls._callback_loaded(data))


@component
class PromptZipChatGenerator(_ChatSettings):
    """A chat generator that compresses every request before the one it wraps sends it (a Haystack component).

    Where a chat compressor cannot sit, because the generator is called inside a loop the pipeline does not see (a
    Haystack ``Agent``, which calls its ``chat_generator`` once per step with the whole conversation so far), wrap
    the generator instead: ``Agent(chat_generator=PromptZipChatGenerator(OpenAIChatGenerator(...), rate=0.3),
    tools=[...])``. Each step's request is compressed as :class:`PromptZipChatCompressor` compresses it, so tool
    results are cut by their structure and the prefix sent at one step is sent byte for byte at the next
    (cache-stable history); the replies, tool calls and streaming are the wrapped generator's own, and the agent
    keeps its full history (only what goes out is compressed).

    ``chat_generator`` is any Haystack chat generator; the other parameters are as for
    :class:`PromptZipChatCompressor`, except that ``pricing=None`` reads the wrapped generator's ``model`` (its listed
    cache prices), else the target's, and that ``on_result`` is called before the wrapped generator runs: what it
    raises stops the step, and nothing is sent. ``warm_up`` and ``close`` reach the wrapped generator too.
    """

    def __init__(
        self,
        chat_generator: Any,
        *,
        budget: int | Budget | None = None,
        rate: float | None = None,
        preset: str = "fast",
        target: str = "gpt-4o",
        cache: str | None = None,
        zipper: Zipper | None = None,
        scope: str = "all",
        pricing: str | CachePricing | dict[str, Any] | None = None,
        on_result: Callable[[Result], object] | None = None,
    ) -> None:
        run = getattr(chat_generator, "run", None)
        if not callable(run):
            raise ConfigError(
                f"chat_generator must be a Haystack chat generator (a component with run), "
                f"not {type(chat_generator).__name__}"
            )
        _ChatSettings.__init__(self, budget, rate, preset, target, cache, zipper, scope, pricing, on_result)
        self.chat_generator = chat_generator
        self._accepts = frozenset(inspect.signature(run).parameters)

    @component.output_types(replies=list[ChatMessage])
    def run(
        self,
        messages: list[ChatMessage] | str,
        streaming_callback: Callable[..., Any] | None = None,
        generation_kwargs: dict[str, Any] | None = None,
        *,
        tools: ToolsType | None = None,
    ) -> dict[str, Any]:
        """The wrapped generator's answer to the compressed ``messages``.

        :param messages: the chat (a str is one user message, as Haystack's generators read it).
        :param streaming_callback: passed on; it sees the wrapped generator's chunks.
        :param generation_kwargs: passed on.
        :param tools: passed on (an agent gives its tools at each step).
        :returns: what the wrapped generator returns (``{"replies": [...]}``, and its other outputs).
        """
        given = self._given(streaming_callback, generation_kwargs, tools)
        return dict(self.chat_generator.run(messages=self._compress(_chat_messages(messages)), **given))

    @component.output_types(replies=list[ChatMessage])
    async def run_async(
        self,
        messages: list[ChatMessage] | str,
        streaming_callback: Callable[..., Any] | None = None,
        generation_kwargs: dict[str, Any] | None = None,
        *,
        tools: ToolsType | None = None,
    ) -> dict[str, Any]:
        """:meth:`run` with the compression in a worker thread and the wrapped generator's ``run_async`` (its
        ``run``, in a thread, where it has none)."""
        given = self._given(streaming_callback, generation_kwargs, tools)
        compressed = await asyncio.to_thread(self._compress, _chat_messages(messages))
        run_async = getattr(self.chat_generator, "run_async", None)
        if run_async is not None:
            return dict(await run_async(messages=compressed, **given))
        return dict(await asyncio.to_thread(self.chat_generator.run, messages=compressed, **given))

    def warm_up(self) -> None:
        """Build the Zipper, and warm the wrapped generator up where it can be."""
        _Settings.warm_up(self)
        if hasattr(self.chat_generator, "warm_up"):
            self.chat_generator.warm_up()

    def close(self) -> None:
        """Close the wrapped generator's clients, where it has any."""
        if hasattr(self.chat_generator, "close"):
            self.chat_generator.close()

    async def close_async(self) -> None:
        """Close the wrapped generator's clients, where it has any (its ``close_async``, else its ``close``)."""
        if hasattr(self.chat_generator, "close_async"):
            await self.chat_generator.close_async()
        else:
            self.close()

    def to_dict(self) -> dict[str, Any]:
        """The init parameters, the wrapped generator as its own ``to_dict``, for ``Pipeline.dumps`` and
        ``Agent.to_dict``."""
        data = self._chat_dict()  # first: a ready zipper is refused before the wrapped generator is read
        data["init_parameters"]["chat_generator"] = component_to_dict(obj=self.chat_generator, name="chat_generator")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptZipChatGenerator:
        """The component that :meth:`to_dict` wrote, the wrapped generator rebuilt from its own dict."""
        deserialize_component_inplace(data["init_parameters"], key="chat_generator")
        return default_from_dict(cls, cls._callback_loaded(data))

    def _prices(self) -> CachePricing | None:
        if self.pricing is None:  # the prices of the model the wrapped generator calls, where they are listed
            model = getattr(self.chat_generator, "model", None)
            return listed_pricing(model) if isinstance(model, str) else None
        return cache_pricing(self.pricing)

    def _given(self, streaming_callback: object, generation_kwargs: object, tools: object) -> dict[str, Any]:
        """The arguments given, to pass on; one the wrapped generator does not take is a ConfigError naming it."""
        given = {
            k: v
            for k, v in (
                ("streaming_callback", streaming_callback),
                ("generation_kwargs", generation_kwargs),
                ("tools", tools),
            )
            if v is not None
        }
        for name in given:
            if name not in self._accepts:
                raise ConfigError(f"{type(self.chat_generator).__name__}.run does not take {name}")
        return given


# ---------------------------------------------------------------------------------------------------- helpers
def _check_documents(documents: object) -> tuple[list[Document], list[str | None]]:
    docs = checked_list(documents, Document, "documents", "haystack Document")
    texts: list[str | None] = []
    for i, doc in enumerate(docs):
        content = doc.content
        texts.append(None if content is None else check_text(content, f"documents[{i}].content", allow_empty=True))
    return docs, texts


def _query(query: object) -> str | None:
    return check_text(query, "query", allow_empty=True).strip() or None


def _chat_messages(messages: object) -> list[ChatMessage]:
    """The chat a generator was given: a str is one user message, as Haystack's own generators read it."""
    return [ChatMessage.from_user(messages)] if isinstance(messages, str) else check_messages(messages)
