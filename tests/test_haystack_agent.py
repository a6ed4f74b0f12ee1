"""Haystack agents: ``PromptZipChatGenerator`` wraps a real ``OpenAIChatGenerator`` inside a real Haystack ``Agent``,
which calls it once per step. The provider is a scripted chat-completions server on 127.0.0.1 (a real HTTP server):
it asks for a tool until the chat holds two tool results, then answers. Each step's request is compressed as the
chat compressor compresses it, the tool results are cut by their structure, a step's request starts with the
previous step's request byte for byte (cache-stable history), and the agent keeps its full history. Telemetry is off
before Haystack loads."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"  # before the first import of haystack: it would phone home
pytest.importorskip("haystack")

from haystack import Pipeline
from haystack.components.agents import Agent
from haystack.components.generators.chat import OpenAIChatGenerator
from haystack.dataclasses import ChatMessage, StreamingChunk
from haystack.tools import Tool
from haystack.utils import Secret
from proxy_helpers import REPORT, bm25, last_body

import promptzip as pz
from promptzip._cache import MemoryCache
from promptzip._messages import message_tokens
from promptzip.integrations.haystack import PromptZipChatCompressor, PromptZipChatGenerator
from promptzip.integrations.proxy.testing import FakeUpstream

QUESTION = "How many ships did Oslo handle in year 12, and Bergen in year 12?"
PORTS = ("Oslo", "Bergen")
RATE = 0.3


def harbour_log(port: str) -> str:
    """Sixty years of a port's harbour records, as an API would return them."""
    factor = 7 if port == "Oslo" else 5
    return json.dumps([{"year": i, "port": port, "ships": i * factor, "storms": i * 3} for i in range(60)])


TOOL = Tool(
    name="harbour_log",
    description="The yearly harbour records of a port.",
    parameters={"type": "object", "properties": {"port": {"type": "string"}}, "required": ["port"]},
    function=harbour_log,
)


class ScriptedProvider:
    """A chat-completions server that calls ``harbour_log`` for each port in turn, then answers; it records every
    request body."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                provider.bodies.append(body)
                answer = json.dumps(provider.answer(body)).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        done = sum(1 for m in body["messages"] if m["role"] == "tool")
        if done < len(PORTS):
            arguments = json.dumps({"port": PORTS[done]})
            call = {
                "id": f"call_{done}",
                "type": "function",
                "function": {"name": "harbour_log", "arguments": arguments},
            }
            message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        else:
            message, finish = {"role": "assistant", "content": "Oslo 84, Bergen 60."}, "stop"
        choice = {"index": 0, "message": message, "finish_reason": finish}
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        return {
            "id": "chatcmpl-s",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [choice],
            "usage": usage,
        }


@pytest.fixture
def provider() -> Iterator[ScriptedProvider]:
    scripted = ScriptedProvider()
    thread = threading.Thread(target=scripted.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield scripted
    finally:
        scripted.server.shutdown()
        scripted.server.server_close()


def fresh() -> pz.Zipper:
    return bm25("fast", "gpt-4o", MemoryCache())


def generator(url: str) -> OpenAIChatGenerator:
    return OpenAIChatGenerator(api_key=Secret.from_token("sk-test"), model="gpt-4o", api_base_url=url)


def check_the_steps(provider: ScriptedProvider, messages: list[ChatMessage], gpt4o: pz.Tokenizer) -> None:
    """What the agent's three requests looked like upstream, and what the agent kept."""
    first, second, third = (body["messages"] for body in provider.bodies)
    # the agent keeps every tool result whole: only what went out was compressed
    results = [m.tool_call_result for m in messages if m.tool_call_result is not None]
    assert [r.result for r in results] == [harbour_log(p) for p in PORTS]
    assert messages[-1].text == "Oslo 84, Bergen 60."
    # each tool result went out cut by its structure: valid JSON, the asked records kept, shorter than given
    for sent, port in ((second[-1], "Oslo"), (third[-1], "Bergen")):
        assert sent["role"] == "tool"
        kept = json.loads(sent["content"])
        assert len(sent["content"]) < len(harbour_log(port))
        assert any(isinstance(r, dict) and r.get("year") == 12 and r.get("port") == port for r in kept)
    assert first == [m.to_openai_dict_format() for m in messages[:2]]  # the first step had nothing to compress
    # the whole request within the budget, counted over what the agent had
    full = [m.to_openai_dict_format() for m in messages[:-1]]
    assert message_tokens(third, gpt4o.count) <= RATE * message_tokens(full, gpt4o.count)
    # cache-stable history: the third request starts with the second as it was sent, byte for byte
    assert third[: len(second)] == second
    assert first[1]["content"] == QUESTION
    # the same steps through the chat compressor (the pipeline door) go out the same
    compressor = PromptZipChatCompressor(rate=RATE, zipper=fresh())
    for sent in (first, second, third):
        chat = [m for m in messages if not m.is_from("assistant") or m.tool_calls][: len(sent)]
        assert [m.to_openai_dict_format() for m in compressor.run(chat)["messages"]] == sent


def test_an_agent_compresses_every_step_and_keeps_its_prefix(provider: ScriptedProvider, gpt4o: pz.Tokenizer) -> None:
    wrapped = PromptZipChatGenerator(generator(provider.url), rate=RATE, zipper=fresh())
    agent = Agent(chat_generator=wrapped, tools=[TOOL], system_prompt="You answer from the harbour records.")
    agent.warm_up()
    try:
        out = agent.run(messages=[ChatMessage.from_user(QUESTION)])
    finally:
        agent.close() if hasattr(agent, "close") else wrapped.close()
    assert len(provider.bodies) == 3
    check_the_steps(provider, out["messages"], gpt4o)


def test_an_async_agent_in_a_pipeline_sends_the_same(provider: ScriptedProvider, gpt4o: pz.Tokenizer) -> None:
    async def run() -> dict[str, Any]:
        wrapped = PromptZipChatGenerator(generator(provider.url), rate=RATE, zipper=fresh())
        agent = Agent(chat_generator=wrapped, tools=[TOOL], system_prompt="You answer from the harbour records.")
        try:
            return await agent.run_async(messages=[ChatMessage.from_user(QUESTION)])
        finally:
            await wrapped.close_async()

    out = asyncio.run(run())
    check_the_steps(provider, out["messages"], gpt4o)


def test_streaming_passes_through_and_prices_follow_the_model(upstream: FakeUpstream, gpt4o: pz.Tokenizer) -> None:
    chunks: list[StreamingChunk] = []
    inner = OpenAIChatGenerator(api_key=Secret.from_token("sk-test"), model="gpt-4.1", api_base_url=upstream.url)
    wrapped = PromptZipChatGenerator(inner, budget=150, zipper=fresh())
    assert wrapped._prices() == pz.pricing_for("gpt-4.1") != pz.pricing_for("gpt-4o")
    chat = [ChatMessage.from_system(f"Documents:\n{REPORT}"), ChatMessage.from_user(QUESTION)]
    try:
        out = wrapped.run(chat, streaming_callback=chunks.append)
    finally:
        wrapped.close()
    assert chunks
    assert out["replies"][0].text == "".join(c.content for c in chunks)
    sent = last_body(upstream, "/v1/chat/completions")
    assert sent["stream"] is True
    assert (
        message_tokens(sent["messages"], gpt4o.count)
        <= 150
        < message_tokens([m.to_openai_dict_format() for m in chat], gpt4o.count)
    )
    assert chat[0].text == f"Documents:\n{REPORT}"  # the caller's messages are not changed


def test_serialization_in_an_agent_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    inner = OpenAIChatGenerator(model="gpt-4.1", api_base_url="http://127.0.0.1:9/v1")
    pipeline = Pipeline()
    pipeline.add_component("agent", Agent(chat_generator=PromptZipChatGenerator(inner, rate=0.3, scope="history")))
    loaded = Pipeline.loads(pipeline.dumps(), allowed_modules=["promptzip.integrations.haystack"])
    again = loaded.get_component("agent").chat_generator
    assert isinstance(again, PromptZipChatGenerator)
    assert (again.spec, again.scope, again.pricing) == (pz.Budget(rate=0.3), "history", None)
    assert isinstance(again.chat_generator, OpenAIChatGenerator)
    assert again.chat_generator.model == "gpt-4.1"


def test_bad_input() -> None:
    with pytest.raises(pz.ConfigError, match="chat generator"):
        PromptZipChatGenerator("gpt-4o", rate=0.3)
    with pytest.raises(pz.ConfigError, match="ready zipper"):
        PromptZipChatGenerator(generator("http://127.0.0.1:9/v1"), budget=100, zipper=fresh()).to_dict()

    class NoTools:
        def run(self, messages: list[ChatMessage]) -> dict[str, Any]:
            return {"replies": [ChatMessage.from_assistant("ok")]}

    wrapped = PromptZipChatGenerator(NoTools(), budget=100, zipper=fresh())
    assert wrapped.run("hello")["replies"][0].text == "ok"  # a str is one user message
    with pytest.raises(pz.ConfigError, match="does not take tools"):
        wrapped.run([ChatMessage.from_user("hello")], tools=[TOOL])
    with pytest.raises(pz.InputError, match=r"messages\[1\]"):
        wrapped.run([ChatMessage.from_user("hi"), "hello"])  # type: ignore[list-item]
