"""Haystack chat: ``PromptZipChatCompressor`` between a real ``ChatPromptBuilder`` and a real ``OpenAIChatGenerator``
(which talks to the recording fake upstream on 127.0.0.1), and in an agent loop's messages: the request goes out
as the proxy and ``pz.wrap`` send it, tool results are cut by their structure, and everything that is not text
arrives as given. Telemetry is off before Haystack loads."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest

os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"  # before the first import of haystack: it would phone home
pytest.importorskip("haystack")

from haystack import Pipeline
from haystack.components.builders import ChatPromptBuilder
from haystack.components.generators.chat import OpenAIChatGenerator
from haystack.dataclasses import ChatMessage, ImageContent, TextContent, ToolCall
from haystack.utils import Secret
from proxy_helpers import REPORT, bm25, last_body

import promptzip as pz
from promptzip._cache import MemoryCache
from promptzip._messages import message_tokens
from promptzip.integrations.haystack import PromptZipChatCompressor
from promptzip.integrations.proxy.testing import FakeUpstream

BUDGET = 150
TOOL_BUDGET = 250
QUESTION = "How many ships in year 12?"
RECORDS = json.dumps([{"year": i, "port": "Oslo", "ships": i * 7, "storms": i * 3} for i in range(60)])
# Haystack's RAG tutorial shape: the retrieved documents in the system message, the question as the user turn.
TEMPLATE = [
    ChatMessage.from_system("Answer from the documents only.\n\nDocuments:\n{{ documents }}"),
    ChatMessage.from_user("{{ question }}"),
]


def fresh() -> pz.Zipper:
    """The proxy tests' stack with a cache of its own, so no conversation state carries over between requests."""
    return bm25("fast", "gpt-4o", MemoryCache())


def openai_form(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    return [m.to_openai_dict_format() for m in messages]


def agent_loop(tag: str) -> list[ChatMessage]:
    """An agent's third request: the question, the model's tool call, the tool's JSON result."""
    call = ToolCall(tool_name="harbour_log", arguments={"port": "Oslo"}, id=f"call_{tag}")
    return [
        ChatMessage.from_system("You answer from tool results."),
        ChatMessage.from_user(f"[{tag}] {QUESTION}", meta={"turn": 1}),
        ChatMessage.from_assistant("Let me look.", tool_calls=[call]),
        ChatMessage.from_tool(RECORDS, origin=call),
    ]


def test_a_rag_pipeline_sends_what_the_proxy_sends(live: str, upstream: FakeUpstream, gpt4o: pz.Tokenizer) -> None:
    """ChatPromptBuilder -> compressor -> OpenAIChatGenerator: the generator's request reaches the upstream as the
    same chat sent through the running proxy does, the instruction and question whole, inside the budget."""
    pipeline = Pipeline()
    pipeline.add_component("builder", ChatPromptBuilder(template=TEMPLATE, required_variables="*"))
    pipeline.add_component("compressor", PromptZipChatCompressor(budget=BUDGET, zipper=fresh()))
    generator = OpenAIChatGenerator(api_key=Secret.from_token("sk-test"), model="gpt-4o", api_base_url=upstream.url)
    pipeline.add_component("llm", generator)
    pipeline.connect("builder.prompt", "compressor.messages")
    pipeline.connect("compressor.messages", "llm.messages")
    try:
        out = pipeline.run({"builder": {"documents": REPORT, "question": f"[haystack] {QUESTION}"}})
    finally:
        generator.close()
    assert out["llm"]["replies"][0].text  # the fake's answer, parsed by Haystack
    via_haystack = last_body(upstream, "/v1/chat/completions")["messages"]

    import openai

    chat = [{"role": "system", "content": f"Answer from the documents only.\n\nDocuments:\n{REPORT}"}]
    chat.append({"role": "user", "content": f"[haystack] {QUESTION}"})
    headers = {"x-promptzip-budget": str(BUDGET)}
    with openai.OpenAI(base_url=live + "/v1", api_key="sk-test", default_headers=headers, max_retries=0) as client:
        client.chat.completions.create(model="gpt-4o", messages=chat)  # type: ignore[arg-type]
    assert via_haystack == last_body(upstream, "/v1/chat/completions")["messages"]
    assert via_haystack[1] == chat[1]
    assert via_haystack[0]["content"].startswith("Answer from the documents only.")
    assert "84 ships" in via_haystack[0]["content"]  # sentence 12: the answer
    assert message_tokens(via_haystack, gpt4o.count) <= BUDGET < message_tokens(chat, gpt4o.count)


def test_an_agent_loop_keeps_its_tool_calls_and_cuts_the_tool_result_by_structure(gpt4o: pz.Tokenizer) -> None:
    messages = agent_loop("agent")
    out = PromptZipChatCompressor(budget=TOOL_BUDGET, zipper=fresh()).run(messages)["messages"]
    assert len(out) == len(messages)
    assert all(a is b for a, b in zip(out[:3], messages[:3], strict=True))  # left alone: the same objects
    result = out[3].tool_call_result
    assert result is not None
    assert result.origin == messages[3].tool_call_result.origin
    kept = json.loads(result.result)  # type: ignore[arg-type]
    assert len(result.result) < len(RECORDS)
    assert any(r.get("year") == 12 for r in kept if isinstance(r, dict))
    assert message_tokens(openai_form(out), gpt4o.count) <= TOOL_BUDGET
    # the same chat through compress_messages on its OpenAI form: the same texts
    want = fresh().compress_messages(openai_form(messages), budget=TOOL_BUDGET).messages
    assert openai_form(out) == [dict(m) for m in want or ()]


def test_media_names_and_meta_arrive_as_given() -> None:
    image = ImageContent(base64_image="aGVsbG8=", mime_type="image/png")
    long = f"Documents:\n{REPORT}\n\n{QUESTION}"
    messages = [
        ChatMessage.from_user(content_parts=[TextContent(long), image], name="ana", meta={"source": "ui"}),
    ]
    out = PromptZipChatCompressor(budget=BUDGET, zipper=fresh()).run(messages)["messages"]
    (message,) = out
    assert message.name == "ana"
    assert message.meta == {"source": "ui"}
    assert message.images == [image]
    assert message.text is not None
    assert len(message.text) < len(long)
    assert message.text.endswith(QUESTION)


def test_run_async_and_scope(gpt4o: pz.Tokenizer) -> None:
    messages = [
        ChatMessage.from_user(f"Summarise this.\n\n{REPORT}"),
        ChatMessage.from_assistant(REPORT),
        ChatMessage.from_user(f"Documents:\n{REPORT}\n\n{QUESTION}"),
    ]
    history = PromptZipChatCompressor(rate=0.5, scope="history", zipper=fresh())
    out = asyncio.run(history.run_async(messages))["messages"]
    assert out[2] is messages[2]  # the last user turn stays whole with scope="history"
    assert out[1].text is not None
    assert len(out[1].text) < len(REPORT)


def test_serialization_and_bad_input() -> None:
    compressor = PromptZipChatCompressor(budget=300, scope="history", pricing=pz.pricing_for("claude-sonnet-4-5"))
    again = PromptZipChatCompressor.from_dict(compressor.to_dict())
    assert (again.spec, again.scope, again.pricing) == (compressor.spec, "history", compressor.pricing)
    named = PromptZipChatCompressor.from_dict(PromptZipChatCompressor(rate=0.3, pricing="gpt-4.1").to_dict())
    assert named.pricing == "gpt-4.1"
    with pytest.raises(pz.ConfigError, match="ready zipper"):
        PromptZipChatCompressor(budget=100, zipper=fresh()).to_dict()
    with pytest.raises(pz.ConfigError, match="scope"):
        PromptZipChatCompressor(budget=100, scope="everything")
    with pytest.raises(pz.ConfigError, match="pricing"):
        PromptZipChatCompressor(budget=100, pricing=3)  # type: ignore[arg-type]
    with pytest.raises(pz.InputError, match=r"messages\[1\]"):
        PromptZipChatCompressor(budget=100, zipper=fresh()).run([ChatMessage.from_user("hi"), "hello"])  # type: ignore[list-item]
    with pytest.raises(pz.InputError, match="list"):
        PromptZipChatCompressor(budget=100, zipper=fresh()).run("hello")  # type: ignore[arg-type]
