"""LangChain in RAG shapes: a ``PromptTemplate`` whose rendered string holds instruction, context and question; a
chat whose system message holds the documents; and the document compressor rebuilding documents from the
pipeline's own per-source output. Uses a BM25-only stack (no model), so these tests are fast."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.language_models import FakeListLLM
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage, convert_to_openai_messages
from langchain_core.prompt_values import StringPromptValue
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate
from lc_helpers import documents, joined_tokens

import promptzip as pz
from promptzip._messages import message_tokens
from promptzip._roles import Compressor, drop_variant, keep_variant
from promptzip._types import Chunk, Variant
from promptzip.compressors.extractive import ExtractiveCompressor
from promptzip.integrations.langchain import PromptZipCompressor, PromptZipRunnable
from promptzip.retrievers.sparse import BM25Scorer

QUESTION = "How tall is the Eiffel Tower?"
SEP = "\n\n"
INSTRUCTION = "Answer from the context. If the context does not say, answer that you do not know."
TEMPLATE = INSTRUCTION + "\nContext: {context}\nQuestion: {question}"


def bm25(min_relevance: float | None = None) -> pz.Zipper:
    """A cheap stack with no model: BM25 relevance + extractive selection."""
    return pz.Zipper(ExtractiveCompressor(BM25Scorer(), min_relevance=min_relevance), target="gpt-4o")


class Prompts(BaseCallbackHandler):
    """Records the prompts each (string) LLM call receives."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def on_llm_start(self, serialized: dict[str, Any], prompts: list[str], **kwargs: Any) -> None:
        self.prompts.extend(prompts)


# ------------------------------------------------------------------------------------------ string prompts
def test_prompt_template_keeps_its_instruction_and_trailing_question(article: str, gpt4o: pz.Tokenizer) -> None:
    prompt = PromptTemplate.from_template(TEMPLATE)
    inputs = {"context": article * 3, "question": QUESTION}
    rendered = prompt.invoke(inputs).to_string()
    assert gpt4o.count(rendered) > 300

    value = (prompt | PromptZipRunnable(budget=200, zipper=bm25())).invoke(inputs)
    assert isinstance(value, StringPromptValue)
    text = value.text
    assert text.startswith(INSTRUCTION + "\nContext: ")
    assert text.endswith(f"\nQuestion: {QUESTION}")  # byte for byte, at the very end
    assert 0 < gpt4o.count(text) <= 200
    assert "330 metres" in text  # the answer survives the cut
    assert len(text) < len(rendered)
    # A plain str gives the same text, as a str.
    assert PromptZipRunnable(budget=200, zipper=bm25()).invoke(rendered) == text


def test_prompt_template_chain_reaches_a_string_llm(article: str, gpt4o: pz.Tokenizer) -> None:
    prompt = PromptTemplate.from_template(TEMPLATE)
    chain = prompt | PromptZipRunnable(budget=200, zipper=bm25()) | FakeListLLM(responses=["330 metres.", "330 m."])
    seen = Prompts()
    inputs = {"context": article * 3, "question": QUESTION}
    assert chain.invoke(inputs, config={"callbacks": [seen]}) == "330 metres."
    assert asyncio.run(chain.ainvoke(inputs, config={"callbacks": [seen]})) == "330 m."
    assert len(seen.prompts) == 2
    assert seen.prompts[0] == seen.prompts[1]
    assert seen.prompts[0].endswith(f"\nQuestion: {QUESTION}")
    assert gpt4o.count(seen.prompts[0]) <= 200


def test_a_string_prompt_that_fits_is_returned_byte_for_byte() -> None:
    prompt = PromptTemplate.from_template(TEMPLATE)
    value = prompt.invoke({"context": "The tower is 330 metres tall.\n\n  (Wikipedia)  ", "question": QUESTION})
    out = PromptZipRunnable(budget=500, zipper=bm25()).invoke(value)
    assert isinstance(out, StringPromptValue)
    assert out.text == value.text
    assert PromptZipRunnable(budget=500, zipper=bm25()).invoke(value.text) == value.text


# ------------------------------------------------------------------------------------------ chat scope
def test_scope_is_validated() -> None:
    assert PromptZipRunnable(budget=100, zipper=bm25()).scope == "all"
    assert PromptZipRunnable(budget=100, zipper=bm25(), scope="history").scope == "history"
    for bad in ("everything", "", "ALL", "histories"):
        with pytest.raises(pz.ConfigError, match="scope"):
            PromptZipRunnable(budget=100, zipper=bm25(), scope=bad)


def rag_chat(article: str) -> list[BaseMessage]:
    return [
        SystemMessage(content=f"Answer from the documents only.\n\n<documents>\n{article * 2}\n</documents>"),
        HumanMessage(content="Here is more about Paris.\n\n" + article),
        HumanMessage(content=f"Context:\n{article}\n\nQuestion: {QUESTION}"),
    ]


def test_history_scope_leaves_the_system_message_and_the_last_turn_alone(article: str) -> None:
    chat = rag_chat(article)
    out = PromptZipRunnable(budget=1000, zipper=bm25(), scope="history").invoke(chat)
    assert isinstance(out, list)
    assert out[0] == chat[0]
    assert out[-1] == chat[-1]
    assert len(str(out[1].content)) < len(str(chat[1].content))
    assert message_tokens(convert_to_openai_messages(out), pz.get_tokenizer("gpt-4o").count) <= 1000


def test_all_scope_reaches_into_the_system_message(article: str) -> None:
    chat = rag_chat(article)
    template = ChatPromptTemplate.from_messages(chat)
    out = (template | PromptZipRunnable(budget=500, zipper=bm25())).invoke({})
    messages = out.to_messages()
    assert [type(m) for m in messages] == [type(m) for m in chat]
    assert len(str(messages[0].content)) < len(str(chat[0].content))  # "history" would never touch it
    assert str(messages[-1].content).endswith(f"Question: {QUESTION}")


# ------------------------------------------------------------------------------------------ the compressor
@pytest.mark.parametrize("min_relevance", [None, 0.99])
@pytest.mark.parametrize("question", ["And what about that?", "", QUESTION])
def test_documents_that_fit_come_back_whole(min_relevance: float | None, question: str) -> None:
    """However vague the question, and however strict the relevance floor, documents that fit are all returned."""
    docs = [
        Document(page_content="The Eiffel Tower is in Paris.\n\n  It is 330 metres tall. ", metadata={"n": 1}, id="a"),
        Document(page_content="The tower was built for the 1889 World's Fair.", id="b"),
        Document(page_content="Bananas are yellow.", metadata={"n": 3}, id="c"),
    ]
    compressor = PromptZipCompressor(budget=200, zipper=bm25(min_relevance))
    for out in (
        compressor.compress_documents(docs, question),
        asyncio.run(compressor.acompress_documents(docs, question)),
    ):
        assert [(d.id, d.page_content) for d in out] == [(d.id, d.page_content) for d in docs]
        for d, original in zip(out, docs, strict=True):
            assert {k: v for k, v in d.metadata.items() if not k.startswith("promptzip_")} == original.metadata
            assert d.metadata["promptzip_kept"] == [[0, len(original.page_content)]]
            assert d.metadata["promptzip_tokens_out"] == d.metadata["promptzip_tokens_in"]


class Summarizing(Compressor):
    """A compressor whose shorter variant is not a cut of its source, as a summary is not: its text is the first
    four words, its provenance the whole chunk."""

    name = "summarizing"

    def _propose(self, chunks: Sequence[Chunk], query: str | None, tokenizer: pz.Tokenizer) -> list[list[Variant]]:
        groups = []
        for c in chunks:
            short = " ".join(c.text.split()[:4]) + " (summary)"
            groups.append(
                [
                    drop_variant(c),
                    keep_variant(c, tokenizer.count(c.text), utility=2.0, relevance=0.5),
                    Variant(c, "summary", short, tokenizer.count(short), 1.5, (c.span,), 0.5),
                ]
            )
        return groups


def test_a_summary_variant_reaches_the_document(article: str, gpt4o: pz.Tokenizer) -> None:
    """The document's text is the pipeline's own output for it; rebuilding it from kept spans would lose a summary."""
    docs = documents(article)
    out = PromptZipCompressor(budget=60, zipper=pz.Zipper(Summarizing(), target="gpt-4o")).compress_documents(
        docs, QUESTION
    )
    assert 0 < joined_tokens(out, gpt4o) <= 60
    summaries = [d for d in out if d.page_content.endswith(" (summary)")]
    assert summaries
    by_id = {d.id: d for d in docs}
    for d in summaries:
        assert d.page_content == " ".join(by_id[d.id].page_content.split()[:4]) + " (summary)"
        assert d.metadata["promptzip_tokens_out"] == gpt4o.count(d.page_content)
        assert d.metadata["promptzip_kept"] == [[0, len(by_id[d.id].page_content)]]  # provenance as proposed
