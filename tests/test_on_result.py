"""What the model did not get, seen from the doors that send a call on: ``pz.wrap(..., on_result=)`` and
``@pz.compress_call(..., on_result=)`` hand each compressed call's ``Result`` to the callback before the call goes
out (the real ``openai`` and ``anthropic`` SDKs against the recording fake upstream), its ``dropped`` spans are
exactly what is missing from what arrived, and a call sent as given reports nothing."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import anthropic
import openai
import pytest
from proxy_helpers import REPORT, last_body

import promptzip as pz
from promptzip.integrations.proxy.testing import FakeUpstream

QUESTION = "How many ships did the harbour handle in year 12?"
CHAT = [
    {"role": "system", "content": "Answer from the documents."},
    {"role": "user", "content": f"Documents:\n{REPORT}\n\nQuestion: {QUESTION}"},
]


def test_a_wrapped_client_reports_what_it_dropped(upstream: FakeUpstream, bm25: pz.Zipper) -> None:
    seen: list[pz.Result] = []
    with openai.OpenAI(base_url=upstream.url, api_key="sk-test", max_retries=0) as raw:
        client = pz.wrap(raw, budget=150, zipper=bm25, on_result=seen.append)
        client.chat.completions.create(model="gpt-4o", messages=CHAT, promptzip={"budget": 150})
        sent = last_body(upstream, "/v1/chat/completions")["messages"]
        assert len(seen) == 1
        result = seen[0]
        assert result.tokens_out <= 150 < result.tokens_in
        assert [dict(m) for m in result.messages or ()] == sent  # the Result is of the call that went out
        dropped = [d.text for d in result.dropped]
        assert dropped
        assert all(text not in sent[1]["content"] for text in dropped)  # each dropped span is missing upstream
        assert "Sentence 12 of the report" not in " ".join(dropped)  # the answer was not among them

        client.chat.completions.create(model="gpt-4o", messages=[*CHAT[:1], {"role": "user", "content": "Hi"}])
        client.chat.completions.create(model="gpt-4o", messages=CHAT, promptzip=False)
    assert len(seen) == 1  # a chat that fits, and one sent as given, report nothing


def test_an_anthropic_client_reports_from_the_thread_that_compressed(upstream: FakeUpstream, bm25: pz.Zipper) -> None:
    threads: list[str] = []

    def record(result: pz.Result) -> None:
        assert result.tokens_out <= 150
        threads.append(threading.current_thread().name)

    async def call() -> None:
        async with anthropic.AsyncAnthropic(
            base_url=upstream.url.removesuffix("/v1"), api_key="k", max_retries=0
        ) as raw:
            client = pz.wrap(raw, budget=150, zipper=bm25, on_result=record)
            await client.messages.create(
                model="claude-sonnet-4-5", max_tokens=16, system=CHAT[0]["content"], messages=CHAT[1:]
            )

    asyncio.run(call())
    assert len(threads) == 1
    assert threads[0] != threading.main_thread().name  # async calls compress in a worker thread


def test_the_decorator_reports_prompts_and_chats(bm25: pz.Zipper) -> None:
    seen: list[pz.Result] = []

    @pz.compress_call(budget=150, zipper=bm25, on_result=seen.append)
    def ask(messages: Any) -> Any:
        return messages

    out = ask(CHAT)
    assert len(seen) == 1
    assert [dict(m) for m in seen[0].messages or ()] == out

    @pz.compress_call(budget=80, arg="prompt", zipper=bm25, on_result=seen.append)
    def complete(prompt: str) -> str:
        return prompt

    text = complete(f"Answer from the documents.\n\nDocuments:\n{REPORT}\n\nQuestion: {QUESTION}")
    assert len(seen) == 2
    assert seen[1].text == text
    assert seen[1].dropped


def test_a_callback_that_raises_stops_the_call(upstream: FakeUpstream, bm25: pz.Zipper) -> None:
    def refuse(result: pz.Result) -> None:
        raise RuntimeError(f"too much dropped: {len(result.dropped)} spans")

    before = len(upstream.requests)
    with openai.OpenAI(base_url=upstream.url, api_key="sk-test", max_retries=0) as raw:
        client = pz.wrap(raw, budget=150, zipper=bm25, on_result=refuse)
        with pytest.raises(RuntimeError, match="too much dropped"):
            client.chat.completions.create(model="gpt-4o", messages=CHAT)
    assert len(upstream.requests) == before  # nothing was sent


def test_on_result_must_be_callable(bm25: pz.Zipper) -> None:
    with (
        openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="sk-test") as raw,
        pytest.raises(pz.ConfigError, match="on_result"),
    ):
        pz.wrap(raw, budget=150, zipper=bm25, on_result="print")  # type: ignore[arg-type]
