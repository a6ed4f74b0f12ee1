"""LangChain adapters: a document compressor for retrievers and a Runnable for prompts, both thin over a Zipper.

>>> from langchain_classic.retrievers import ContextualCompressionRetriever  # doctest: +SKIP
>>> compressor = PromptZipCompressor(budget=800, target="gpt-4o")  # doctest: +SKIP
>>> retriever = ContextualCompressionRetriever(  # doctest: +SKIP
...     base_compressor=compressor, base_retriever=faiss_retriever
... )
>>> chain = prompt | PromptZipRunnable(budget=2000) | chat_model  # doctest: +SKIP

:class:`PromptZipCompressor` compresses the documents of one call together, under one budget, measured in the
target tokenizer on the documents joined with a blank line (how LangChain's "stuff" chains join them); the question
only scores relevance. Each returned document keeps its metadata and gains provenance: ``promptzip_kept`` (the
``[start, end]`` character spans of the original ``page_content`` that survived), ``promptzip_tokens_in`` /
``promptzip_tokens_out`` and ``promptzip_relevance``. Documents with nothing left are omitted.

:class:`PromptZipRunnable` sits between a prompt and a chat model: chat messages go through
:meth:`promptzip.Zipper.compress_messages` (system messages, the last user turn, tool calls and non-text parts stay
verbatim), a plain string prompt through :meth:`promptzip.Zipper.compress`.

promptzip's own errors propagate as themselves; LangChain's conversion errors become :class:`promptzip.InputError`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import BaseMessage, convert_to_messages, convert_to_openai_messages
from langchain_core.prompt_values import ChatPromptValue, PromptValue, StringPromptValue
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StrictInt

from promptzip._errors import BudgetError, ConfigError, InputError
from promptzip._inputs import check_text
from promptzip._pipeline import REORDERS, Zipper
from promptzip._registry import registries
from promptzip._types import Budget, Chunk, Result
from promptzip.integrations._openai import compressed_text, fits_whole

__all__ = ["PromptZipCompressor", "PromptZipRunnable"]

_build_lock = threading.Lock()


class _ZipperSettings(BaseModel):
    """What both adapters share: the budget, and a Zipper built on first use (or the one given)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    budget: StrictInt | None = None
    """Hard cap in tokens of ``target`` (give this or ``rate``)."""
    rate: float | None = None
    """Kept fraction of the input tokens, in (0, 1] (give this or ``budget``)."""
    preset: str = "fast"
    target: str = "gpt-4o"
    cache: str | None = None
    """Cache URL (``sqlite:///path``, ``memory``, ``none``); None is the SQLite cache in the user's cache folder."""
    zipper: Zipper | None = Field(default=None, exclude=True)
    """A ready Zipper (custom stacks); when given, ``preset``, ``target`` and ``cache`` are not used."""

    _built: Zipper | None = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        # Checked here rather than in a pydantic validator, which would turn our errors into ValidationErrors.
        self._spec()
        if self.zipper is None:
            registries.presets.get(self.preset)  # ConfigError now, not at the first request

    def _spec(self) -> Budget:
        return Budget.coerce(self.budget, rate=self.rate)

    def _zipper(self) -> Zipper:
        if self.zipper is not None:
            return self.zipper
        with _build_lock:
            if self._built is None:
                self._built = Zipper.from_preset(self.preset, target=self.target, cache=self.cache)
            return self._built


class PromptZipCompressor(_ZipperSettings, BaseDocumentCompressor):
    """Compress retrieved documents to one shared token budget (a LangChain ``BaseDocumentCompressor``).

    ``reorder``: ``original`` keeps the retriever's order; ``relevance`` puts the most relevant documents first;
    ``lost_in_the_middle`` puts them at both ends. Within a document the text keeps its order.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    reorder: str = "original"

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        if self.reorder not in REORDERS:
            raise ConfigError(f"unknown reorder {self.reorder!r}; use one of {', '.join(REORDERS)}")

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """The documents that survive, compressed, in the compressor's order, with provenance in metadata."""
        docs, question = _check_documents(documents), _check_query(query)
        return self._compress(docs, question)

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """:meth:`compress_documents` in a worker thread, so the event loop keeps serving while models run."""
        docs, question = _check_documents(documents), _check_query(query)
        return await asyncio.to_thread(self._compress, docs, question)

    def _compress(self, docs: list[Document], question: str | None) -> list[Document]:
        live = [(i, d) for i, d in enumerate(docs) if d.page_content.strip()]
        if not live:
            return []
        zipper = self._zipper()
        chunks = [Chunk(d.page_content, source_id=str(i)) for i, d in live]
        limit, result, texts = _fit(zipper, chunks, self._spec(), question)
        out: list[Document] = []
        relevance: list[float] = []
        count = zipper.tokenizer.count
        for i, doc in live:
            sid = str(i)
            if sid not in texts:
                continue
            kept = [[s.start, s.end] for c in result.chunks if c.source_id == sid for s in c.kept]
            best = max((c.relevance for c in result.chunks if c.source_id == sid), default=0.0)
            metadata = {
                **doc.metadata,
                "promptzip_kept": kept,
                "promptzip_tokens_in": count(doc.page_content),
                "promptzip_tokens_out": count(texts[sid]),
                "promptzip_relevance": best,
            }
            out.append(Document(page_content=texts[sid], metadata=metadata, id=doc.id))
            relevance.append(best)
        arranged = _arrange(out, relevance, self.reorder)
        if count(zipper.separator.join(d.page_content for d in arranged)) > limit:
            return out  # the budget was verified in the original order; never trade it for the order
        return arranged


class PromptZipRunnable(_ZipperSettings, RunnableSerializable[LanguageModelInput, LanguageModelInput]):
    """Compress a prompt inside an LCEL chain, before the model: ``prompt | PromptZipRunnable(budget=N) | model``.

    Accepts what a chat model accepts and returns the same shape: a ``ChatPromptValue`` (or any prompt value with
    messages) gives a ``ChatPromptValue``, a list of messages a list of ``BaseMessage``, a ``StringPromptValue`` or a
    ``str`` the same kind with the text compressed. Messages keep their type, ids and extra fields; only text
    content changes.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    def invoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._call_with_config(self._transform, input, config, run_type="prompt")

    async def ainvoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await self._acall_with_config(self._atransform, input, config, run_type="prompt")

    async def _atransform(self, input: LanguageModelInput) -> LanguageModelInput:
        return await asyncio.to_thread(self._transform, input)

    def _transform(self, input: LanguageModelInput) -> LanguageModelInput:
        zipper, spec = self._zipper(), self._spec()
        if isinstance(input, str):
            return compressed_text(zipper.compress(input, budget=spec))
        if isinstance(input, StringPromptValue):
            return StringPromptValue(text=compressed_text(zipper.compress(input.text, budget=spec)))
        if isinstance(input, PromptValue):
            return ChatPromptValue(messages=_compress_messages(zipper, spec, input.to_messages()))
        if isinstance(input, Sequence):
            try:
                messages = convert_to_messages(input)
            except (ValueError, TypeError, NotImplementedError) as exc:
                raise InputError(f"cannot read the messages: {exc}") from exc
            return _compress_messages(zipper, spec, messages)
        raise InputError(f"expected a prompt value, a list of messages or a str, not {type(input).__name__}")


# ---------------------------------------------------------------------------------------------------- helpers
def _check_documents(documents: object) -> list[Document]:
    if isinstance(documents, str | bytes) or not isinstance(documents, Sequence):
        raise InputError(f"documents must be a sequence of Documents, not {type(documents).__name__}")
    for i, d in enumerate(documents):
        if not isinstance(d, Document):
            raise InputError(f"documents[{i}] must be a langchain_core Document, not {type(d).__name__}")
        check_text(d.page_content, f"documents[{i}].page_content", allow_empty=True)
    return list(documents)


def _check_query(query: object) -> str | None:
    return check_text(query, "query", allow_empty=True).strip() or None


def _fit(zipper: Zipper, chunks: list[Chunk], spec: Budget, question: str | None) -> tuple[int, Result, dict[str, str]]:
    """One compression of all the documents, the question scoring relevance only (the budget is the documents'
    alone): the limit in tokens, the result, and each surviving document's text. Re-runs tighter in the rare case
    the texts do not fit (a compressor whose variant text is not its kept spans)."""
    result = zipper.compress(chunks, query=question, budget=spec, reorder="original")
    limit = inner = result.budget
    if fits_whole(result):  # nothing to cut: keep each text exactly as it was
        return limit, result, {s.id: s.text for s in result.sources}
    while True:
        texts = _rebuild(result, zipper.separator)
        used = zipper.tokenizer.count(zipper.separator.join(texts.values()))
        if used <= limit:
            return limit, result, texts
        if inner <= 1:
            raise BudgetError(f"the documents do not fit in {limit} tokens", budget=limit)
        inner = max(1, min(inner - 1, inner * limit // used))  # shrink in proportion to the overshoot
        result = zipper.compress(chunks, query=question, budget=Budget(tokens=inner), reorder="original")


def _rebuild(result: Result, separator: str) -> dict[str, str]:
    """Each source's surviving text: its chunks' kept spans (a space between spans, the separator between
    chunks), which is how the pipeline assembled them; sources with nothing kept are absent."""
    originals = {s.id: s.text for s in result.sources}
    pieces: dict[str, list[tuple[int, str]]] = {}
    for c in result.chunks:
        if c.kept:
            text = originals[c.source_id]
            pieces.setdefault(c.source_id, []).append((c.start, " ".join(text[s.start : s.end] for s in c.kept)))
    return {sid: separator.join(t for _, t in sorted(parts)) for sid, parts in pieces.items()}


def _arrange(docs: list[Document], relevance: list[float], reorder: str) -> list[Document]:
    if reorder == "original":
        return docs
    ranked = [docs[i] for i in sorted(range(len(docs)), key=lambda i: -relevance[i])]
    if reorder == "relevance":
        return ranked
    return ranked[0::2] + ranked[1::2][::-1]  # lost in the middle: the best at both ends


def _compress_messages(zipper: Zipper, spec: Budget, messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """Compress LangChain messages through their OpenAI form; only the text of each message is replaced."""
    dicts = [_as_openai(m, i) for i, m in enumerate(messages)]
    result = zipper.compress_messages(dicts, budget=spec)
    if fits_whole(result):
        return list(messages)
    compressed_messages = result.messages or dicts
    out: list[BaseMessage] = []
    for message, compressed in zip(messages, compressed_messages, strict=True):
        content = _content_back(message.content, compressed["content"])
        out.append(message if content == message.content else message.model_copy(update={"content": content}))
    return out


def _as_openai(message: BaseMessage, i: int) -> dict[str, Any]:
    """The OpenAI dict of a message (role, name, tool calls), with content parts one-to-one with LangChain's."""
    try:
        converted = convert_to_openai_messages(message)
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise InputError(f"messages[{i}] cannot be read as a chat message: {exc}") from exc
    if isinstance(message.content, str):
        converted["content"] = message.content
    else:
        converted["content"] = [_part(p) for p in message.content]
    return converted


def _part(block: object) -> dict[str, Any]:
    if isinstance(block, str):
        return {"type": "text", "text": block}
    if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
        return {"type": "text", "text": block["text"]}
    kind = block.get("type") if isinstance(block, dict) else None
    return {"type": kind if isinstance(kind, str) else "opaque"}  # never compressed: image, audio, tool use, ...


def _content_back(original: str | list[Any], compressed: Any) -> str | list[Any]:
    if isinstance(original, str):
        return str(compressed)
    out: list[Any] = []
    for block, part in zip(original, compressed, strict=True):
        if isinstance(block, str):
            out.append(part["text"])
        elif isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
            out.append({**block, "text": part["text"]})
        else:
            out.append(block)
    return out
