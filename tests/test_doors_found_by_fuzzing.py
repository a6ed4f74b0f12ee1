"""What a fuzzing session found at the library's doors (LlamaIndex, Haystack, the decorator, LangChain, the wrapped
client): a tool call one door did not count, a raw TypeError, a question default ignored, SDK messages the decorator
refused while ``wrap()`` took them, and budgets one door coerced or refused where the others did not. Real framework
objects and the real OpenAI SDK against a real HTTP server on 127.0.0.1, with a model-free BM25 stack."""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"  # before the first import of haystack: it would phone home
pytest.importorskip("numpy")
pytest.importorskip("openai")
pytest.importorskip("llama_index.core")
pytest.importorskip("haystack")
pytest.importorskip("langchain_core")

import numpy as np
import openai
from fake_openai import FakeOpenAI
from haystack.dataclasses import ChatMessage as HaystackMessage
from haystack.dataclasses import ToolCall
from langchain_core.messages import HumanMessage
from llama_index.core.base.llms.types import ChatMessage, MessageRole, TextBlock, ToolCallBlock
from llama_index.core.llms.mock import MockFunctionCallingLLMWithChatMemoryOfLastCall, MockLLM
from openai.types.chat import ChatCompletionMessage
from proxy_helpers import REPORT, bm25

import promptzip as pz
from promptzip._cache import MemoryCache
from promptzip.integrations.haystack import PromptZipChatCompressor, PromptZipDocumentCompressor
from promptzip.integrations.langchain import PromptZipCompressor, PromptZipRunnable
from promptzip.integrations.llama_index import PromptZipLLM, PromptZipNodePostprocessor

QUESTION = "How many ships did the harbour of town 12 see?"
ARGS = {"query": " ".join(f"term{i}" for i in range(400))}  # about 800 tokens of tool-call arguments


def fresh() -> pz.Zipper:
    """A model-free stack with a cache of its own, so no conversation state carries over between tests."""
    return bm25("fast", "gpt-4o", MemoryCache())


# ------------------------------------------------------------------------------------------ LlamaIndex tool calls
def block_call(args: dict[str, Any]) -> ChatMessage:
    """LlamaIndex 0.14's own form of a tool call, as its MockFunctionCallingLLM returns it."""
    return ChatMessage(
        role="assistant", blocks=[ToolCallBlock(tool_call_id="c1", tool_name="search", tool_kwargs=args)]
    )


def kwargs_call(args: dict[str, Any]) -> ChatMessage:
    call = {"id": "c1", "type": "function", "function": {"name": "search", "arguments": json.dumps(args)}}
    return ChatMessage(role="assistant", content="", additional_kwargs={"tool_calls": [call]})


def tool_chat(assistant: ChatMessage, result: str) -> list[ChatMessage]:
    tool = ChatMessage(role="tool", content=result, additional_kwargs={"tool_call_id": "c1"})
    return [ChatMessage(role="user", content=QUESTION), assistant, tool]


def test_a_llama_index_tool_call_block_counts_in_the_budget_as_the_additional_kwargs_form_does() -> None:
    errors = []
    for form in (block_call, kwargs_call):
        inner = MockFunctionCallingLLMWithChatMemoryOfLastCall()
        with pytest.raises(pz.BudgetError, match=r"messages\[1\] \(assistant") as caught:
            PromptZipLLM(inner, budget=100, zipper=fresh()).chat(tool_chat(form(ARGS), "The tower is 330 m tall."))
        assert inner.last_chat_messages is None  # nothing was sent over the budget
        errors.append(str(caught.value))
    assert errors[0] == errors[1]  # the same call, counted the same


def test_a_llama_index_tool_call_block_that_fits_is_sent_intact(gpt4o: pz.Tokenizer) -> None:
    args = {"port": "Oslo", "since": datetime.date(2024, 1, 1)}
    results: dict[str, pz.Result] = {}
    sent: dict[str, list[ChatMessage]] = {}
    for name, form in (("block", block_call), ("kwargs", kwargs_call)):
        inner = MockFunctionCallingLLMWithChatMemoryOfLastCall()
        given = tool_chat(form(json.loads(json.dumps(args, default=str)) if name == "kwargs" else args), REPORT)
        PromptZipLLM(inner, budget=250, zipper=fresh(), on_result=lambda r, n=name: results.__setitem__(n, r)).chat(
            given
        )
        sent[name] = list(inner.last_chat_messages or ())
        assert sent[name][1] is given[1]  # the call, left alone: the same object, its blocks as they were
        assert len(sent[name][2].content or "") < len(REPORT)
    # Counted as the same call in OpenAI's form (a date as its text), whichever form LlamaIndex kept it in.
    assert results["block"].tokens_in == results["kwargs"].tokens_in
    assert results["block"].tokens_out <= 250
    assert sent["block"][2].content == sent["kwargs"][2].content


def test_a_llama_index_message_with_text_and_a_tool_call_block_keeps_the_block() -> None:
    call = ToolCallBlock(tool_call_id="c1", tool_name="search", tool_kwargs=ARGS)
    notes = TextBlock(text=f"My notes:\n\n{REPORT}")
    as_kwargs = kwargs_call(ARGS).additional_kwargs
    forms = {
        "block": ChatMessage(role=MessageRole.ASSISTANT, blocks=[notes, call]),
        "kwargs": ChatMessage(role=MessageRole.ASSISTANT, blocks=[notes], additional_kwargs=as_kwargs),
    }
    results: dict[str, pz.Result] = {}
    sent: dict[str, ChatMessage] = {}
    for name, assistant in forms.items():
        inner = MockFunctionCallingLLMWithChatMemoryOfLastCall()
        llm = PromptZipLLM(inner, budget=1000, zipper=fresh(), on_result=lambda r, n=name: results.__setitem__(n, r))
        llm.chat([ChatMessage(role="user", content=QUESTION), assistant])
        sent[name] = (inner.last_chat_messages or ())[1]
    text, block = sent["block"].blocks
    assert block is call  # the call as it was, after the compressed text
    assert isinstance(text, TextBlock)
    assert len(text.text) < len(notes.text)
    # The text was cut as far as it is when the call sits in additional_kwargs: the call was counted.
    assert text == sent["kwargs"].blocks[0]
    assert results["block"].tokens_in == results["kwargs"].tokens_in


# ------------------------------------------------------------------------------------------ Haystack tool calls
def test_haystack_tool_call_arguments_json_cannot_hold_are_an_input_error() -> None:
    call = ToolCall(tool_name="events", arguments={"since": datetime.date(2024, 1, 1)}, id="c1")
    chat = [
        HaystackMessage.from_user("What happened?"),
        HaystackMessage.from_assistant(tool_calls=[call]),
        HaystackMessage.from_tool("Nothing much happened. " * 50, origin=call),
    ]
    with pytest.raises(pz.InputError, match=r"messages\[1\] cannot be read as a chat message: .*'events'.*date"):
        PromptZipChatCompressor(budget=60, zipper=fresh()).run(chat)


# ------------------------------------------------------------------------------------------ the decorator
DOCS = "\n\n".join(f"Passage {i}. Town {i} rebuilt its harbour in {1900 + i}." for i in range(40))
HARBOUR = "When did town 17 rebuild its harbour?"


def test_the_decorator_measures_relevance_against_the_question_default() -> None:
    seen: list[pz.Result] = []

    @pz.compress_call(budget=40, arg="prompt", question="q", zipper=fresh(), on_result=seen.append)
    def ask(prompt: str, q: str = HARBOUR) -> str:
        return prompt

    by_default = ask(DOCS)
    assert "1917" in by_default  # without the question, BM25 has nothing to rank by and passage 17 is cut
    assert by_default == ask(DOCS, HARBOUR)
    assert len(seen) == 2
    assert ask(None) is None  # the compressed argument itself, not passed: left alone


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(reply="The tower is 330 metres tall.") as server:
        yield server


def sdk_chat() -> list[Any]:
    reply = ChatCompletionMessage(role="assistant", content="The tower is 330 metres tall. " * 30)
    return [{"role": "user", "content": "How tall is it?"}, reply, {"role": "user", "content": "And in feet?"}]


def test_the_decorator_reads_sdk_messages_as_wrap_does(fake: FakeOpenAI) -> None:
    @pz.compress_call(budget=60, zipper=fresh())
    def ask(messages: list[Any]) -> list[Any]:
        return messages

    decorated = ask(sdk_chat())
    with openai.OpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0) as client:
        pz.wrap(client, budget=60, zipper=fresh()).chat.completions.create(model="gpt-4o", messages=sdk_chat())
    assert [openai_dict(m) for m in decorated] == fake.last("/v1/chat/completions").json()["messages"]
    assert len(decorated[1]["content"]) < len(sdk_chat()[1].content)

    short = [{"role": "user", "content": "How tall is it?"}, ChatCompletionMessage(role="assistant", content="330 m.")]
    assert ask(short) is short  # fits: the same list, the SDK's object in it


def openai_dict(message: Any) -> Any:
    return message.model_dump(exclude_none=True) if isinstance(message, ChatCompletionMessage) else message


def test_a_langchain_message_given_to_the_decorator_names_the_langchain_door() -> None:
    @pz.compress_call(budget=60, zipper=fresh())
    def ask(messages: list[Any]) -> list[Any]:
        return messages

    with pytest.raises(pz.InputError, match=r"messages\[0\] is a LangChain HumanMessage: .*PromptZipRunnable"):
        ask([HumanMessage(content="How tall is it?")])


# ------------------------------------------------------------------------------------------ budgets at every door
@pytest.mark.parametrize("cls", [PromptZipCompressor, PromptZipRunnable])
@pytest.mark.parametrize("rate", [True, "0.3"])
def test_langchain_refuses_a_rate_the_other_doors_refuse(cls: Any, rate: object) -> None:
    with pytest.raises(pz.BudgetError, match=r"Budget\.rate must be a number"):
        cls(rate=rate, cache="memory")
    with pytest.raises(pz.BudgetError, match=r"Budget\.rate must be a number"):
        pz.Budget(rate=rate)  # type: ignore[arg-type]


def numpy_budget_doors() -> list[Any]:
    """The doors that refused a numpy integer (pz.compress, wrap() and LangChain took it already)."""
    return [
        lambda b: PromptZipDocumentCompressor(budget=b, zipper=fresh()).spec,
        lambda b: PromptZipChatCompressor(budget=b, zipper=fresh()).spec,
        lambda b: PromptZipNodePostprocessor(budget=b, zipper=fresh()).spec,
        lambda b: PromptZipLLM(MockLLM(), budget=b, zipper=fresh()).spec,
    ]


@pytest.mark.parametrize(
    "door", numpy_budget_doors(), ids=["haystack-documents", "haystack-chat", "llama-index-nodes", "llama-index-llm"]
)
def test_a_numpy_integer_budget_is_an_int_at_every_door(door: Any) -> None:
    spec = door(np.int64(50))
    assert spec == pz.Budget(tokens=50)
    assert type(spec.tokens) is int


def test_a_numpy_float_rate_is_a_rate_at_every_door() -> None:
    # np.float32 is no float: Budget and the Haystack / LlamaIndex settings refused it, np.float64 (a float) passed
    rate = np.float32(0.25)
    assert pz.Budget(rate=rate) == pz.Budget(rate=0.25)
    assert type(pz.Budget(rate=rate).rate) is float
    assert PromptZipDocumentCompressor(rate=rate, zipper=fresh()).spec == pz.Budget(rate=0.25)
    assert PromptZipNodePostprocessor(rate=rate, zipper=fresh()).spec == pz.Budget(rate=0.25)
    result = fresh().compress("The tower is 330 metres tall. " * 20, rate=rate)
    assert result.budget == int(0.25 * result.tokens_in)
    with pytest.raises(pz.BudgetError, match="in \\(0, 1\\]"):
        pz.Budget(rate=np.float32("nan"))


def test_a_haystack_component_with_a_numpy_budget_serializes_it_as_an_int() -> None:
    data = PromptZipDocumentCompressor(budget=np.int64(50)).to_dict()
    assert type(data["init_parameters"]["budget"]) is int
    assert json.loads(json.dumps(data))["init_parameters"]["budget"] == 50


@pytest.mark.parametrize("option", [np.int64(50), {"budget": np.int32(50)}], ids=["int", "dict"])
def test_a_per_call_numpy_budget_is_taken(fake: FakeOpenAI, option: object) -> None:
    chat = [{"role": "user", "content": f"Context:\n{REPORT}\n\nQuestion: {QUESTION}"}]
    seen: list[pz.Result] = []
    with openai.OpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0) as client:
        wrapped = pz.wrap(client, budget=2000, zipper=fresh(), on_result=seen.append)
        wrapped.chat.completions.create(model="gpt-4o", messages=chat, promptzip=option)
    assert seen[-1].budget == 50
    assert len(fake.last("/v1/chat/completions").json()["messages"][0]["content"]) < len(chat[0]["content"])


# -- retrieved documents that mention promptzip's own markup ------------------------------------------------------
PAGE = "In our template language, write <pz drop> before a section and </pz> after it. The tower is 330 m tall."
FILLER = "Bananas are yellow and grow in bunches in the tropics. " * 6


def document_doors() -> list[Any]:
    """Each door's compression of (texts, query, budget): the texts that came back."""
    from haystack import Document as HaystackDocument
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    def langchain(texts: list[str], query: str, budget: int) -> list[str]:
        docs = [Document(page_content=t) for t in texts]
        return [
            d.page_content for d in PromptZipCompressor(budget=budget, zipper=fresh()).compress_documents(docs, query)
        ]

    def haystack(texts: list[str], query: str, budget: int) -> list[str]:
        docs = [HaystackDocument(content=t) for t in texts]
        out = PromptZipDocumentCompressor(budget=budget, zipper=fresh()).run(documents=docs, query=query)
        return [d.content or "" for d in out["documents"]]

    def llama_index(texts: list[str], query: str, budget: int) -> list[str]:
        nodes = [NodeWithScore(node=TextNode(text=t), score=1.0) for t in texts]
        post = PromptZipNodePostprocessor(budget=budget, zipper=fresh())
        return [n.node.get_content() for n in post.postprocess_nodes(nodes, query_bundle=QueryBundle(query))]

    return [langchain, haystack, llama_index]


@pytest.mark.parametrize("door", document_doors(), ids=["langchain", "haystack", "llama-index"])
def test_a_retrieved_page_about_pz_tags_is_text_not_markup(door: Any) -> None:
    # A page whose <pz …> tags do not parse (here an unknown attribute) failed the whole retrieval with an
    # InputError; it is the page's own text: kept as it is when it fits, cut like any text when it does not.
    assert door([PAGE], "How tall is the tower?", 1000) == [PAGE]
    cut = door([PAGE, FILLER], "How tall is the tower?", 14)
    assert any("The tower is 330 m tall." in t for t in cut)
    assert all("<pz drop>" not in t or t == PAGE for t in cut)
    # text the caller writes for promptzip is still held to its syntax
    with pytest.raises(pz.InputError, match="unknown attribute"):
        fresh().compress(PAGE, question="How tall is the tower?", budget=100)
