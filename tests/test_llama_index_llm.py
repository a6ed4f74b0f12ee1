"""LlamaIndex: ``PromptZipLLM`` around LlamaIndex's own mock LLMs, inside a real context chat engine over a real
``VectorStoreIndex`` and in a function-calling chat: the wrapped LLM gets the request as the core compresses its
OpenAI form (what the proxy and ``pz.wrap`` send), tool results cut by their structure, the rest as given."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import VectorStoreIndex
from llama_index.core.base.llms.types import ChatMessage, ImageBlock, MessageRole, TextBlock
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms.mock import (
    MockFunctionCallingLLMWithChatMemoryOfLastCall,
    MockLLM,
    MockLLMWithChatMemoryOfLastCall,
)
from llama_index.core.memory import ChatMemoryBuffer
from llama_index.core.schema import TextNode
from llama_index.core.tools import FunctionTool
from proxy_helpers import REPORT, bm25

import promptzip as pz
from promptzip._cache import MemoryCache
from promptzip._messages import message_tokens
from promptzip.integrations.llama_index import PromptZipLLM

BUDGET = 200
TOOL_BUDGET = 250
QUESTION = "How many ships in year 12?"
RECORDS = json.dumps([{"year": i, "port": "Oslo", "ships": i * 7, "storms": i * 3} for i in range(60)])


def fresh() -> pz.Zipper:
    """A model-free stack with a cache of its own, so no conversation state carries over between tests."""
    return bm25("fast", "gpt-4o", MemoryCache())


def openai_form(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """What the core reads: role, text, and the tool fields of ``additional_kwargs``."""
    out = []
    for m in messages:
        d: dict[str, Any] = {"role": m.role.value, "content": m.content or None}
        d |= {k: m.additional_kwargs[k] for k in ("tool_calls", "tool_call_id") if k in m.additional_kwargs}
        out.append(d)
    return out


def engine_prompt(llm: Any) -> str:
    """The prompt a context chat engine over the report's sentences sends ``llm`` for the question: the mock LLM
    is not a chat model, so the engine's synthesizer completes one prompt, which the mock echoes as its answer."""
    nodes = [TextNode(text=s.strip() + ".", id_=f"s{i}") for i, s in enumerate(REPORT.split(".")) if s.strip()]
    index = VectorStoreIndex(nodes, embed_model=MockEmbedding(embed_dim=8))
    # A memory buffer in the process: the default Memory opens an aiosqlite store that nothing here closes.
    memory = ChatMemoryBuffer.from_defaults(token_limit=100_000)
    engine = index.as_chat_engine(chat_mode="context", llm=llm, similarity_top_k=len(nodes), memory=memory)
    # achat on a loop of its own: the sync chat runs the engine on an event loop that LlamaIndex leaves open
    return str(asyncio.run(engine.achat(f"[chat] {QUESTION}")).response)


def test_a_context_chat_engine_sends_what_the_core_compresses(gpt4o: pz.Tokenizer) -> None:
    plain = engine_prompt(MockLLM())
    sent = engine_prompt(PromptZipLLM(MockLLM(), budget=BUDGET, zipper=fresh()))
    assert sent == fresh().compress_prompt(plain, budget=BUDGET).text
    tail = plain.rsplit("-" * 20, 1)[1]  # what the engine's template puts after the context: the question
    assert sent.endswith(tail)
    assert QUESTION in tail
    assert "84 ships" in sent  # sentence 12: the answer
    assert gpt4o.count(sent) <= BUDGET < gpt4o.count(plain)


def test_a_chat_goes_out_as_the_core_compresses_its_openai_form(gpt4o: pz.Tokenizer) -> None:
    inner = MockLLMWithChatMemoryOfLastCall()
    system = f"Answer from the documents only.\n\nDocuments:\n{REPORT}"
    given = [ChatMessage(role=MessageRole.SYSTEM, content=system), ChatMessage(role=MessageRole.USER, content=QUESTION)]
    PromptZipLLM(inner, budget=BUDGET, zipper=fresh()).chat(given)
    sent = list(inner.last_chat_messages or ())
    want = fresh().compress_messages(openai_form(given), budget=BUDGET).messages
    assert [m.content for m in sent] == [m["content"] for m in want or ()]
    assert sent[1] is given[1]  # the question, the same object
    assert "84 ships" in (sent[0].content or "")
    assert message_tokens(openai_form(sent), gpt4o.count) <= BUDGET


def tool_loop() -> list[ChatMessage]:
    call = {"id": "call_1", "type": "function", "function": {"name": "harbour_log", "arguments": '{"port": "Oslo"}'}}
    return [
        ChatMessage(role=MessageRole.SYSTEM, content="You answer from tool results."),
        ChatMessage(role=MessageRole.USER, content=QUESTION),
        ChatMessage(role=MessageRole.ASSISTANT, content="Let me look.", additional_kwargs={"tool_calls": [call]}),
        ChatMessage(role=MessageRole.TOOL, content=RECORDS, additional_kwargs={"tool_call_id": "call_1"}),
    ]


def test_chat_with_tools_cuts_the_tool_result_by_structure() -> None:
    def harbour_log(port: str) -> str:
        """The harbour's yearly log."""
        return RECORDS

    inner = MockFunctionCallingLLMWithChatMemoryOfLastCall()
    llm = PromptZipLLM(inner, budget=TOOL_BUDGET, zipper=fresh())
    history = tool_loop()
    llm.chat_with_tools(tools=[FunctionTool.from_defaults(harbour_log)], chat_history=history)
    sent = list(inner.last_chat_messages or ())
    assert sent[:3] == history[:3]
    assert all(a is b for a, b in zip(sent[:3], history[:3], strict=True))  # left alone: the same objects
    assert sent[3].additional_kwargs == history[3].additional_kwargs
    kept = json.loads(sent[3].content or "")
    assert len(sent[3].content or "") < len(RECORDS)
    assert any(r.get("year") == 12 for r in kept if isinstance(r, dict))
    assert llm.metadata == inner.metadata


def test_async_streaming_and_complete() -> None:
    inner = MockLLMWithChatMemoryOfLastCall()
    llm = PromptZipLLM(inner, budget=BUDGET, zipper=fresh())
    image = ImageBlock(url="https://example.com/harbour.png")
    messages = [
        ChatMessage(role=MessageRole.USER, blocks=[TextBlock(text=f"Documents:\n{REPORT}\n\n{QUESTION}"), image]),
    ]

    async def run() -> None:
        response = await llm.astream_chat(messages)
        assert [chunk async for chunk in response]

    asyncio.run(run())
    assert inner.last_called_chat_function[0] == "astream_chat"
    (sent,) = inner.last_chat_messages or ()
    assert sent.blocks[1] == image  # only text changes
    assert isinstance(sent.blocks[0], TextBlock)
    assert sent.blocks[0].text.endswith(QUESTION)
    assert len(sent.blocks[0].text) < len(REPORT)

    prompt = f"Answer from the documents.\n\nDocuments:\n{REPORT}\n\nQuestion: {QUESTION}"
    echoed = PromptZipLLM(MockLLM(), budget=BUDGET, zipper=fresh()).complete(prompt).text  # the mock echoes it
    assert echoed.startswith("Answer from the documents.")
    assert echoed.endswith(f"Question: {QUESTION}")
    assert len(echoed) < len(prompt)


def test_settings_and_bad_input() -> None:
    with pytest.raises(pz.ConfigError, match="LlamaIndex LLM"):
        PromptZipLLM("gpt-4o", budget=100)  # type: ignore[arg-type]
    with pytest.raises(pz.ConfigError, match="scope"):
        PromptZipLLM(MockLLM(), budget=100, scope="everything")
    with pytest.raises(pz.ConfigError, match="pricing"):
        PromptZipLLM(MockLLM(), budget=100, pricing=3)  # type: ignore[arg-type]
    with pytest.raises(pz.BudgetError):
        PromptZipLLM(MockLLM(), rate=2.0)
    llm = PromptZipLLM(MockLLM(), budget=100, zipper=fresh())
    with pytest.raises(pz.ConfigError, match="does not call functions"):
        llm.get_tool_calls_from_response(None)  # type: ignore[arg-type]
    with pytest.raises(pz.InputError, match=r"messages\[1\]"):
        llm.chat([ChatMessage(role="user", content="hi"), "hello"])  # type: ignore[list-item]
    # a role the core does not read (Cohere's "chatbot"): the chat goes to the wrapped LLM as given
    inner = MockLLMWithChatMemoryOfLastCall()
    odd = [ChatMessage(role=MessageRole.CHATBOT, content=REPORT), ChatMessage(role="user", content=QUESTION)]
    PromptZipLLM(inner, budget=60, zipper=fresh()).chat(odd)
    assert list(inner.last_chat_messages or ()) == odd
