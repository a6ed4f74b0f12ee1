"""LangChain adapters: a document compressor for retrievers and a Runnable for prompts, both thin over a Zipper.

>>> from langchain_classic.retrievers import ContextualCompressionRetriever  # doctest: +SKIP
>>> compressor = PromptZipCompressor(budget=800, target="gpt-4o")  # doctest: +SKIP
>>> retriever = ContextualCompressionRetriever(  # doctest: +SKIP
...     base_compressor=compressor, base_retriever=faiss_retriever
... )
>>> chain = prompt | PromptZipRunnable(budget=2000) | chat_model  # doctest: +SKIP

:class:`PromptZipCompressor` compresses the documents of one call together, under one budget, measured in the
target tokenizer on the documents joined with a blank line (how LangChain's "stuff" chains join them); the question
only scores relevance. Documents that already fit the budget come back whole. Each document's text is the
pipeline's own output for it (``Result.outputs``: extracted sentences, a pruned text or a summary alike), so the
joined documents are the context the pipeline verified against the budget. Each returned document keeps its
metadata and gains provenance: ``promptzip_kept`` (the ``[start, end]`` character spans of the original
``page_content`` that survived), ``promptzip_tokens_in`` / ``promptzip_tokens_out`` and ``promptzip_relevance``.
Documents with nothing left are omitted.

:class:`PromptZipRunnable` sits between a prompt and a chat model: chat messages go through
:meth:`promptzip.Zipper.compress_messages` with the runnable's ``scope`` (``"all"``, the default: the context found
in every message, system messages and the last user turn included, their instruction and question kept verbatim;
``"history"``: earlier turns only, system messages and the last user turn untouched; tool calls and non-text parts
always stay verbatim). Documents inside a message's content (LangChain's ``text-plain`` blocks, Anthropic's
``document`` and ``search_result`` blocks) are passages, compressed in their own blocks
(:mod:`promptzip.integrations._langchain_content`). A string prompt (a ``str`` or the ``StringPromptValue`` of a
``PromptTemplate``) goes through :meth:`promptzip.Zipper.compress_prompt`: its instruction and its trailing
``Question: ...`` are kept byte for byte and only its context shrinks.

Both take ``on_result=``, as ``pz.wrap`` does: a callable that gets the :class:`promptzip.Result` of each
compression that changed what they return (not of input that fit whole, which comes back as given), in the thread
that compressed it, before the output is returned. ``Result.dropped`` is what the model will not see (a document of
which nothing was kept is among it, whole); what the callback raises propagates, so the chain stops there.

promptzip's own errors propagate as themselves; LangChain's conversion errors become :class:`promptzip.InputError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import BaseMessage, convert_to_messages
from langchain_core.prompt_values import ChatPromptValue, PromptValue, StringPromptValue
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SkipValidation, ValidationError

from promptzip._errors import BudgetError, ConfigError, InputError
from promptzip._inputs import check_text
from promptzip._messages import SCOPES
from promptzip._pipeline import REORDERS, Zipper
from promptzip._pool import shared_zipper
from promptzip._pricing import CachePricing
from promptzip._registry import registries
from promptzip._types import Budget, Chunk, Result
from promptzip.integrations._calls import (
    cache_pricing,
    check_on_result,
    check_pricing,
    fits_whole,
    report,
    sent_messages,
    tags_removed,
)
from promptzip.integrations._documents import RETRIEVED
from promptzip.integrations._langchain_content import as_openai, content_back

__all__ = ["PromptZipCompressor", "PromptZipRunnable"]


class _ZipperSettings(BaseModel):
    """What both adapters share: the budget, and a Zipper built on first use (or the one given)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    # Not validated by pydantic, which refused a Budget and would make its own ValidationError of 800.0: Budget.coerce
    # reads it in __init__ as pz.compress does, so a float is the same BudgetError that spells the intended call.
    budget: SkipValidation[Budget | int | None] = None
    """A ``pz.Budget`` or a hard cap in tokens of ``target`` (give this or ``rate``); a float is a
    :class:`promptzip.BudgetError`, as in ``pz.compress``."""
    # Not validated either: pydantic would turn True and "0.3" into floats that Budget.coerce, which refuses them
    # in every other door, never sees.
    rate: SkipValidation[float | None] = None
    """Kept fraction of the input tokens, in (0, 1] (give this or ``budget``)."""
    preset: str = "fast"
    target: str = "gpt-4o"
    cache: str | None = None
    """Cache URL (``sqlite:///path``, ``memory``, ``none``); None is the SQLite cache in the user's cache folder."""
    zipper: Zipper | None = Field(default=None, exclude=True)
    """A ready Zipper (custom stacks); when given, ``preset``, ``target`` and ``cache`` are not used."""
    # Checked in __init__, so a value that is not callable is a ConfigError, not a ValidationError.
    on_result: SkipValidation[Callable[[Result], object] | None] = Field(default=None, exclude=True)
    """Called with the ``promptzip.Result`` of each compression that changed the input (not of one that fit whole),
    in the thread that compressed it, before the output is returned; what it raises propagates and stops the call."""

    _built: Zipper | None = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:  # a setting of the wrong type, or one that does not exist
            raise ConfigError(_settings_error(type(self).__name__, exc)) from None
        # Checked here rather than in a pydantic validator, which would turn our errors into ValidationErrors.
        self._spec()
        check_on_result(self.on_result)
        if self.zipper is None:
            registries.presets.get(self.preset)  # ConfigError now, not at the first request

    def _spec(self) -> Budget:
        return Budget.coerce(self.budget, rate=self.rate)

    def _zipper(self) -> Zipper:
        if self.zipper is not None:
            return self.zipper
        if self._built is None:
            self._built = shared_zipper(self.preset, self.target, self.cache)
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
        count = zipper.tokenizer.count
        chunks = [Chunk(d.page_content, source_id=str(i), metadata=RETRIEVED) for i, d in live]
        result = zipper.compress(chunks, query=question, budget=self._spec(), reorder="original")
        limit, whole = result.budget, _fits(result)
        # The pipeline's own text of each source, in source order: joined with the separator, it is the context it
        # assembled and verified in the target tokenizer. Counted again here, so a broken promise is an error.
        texts = {s.id: s.text for s in result.sources} if whole else {k: v for k, v in result.outputs.items() if v}
        used = count(zipper.separator.join(texts[str(i)] for i, _ in live if str(i) in texts))
        if used > limit:
            raise BudgetError(f"the compressed documents need {used} tokens, over the budget of {limit}", budget=limit)
        report(self.on_result, None if whole else result)
        out: list[Document] = []
        relevance: list[float] = []
        for i, doc in live:
            sid = str(i)
            if sid not in texts:
                continue
            mine = [c for c in result.chunks if c.source_id == sid]
            kept = [[0, len(doc.page_content)]] if whole else [[s.start, s.end] for c in mine for s in c.kept]
            best = max((c.relevance for c in mine), default=0.0)
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
    content changes. ``scope`` (``"all"`` or ``"history"``) says which messages' context may shrink; a string
    prompt keeps its instruction and question verbatim whatever the scope.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    scope: str = "all"
    """What a chat's compression may touch: ``"all"`` (the context in every message) or ``"history"``."""
    # Checked in __init__, so a bad value is a ConfigError, not a ValidationError.
    pricing: SkipValidation[str | CachePricing | None] = None
    """The chat model's cache prices, which cache-stable history weighs: its model name (``"claude-sonnet-4"``, read
    by ``promptzip.pricing_for``) or a ``promptzip.CachePricing``; ``None``: the target's."""

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        check_pricing(self.pricing)
        if self.scope not in SCOPES:
            raise ConfigError(f"unknown scope {self.scope!r}; use one of {', '.join(SCOPES)}")

    def invoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._call_with_config(self._transform, input, config, run_type="prompt")

    async def ainvoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await self._acall_with_config(self._atransform, input, config, run_type="prompt")

    async def _atransform(self, input: LanguageModelInput) -> LanguageModelInput:
        return await asyncio.to_thread(self._transform, input)

    def _transform(self, input: LanguageModelInput) -> LanguageModelInput:
        zipper, spec = self._zipper(), self._spec()
        if isinstance(input, str):
            return _compress_prompt(zipper, spec, input, self.on_result)
        if isinstance(input, StringPromptValue):
            return StringPromptValue(text=_compress_prompt(zipper, spec, input.text, self.on_result))
        if isinstance(input, PromptValue):
            return ChatPromptValue(messages=self._messages(zipper, spec, input.to_messages()))
        if isinstance(input, Sequence) and not _is_bytes(input):
            try:
                messages = convert_to_messages(input)
            except (ValueError, TypeError, NotImplementedError) as exc:
                raise InputError(f"cannot read the messages: {exc}") from exc
            return self._messages(zipper, spec, messages)
        raise InputError(f"expected a prompt value, a list of messages or a str, not {type(input).__name__}")

    def _messages(self, zipper: Zipper, spec: Budget, messages: Sequence[BaseMessage]) -> list[BaseMessage]:
        pricing = cache_pricing(self.pricing)
        return _compress_messages(zipper, spec, messages, self.scope, pricing, on_result=self.on_result)


# ---------------------------------------------------------------------------------------------------- helpers
def _is_bytes(value: object) -> bool:
    """Bytes are a Sequence too, of ints: not a list of messages (a chat model takes no bytes prompt either)."""
    return isinstance(value, bytes | bytearray)


def _settings_error(name: str, exc: ValidationError) -> str:
    """pydantic's errors in promptzip's words: which setting, what was given, what it must be."""
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown setting {field!r}")
        else:
            problems.append(f"{field} got {error.get('input')!r}: {error['msg']}")
    return f"{name}: {'; '.join(problems)}"


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


def _fits(result: Result) -> bool:
    """Whether the documents already fit the budget whole: they are then returned exactly as given, whatever their
    relevance (a budget is a cap, not a filter), unless promptzip's own tags must be removed from them."""
    return result.tokens_in <= result.budget and not any(map(tags_removed, result.sources))


def _arrange(docs: list[Document], relevance: list[float], reorder: str) -> list[Document]:
    if reorder == "original":
        return docs
    ranked = [docs[i] for i in sorted(range(len(docs)), key=lambda i: -relevance[i])]
    if reorder == "relevance":
        return ranked
    return ranked[0::2] + ranked[1::2][::-1]  # lost in the middle: the best at both ends


def _compress_prompt(
    zipper: Zipper, spec: Budget, text: str, on_result: Callable[[Result], object] | None = None
) -> str:
    """A whole string prompt with only its context compressed; the prompt itself when it fit whole. ``on_result``
    gets the Result of a prompt that was compressed."""
    result = zipper.compress_prompt(text, budget=spec)
    if fits_whole(result):
        return text
    report(on_result, result)
    return result.text


def _compress_messages(
    zipper: Zipper,
    spec: Budget,
    messages: Sequence[BaseMessage],
    scope: str,
    pricing: CachePricing | None = None,
    *,
    on_result: Callable[[Result], object] | None = None,
) -> list[BaseMessage]:
    """Compress LangChain messages through their OpenAI form; only the text of each message is replaced.
    ``on_result`` gets the Result of a chat that was compressed."""
    read = [as_openai(m, i) for i, m in enumerate(messages)]
    dicts = [d for d, _ in read]
    result = report(on_result, sent_messages(zipper, dicts, spec, scope=scope, pricing=pricing))
    if result is None:
        return list(messages)
    compressed_messages = result.messages or dicts
    out: list[BaseMessage] = []
    for message, (sent, places), compressed in zip(messages, read, compressed_messages, strict=True):
        content = content_back(message.content, sent["content"], compressed["content"], places)
        out.append(message if content == message.content else message.model_copy(update={"content": content}))
    return out
