"""LangChain: the document compressor and the prompt Runnable, with real langchain-core objects, the real ``fast``
stack, a real FAISS-backed retriever, and langchain-core's fake chat model (no real LLM can run here)."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Sequence
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.language_models import FakeListChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, convert_to_openai_messages
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompt_values import ChatPromptValue, StringPromptValue
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough
from langchain_core.vectorstores import VectorStoreRetriever
from lc_helpers import SEP, MiniLMEmbeddings, documents, joined_tokens

import promptzip as pz
from promptzip._messages import message_tokens
from promptzip._roles import Compressor, drop_variant, keep_variant
from promptzip._types import Chunk, Variant
from promptzip.integrations.langchain import PromptZipCompressor, PromptZipRunnable

QUESTION = "How tall is the Eiffel Tower?"


def test_documents_share_one_budget_and_carry_provenance(fast: pz.Zipper, article: str, gpt4o: pz.Tokenizer) -> None:
    docs = documents(article)
    before = [(d.page_content, dict(d.metadata)) for d in docs]
    out = PromptZipCompressor(budget=80, zipper=fast).compress_documents(docs, QUESTION)

    assert 0 < joined_tokens(out, gpt4o) <= 80 < joined_tokens(docs, gpt4o)
    assert any("330 metres" in d.page_content for d in out)
    assert not any("Bananas" in d.page_content for d in out)  # irrelevant documents are omitted
    assert [d.metadata["page"] for d in out] == sorted(d.metadata["page"] for d in out)  # the retriever's order
    by_id = {d.id: d for d in docs}
    for d in out:
        original = by_id[d.id]
        assert d.metadata["source"] == original.metadata["source"]
        kept = d.metadata["promptzip_kept"]
        assert kept
        assert all(0 <= a < b <= len(original.page_content) for a, b in kept)
        assert d.page_content == " ".join(original.page_content[a:b] for a, b in kept)  # one paragraph each
        assert d.metadata["promptzip_tokens_in"] == gpt4o.count(original.page_content)
        assert d.metadata["promptzip_tokens_out"] == gpt4o.count(d.page_content) <= d.metadata["promptzip_tokens_in"]
        assert 0.0 < d.metadata["promptzip_relevance"] <= 1.0
    assert [(d.page_content, d.metadata) for d in docs] == before  # the caller's documents are untouched


@pytest.mark.slow
def test_async_path_gives_the_same_documents(fast: pz.Zipper, article: str) -> None:
    compressor = PromptZipCompressor(budget=80, zipper=fast)
    sync = compressor.compress_documents(documents(article), QUESTION)
    async_ = asyncio.run(compressor.acompress_documents(documents(article), QUESTION))
    assert [(d.page_content, d.metadata) for d in async_] == [(d.page_content, d.metadata) for d in sync]


@pytest.mark.slow
def test_rate_budget_and_reordering(fast: pz.Zipper, article: str, gpt4o: pz.Tokenizer) -> None:
    docs = documents(article)
    by_rate = PromptZipCompressor(rate=0.4, zipper=fast).compress_documents(docs, QUESTION)
    assert joined_tokens(by_rate, gpt4o) <= int(0.4 * joined_tokens(docs, gpt4o))

    original = PromptZipCompressor(budget=120, zipper=fast).compress_documents(docs, QUESTION)
    ranked = PromptZipCompressor(budget=120, zipper=fast, reorder="relevance").compress_documents(docs, QUESTION)
    middle = PromptZipCompressor(budget=120, zipper=fast, reorder="lost_in_the_middle").compress_documents(
        docs, QUESTION
    )
    assert len(original) >= 3
    assert {d.page_content for d in ranked} == {d.page_content for d in middle} == {d.page_content for d in original}
    scores = [d.metadata["promptzip_relevance"] for d in ranked]
    assert scores == sorted(scores, reverse=True)
    assert {middle[0].id, middle[-1].id} == {ranked[0].id, ranked[1].id}  # the best two at both ends


@pytest.mark.slow
def test_nothing_to_compress(fast: pz.Zipper, article: str) -> None:
    compressor = PromptZipCompressor(budget=80, zipper=fast)
    assert compressor.compress_documents([], QUESTION) == []
    assert compressor.compress_documents([Document(page_content="  \n")], QUESTION) == []
    fitting = [
        Document(page_content="The Eiffel Tower is in Paris.\n\n  It is 330 metres tall. "),
        Document(page_content="The tower is tall."),
    ]
    assert [d.page_content for d in compressor.compress_documents(fitting, QUESTION)] == [
        d.page_content for d in fitting
    ]
    out = compressor.compress_documents([Document(page_content=" "), *documents(article)[:1]], "")  # no question
    assert len(out) == 1
    assert out[0].metadata["page"] == 0


class Summarizing(Compressor):
    """A compressor whose shorter variant is not a cut of its source (as a summary is): its text is the first
    words, its provenance the whole chunk. Documents are rebuilt from provenance, so the compressor re-runs tighter
    until the rebuilt documents fit."""

    name = "summarizing"

    def _propose(self, chunks: Sequence[Chunk], query: str | None, tokenizer: pz.Tokenizer) -> list[list[Variant]]:
        groups = []
        for c in chunks:
            short = " ".join(c.text.split()[:4])
            whole = tokenizer.count(c.text)
            groups.append(
                [
                    drop_variant(c),
                    keep_variant(c, whole, utility=2.0, relevance=0.5),
                    Variant(c, "summary", short, tokenizer.count(short), 1.5, (c.span,), 0.5),
                ]
            )
        return groups


def test_documents_fit_even_when_variant_text_is_not_its_spans(article: str, gpt4o: pz.Tokenizer) -> None:
    zipper = pz.Zipper(Summarizing(), target="gpt-4o")
    out = PromptZipCompressor(budget=120, zipper=zipper).compress_documents(documents(article), QUESTION)
    assert 0 < joined_tokens(out, gpt4o) <= 120
    assert all(d.page_content == d.page_content.strip() for d in out)


def test_bad_settings_and_inputs_raise_promptzip_errors() -> None:
    with pytest.raises(pz.BudgetError, match="budget is required"):
        PromptZipCompressor()
    with pytest.raises(pz.BudgetError, match="not both"):
        PromptZipCompressor(budget=100, rate=0.5)
    with pytest.raises(pz.BudgetError):
        PromptZipRunnable(budget=-5)
    with pytest.raises(pz.ConfigError, match="unknown reorder"):
        PromptZipCompressor(budget=100, reorder="random")
    with pytest.raises(pz.ConfigError, match="unknown preset"):
        PromptZipCompressor(budget=100, preset="nope")
    compressor = PromptZipCompressor(budget=100, cache="memory")
    with pytest.raises(pz.InputError, match=r"documents\[1\]"):
        compressor.compress_documents([Document(page_content="a"), "not a document"], QUESTION)  # type: ignore[list-item]
    with pytest.raises(pz.InputError, match="query"):
        compressor.compress_documents([Document(page_content="a")], 42)  # type: ignore[arg-type]
    with pytest.raises(pz.InputError, match="documents"):
        compressor.compress_documents("a text", QUESTION)  # type: ignore[arg-type]
    with pytest.raises(pz.InputError, match="prompt value"):
        PromptZipRunnable(budget=100, cache="memory").invoke(42)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ with a FAISS retriever
@pytest.fixture(scope="module")
def faiss_retriever(article: str) -> VectorStoreRetriever:
    pytest.importorskip("faiss")
    with warnings.catch_warnings():  # langchain-community warns, on import, that it is being sunset
        warnings.filterwarnings("ignore", message=".*langchain-community.*sunset", category=DeprecationWarning)
        community = pytest.importorskip("langchain_community.vectorstores")
    store = community.FAISS.from_documents(documents(article), MiniLMEmbeddings())
    retriever: VectorStoreRetriever = store.as_retriever(search_kwargs={"k": 4})
    return retriever


@pytest.mark.slow
def test_inside_contextual_compression_retriever(
    fast: pz.Zipper, faiss_retriever: VectorStoreRetriever, gpt4o: pz.Tokenizer
) -> None:
    retrievers = pytest.importorskip("langchain_classic.retrievers", reason="langchain-classic is not installed")
    retriever = retrievers.ContextualCompressionRetriever(
        base_compressor=PromptZipCompressor(budget=60, zipper=fast), base_retriever=faiss_retriever
    )
    retrieved = faiss_retriever.invoke(QUESTION)
    for out in (retriever.invoke(QUESTION), asyncio.run(retriever.ainvoke(QUESTION))):
        assert 0 < joined_tokens(out, gpt4o) <= 60 < joined_tokens(retrieved, gpt4o)
        assert any("330 metres" in d.page_content for d in out)
        assert {d.id for d in out} <= {d.id for d in retrieved}
        assert all("promptzip_kept" in d.metadata and "source" in d.metadata for d in out)


class Seen(BaseCallbackHandler):
    """Records the messages each chat model call receives."""

    def __init__(self) -> None:
        self.calls: list[list[BaseMessage]] = []

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[BaseMessage]], **kwargs: Any) -> None:
        self.calls.extend(messages)


@pytest.mark.slow
def test_plain_lcel_rag_chain(fast: pz.Zipper, faiss_retriever: VectorStoreRetriever, gpt4o: pz.Tokenizer) -> None:
    compressor = PromptZipCompressor(budget=60, zipper=fast)
    compress = RunnableLambda(
        lambda x: compressor.compress_documents(x["documents"], x["query"]),
        afunc=lambda x: compressor.acompress_documents(x["documents"], x["query"]),
    )
    context = RunnableParallel(documents=faiss_retriever, query=RunnablePassthrough()) | compress
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from the context only."), ("human", "Context:\n{context}\n\nQuestion: {question}")]
    )
    chain = (
        {"context": context | (lambda docs: SEP.join(d.page_content for d in docs)), "question": RunnablePassthrough()}
        | prompt
        | FakeListChatModel(responses=["330 metres."])
        | StrOutputParser()
    )
    seen = Seen()
    assert chain.invoke(QUESTION, config={"callbacks": [seen]}) == "330 metres."
    docs = context.invoke(QUESTION)
    assert 0 < joined_tokens(docs, gpt4o) <= 60
    human = seen.calls[0][1].content
    assert isinstance(human, str)
    assert SEP.join(d.page_content for d in docs) in human
    assert "330 metres" in human


# ------------------------------------------------------------------------------------------ the prompt Runnable
def chat_prompt() -> ChatPromptTemplate:
    return ChatPromptTemplate.from_messages(
        [
            ("system", "You are a careful travel assistant. Cite the context."),
            MessagesPlaceholder("history"),
            ("human", "{question}"),
        ]
    )


def history(article: str) -> list[BaseMessage]:
    return [
        HumanMessage(content="Here is an article about Paris.\n\n" + article, id="h1"),
        AIMessage(content="Thanks, I have read it. " + article, id="a1", additional_kwargs={"note": "kept"}),
    ]


def chat_tokens(messages: Sequence[BaseMessage], tokenizer: pz.Tokenizer) -> int:
    return message_tokens(convert_to_openai_messages(list(messages)), tokenizer.count)


@pytest.mark.slow
def test_runnable_compresses_the_chat_before_the_model(fast: pz.Zipper, article: str, gpt4o: pz.Tokenizer) -> None:
    model = FakeListChatModel(responses=["330 metres.", "330 metres."])
    chain = chat_prompt() | PromptZipRunnable(budget=150, zipper=fast) | model
    inputs = {"history": history(article), "question": QUESTION}
    uncompressed = chat_prompt().invoke(inputs).to_messages()
    assert chat_tokens(uncompressed, gpt4o) > 150

    seen = Seen()
    assert chain.invoke(inputs, config={"callbacks": [seen]}).content == "330 metres."
    assert asyncio.run(chain.ainvoke(inputs, config={"callbacks": [seen]})).content == "330 metres."
    assert len(seen.calls) == 2
    assert seen.calls[0] == seen.calls[1]
    received = seen.calls[0]
    assert chat_tokens(received, gpt4o) <= 150
    assert [type(m) for m in received] == [SystemMessage, HumanMessage, AIMessage, HumanMessage]
    assert received[0] == uncompressed[0]
    assert received[-1] == uncompressed[-1]
    assert received[1].id == "h1"
    assert received[2].additional_kwargs == {"note": "kept"}
    assert len(received[1].content) < len(uncompressed[1].content)
    assert "330 metres" in str(received[1].content) + str(received[2].content)


@pytest.mark.slow
def test_runnable_keeps_the_input_shape(fast: pz.Zipper, article: str, gpt4o: pz.Tokenizer) -> None:
    runnable = PromptZipRunnable(budget=60, zipper=fast)
    text = runnable.invoke(article)
    assert isinstance(text, str)
    assert 0 < gpt4o.count(text) <= 60
    value = runnable.invoke(StringPromptValue(text=article))
    assert isinstance(value, StringPromptValue)
    assert value.text == text

    messages: list[BaseMessage] = [
        SystemMessage(content="Be brief."),
        HumanMessage(content=[{"type": "text", "text": article}, {"type": "image_url", "image_url": {"url": "x"}}]),
        AIMessage(content="Noted."),
        HumanMessage(content=QUESTION),
    ]
    out = PromptZipRunnable(budget=100, zipper=fast).invoke(messages)
    assert isinstance(out, list)
    assert [type(m) for m in out] == [type(m) for m in messages]
    assert chat_tokens(out, gpt4o) <= 100
    parts = out[1].content
    assert isinstance(parts, list)
    assert parts[1] == messages[1].content[1]
    assert isinstance(parts[0], dict)
    assert len(parts[0]["text"]) < len(article)
    prompt_value = PromptZipRunnable(budget=100, zipper=fast).invoke(ChatPromptValue(messages=messages))
    assert isinstance(prompt_value, ChatPromptValue)
    assert prompt_value.messages == out
    dicts = PromptZipRunnable(budget=100, zipper=fast).invoke([("system", "Be brief."), ("human", QUESTION)])
    assert isinstance(dicts, list)
    assert [m.content for m in dicts] == ["Be brief.", QUESTION]
