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

``run_async`` runs the compression in a worker thread (Haystack's ``AsyncPipeline`` uses it). ``to_dict`` /
``from_dict`` carry the init parameters; a component built around a ready ``zipper`` cannot be serialized (a
:class:`promptzip.ConfigError` says so). Importing :mod:`promptzip` never imports Haystack; only importing this
module does. promptzip's own errors propagate as themselves; input that is not documents is an ``InputError``.

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
import json
from typing import Any

try:
    from haystack import Document, component, default_from_dict, default_to_dict
    from haystack.dataclasses import ChatMessage
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("promptzip.integrations.haystack needs haystack-ai: pip install 'promptzip[haystack]'") from exc

from promptzip._errors import ConfigError, InputError
from promptzip._inputs import check_text
from promptzip._pipeline import Zipper
from promptzip._pricing import CachePricing
from promptzip._types import Budget
from promptzip.integrations._calls import cache_pricing, check_pricing, check_scope
from promptzip.integrations._documents import check_settings, checked_list, compress_texts

__all__ = ["PROVENANCE_KEY", "PromptZipChatCompressor", "PromptZipDocumentCompressor"]

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
    ) -> None:
        self._compression = check_settings(budget, rate, preset, target, cache, zipper)
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
        """The init parameters for ``to_dict`` (a Budget as its two numbers), with the component's own ``more``."""
        if self._given_zipper:
            raise ConfigError(
                f"a {type(self).__name__} built around a ready zipper cannot be serialized: "
                "give preset=, target= and cache= instead"
            )
        spec = self.spec
        return default_to_dict(
            self, budget=spec.tokens, rate=spec.rate, preset=self.preset, target=self.target, cache=self.cache, **more
        )


@component
class PromptZipDocumentCompressor(_Settings):
    """Compress retrieved documents to one shared token budget (a Haystack component).

    Give ``budget`` (an int number of tokens or a :class:`promptzip.Budget`) or ``rate`` (the kept fraction), and
    either a ``preset`` (built on first use, or by ``warm_up``, with ``target`` and ``cache``; ``cache`` is a URL:
    ``sqlite:///path``, ``memory``, ``none``, None for the SQLite cache in the user's cache folder) or a ready
    ``zipper``. The settings are read once, at construction.
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
    ) -> None:
        # Not super(): @component builds a new class, so the zero-argument form would name the wrong one.
        _Settings.__init__(self, budget, rate, preset, target, cache, zipper)

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
        return default_from_dict(cls, data)

    def _compress(self, docs: list[Document], texts: list[str | None], query: str | None) -> list[Document]:
        pieces = compress_texts(self._compression.zipper, [t or "" for t in texts], self.spec, query, what="documents")
        out: list[Document] = []
        for doc, text, piece in zip(docs, texts, pieces, strict=True):
            if piece is None:  # no text to compress: a blob-only document passes as it is, an empty one is dropped
                if text is None or doc.blob is not None:
                    out.append(doc)
            elif piece.text or doc.blob is not None:  # only text is compressed: a document's blob always stays
                meta = {**doc.meta, PROVENANCE_KEY: piece.provenance()}
                out.append(dataclasses.replace(doc, content=piece.text, meta=meta))  # same id: it is passed on
        return out


@component
class PromptZipChatCompressor(_Settings):
    """Compress a chat to a token budget for the whole request (a Haystack component; see the module docstring).

    ``budget``, ``rate``, ``preset``, ``target``, ``cache`` and ``zipper`` are as for
    :class:`PromptZipDocumentCompressor`; ``scope`` is ``"all"`` (the context in every message) or ``"history"``
    (earlier turns only); ``pricing`` is the chat model's cache prices, which cache-stable history weighs: a model
    name (``"claude-sonnet-4-5"``) or a :class:`promptzip.CachePricing`; ``None``: the target's.
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
    ) -> None:
        # Not super(): @component builds a new class, so the zero-argument form would name the wrong one.
        _Settings.__init__(self, budget, rate, preset, target, cache, zipper)
        self.scope = check_scope(scope)
        if isinstance(pricing, dict):  # as to_dict wrote it
            pricing = CachePricing(**pricing)
        self.pricing = check_pricing(pricing)

    @component.output_types(messages=list[ChatMessage])
    def run(self, messages: list[ChatMessage]) -> dict[str, list[ChatMessage]]:
        """The chat with its context compressed to the budget.

        :param messages: the chat, as a prompt builder or an agent hands it to a chat generator.
        :returns: ``{"messages": [...]}``, one message for each given, in order.
        """
        return {"messages": self._compress(_check_messages(messages))}

    @component.output_types(messages=list[ChatMessage])
    async def run_async(self, messages: list[ChatMessage]) -> dict[str, list[ChatMessage]]:
        """:meth:`run` with the compression in a worker thread, so the event loop keeps serving while models run."""
        return {"messages": await asyncio.to_thread(self._compress, _check_messages(messages))}

    def to_dict(self) -> dict[str, Any]:
        """The init parameters, for ``Pipeline.dumps``; a Budget is written as its two numbers, a CachePricing as
        its fields."""
        pricing = self.pricing
        return self._settings_dict(
            scope=self.scope, pricing=dataclasses.asdict(pricing) if isinstance(pricing, CachePricing) else pricing
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptZipChatCompressor:
        """The component that :meth:`to_dict` wrote (``Pipeline.loads``)."""
        return default_from_dict(cls, data)

    def _compress(self, messages: list[ChatMessage]) -> list[ChatMessage]:
        read = [_as_chat(m, i) for i, m in enumerate(messages)]
        out = self._compression.chat([d for d, _ in read], scope=self.scope, pricing=cache_pricing(self.pricing))
        return [
            message if new is given else _written_back(message, slots, new)
            for message, (given, slots), new in zip(messages, read, out, strict=True)
        ]


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


def _check_messages(messages: object) -> list[ChatMessage]:
    return checked_list(messages, ChatMessage, "messages", "haystack ChatMessage")


def _as_chat(message: ChatMessage, i: int) -> tuple[dict[str, Any], list[int]]:
    """A ChatMessage as an OpenAI chat message, and for each of its text pieces (the whole content when it is one
    text, else each content part) the index of the ChatMessage content item it stands for. Tool calls go in
    ``tool_calls`` and media as parts the core never changes; a tool result is the ``tool`` message's content."""
    data = message.to_dict()
    chat: dict[str, Any] = {"role": data["role"]}
    if data.get("name"):
        chat["name"] = data["name"]
    parts: list[dict[str, Any]] = []
    slots: list[int] = []
    calls: list[dict[str, Any]] = []
    for k, item in enumerate(data["content"]):
        if "text" in item:
            parts.append({"type": "text", "text": item["text"]})
            slots.append(k)
        elif "tool_call" in item:
            calls.append(_openai_call(item["tool_call"]))
        elif "tool_call_result" in item:
            result = item["tool_call_result"]
            chat["tool_call_id"] = result["origin"].get("id")
            value = result["result"]
            if isinstance(value, str):
                parts.append({"type": "text", "text": value})
            else:  # a list of text, image and file parts: only the text parts are read
                parts.extend({"type": "text", "text": p["text"]} if "text" in p else {"type": "media"} for p in value)
            slots += [k] * (len(parts) - len(slots))
        else:  # an image, a file, reasoning: sent as it is
            parts.append({"type": "media"})
            slots.append(k)
    if calls:
        chat["tool_calls"] = calls
    if len(parts) == 1 and parts[0]["type"] == "text":
        chat["content"] = parts[0]["text"]
    elif parts:
        chat["content"] = parts
    elif not calls:
        raise InputError(f"messages[{i}] has no content")
    else:
        chat["content"] = None
    return chat, slots


def _openai_call(call: dict[str, Any]) -> dict[str, Any]:
    arguments = json.dumps(call.get("arguments") or {}, ensure_ascii=False)
    return {"id": call.get("id"), "type": "function", "function": {"name": call["tool_name"], "arguments": arguments}}


def _written_back(message: ChatMessage, slots: list[int], chat: dict[str, Any]) -> ChatMessage:
    """``message`` with the texts of ``chat`` (its compressed OpenAI form) in place of its own."""
    content = chat["content"]
    texts = [content] if isinstance(content, str) else [p.get("text") for p in content or ()]
    data = message.to_dict()
    items = data["content"]
    seen: dict[int, int] = {}  # how many text pieces of a list tool result were written so far
    for slot, text in zip(slots, texts, strict=True):
        item = items[slot]
        if text is None:  # media: as it was
            seen[slot] = seen.get(slot, 0) + 1
        elif "text" in item:
            item["text"] = text
        elif "tool_call_result" in item:
            result = item["tool_call_result"]
            if isinstance(result["result"], str):
                result["result"] = text
            else:
                n = seen.get(slot, 0)
                result["result"][n] = {**result["result"][n], "text": text}
                seen[slot] = n + 1
    return ChatMessage.from_dict(data)
