"""A rate is a target, a token budget a cap: a chat made mostly of what is kept verbatim (an agent's first step: a
system prompt and a question) cannot shrink to ``rate=0.3``. Every door that sends the chat on sends it as given
then, as the proxy forwards it, so ``rate=`` works in an agent loop from its first step; a token budget the same
chat cannot meet stays a ``BudgetError`` and nothing is sent. The doors: ``pz.wrap`` around the real ``openai`` and
``anthropic`` SDKs (the recording fake upstream on 127.0.0.1), the decorator and the LangChain Runnable."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import anthropic
import openai
import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from proxy_helpers import REPORT, bm25, last_body

import promptzip as pz
from promptzip._cache import MemoryCache
from promptzip.integrations.langchain import PromptZipRunnable
from promptzip.integrations.proxy.testing import FakeUpstream

SYSTEM = "You answer from the harbour records. Call a tool when you need them."
QUESTION = "How many ships did Oslo handle in year 12, and Bergen in year 12?"
FIRST_STEP = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]


def fresh() -> pz.Zipper:
    return bm25("fast", "gpt-4o", MemoryCache())


@pytest.fixture(autouse=True)
def _no_sdk_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


Send = Callable[[list[dict[str, Any]], Any], Any]


def through_openai(upstream: FakeUpstream, stack: ExitStack, **settings: Any) -> Send:
    client = stack.enter_context(openai.OpenAI(base_url=upstream.url, api_key="sk-test", max_retries=0))
    wrapped = pz.wrap(client, zipper=fresh(), **settings)

    def send(messages: list[dict[str, Any]], options: Any) -> Any:
        wrapped.chat.completions.create(model="gpt-4o", messages=messages, promptzip=options)
        return last_body(upstream, "/v1/chat/completions")["messages"]

    return send


def through_anthropic(upstream: FakeUpstream, stack: ExitStack, **settings: Any) -> Send:
    base = upstream.url.removesuffix("/v1")
    client = stack.enter_context(anthropic.Anthropic(base_url=base, api_key="sk-ant-test", max_retries=0))
    wrapped = pz.wrap(client, zipper=fresh(), **settings)

    def send(messages: list[dict[str, Any]], options: Any) -> Any:
        system, chat = messages[0]["content"], messages[1:]
        wrapped.messages.create(
            model="claude-sonnet-4-5", max_tokens=64, system=system, messages=chat, promptzip=options
        )
        body = last_body(upstream, "/v1/messages")
        return [{"role": "system", "content": body["system"]}, *body["messages"]]

    return send


DOORS = {"openai": through_openai, "anthropic": through_anthropic}


@pytest.mark.parametrize("door", sorted(DOORS))
def test_a_wrapped_client_sends_a_chat_the_rate_cannot_shrink_as_given(upstream: FakeUpstream, door: str) -> None:
    with ExitStack() as stack:
        check_a_door(upstream, DOORS[door](upstream, stack, rate=0.3))


def check_a_door(upstream: FakeUpstream, send: Send) -> None:
    assert send(FIRST_STEP, None) == FIRST_STEP
    # the same door still compresses a chat with context to the rate
    rag = [{"role": "system", "content": f"{SYSTEM}\n\nDocuments:\n{REPORT}"}, {"role": "user", "content": QUESTION}]
    sent = send(rag, None)
    assert sent[1] == rag[1]
    assert len(sent[0]["content"]) < 0.5 * len(rag[0]["content"])
    # a token cap the chat cannot meet is the caller's: an error, and nothing is sent
    before = len(upstream.requests)
    with pytest.raises(pz.BudgetError, match="kept verbatim"):
        send(FIRST_STEP, {"budget": 10})
    assert len(upstream.requests) == before


def test_the_decorator_and_the_runnable_do_the_same() -> None:
    seen: list[Any] = []

    @pz.compress_call(rate=0.3, zipper=fresh())
    def call(messages: list[dict[str, Any]]) -> None:
        seen.append(messages)

    call(FIRST_STEP)
    assert seen == [FIRST_STEP]
    with pytest.raises(pz.BudgetError):
        pz.compress_call(budget=10, zipper=fresh())(call.__wrapped__)(FIRST_STEP)  # type: ignore[attr-defined]

    messages = [SystemMessage(SYSTEM), HumanMessage(QUESTION)]
    assert PromptZipRunnable(rate=0.3, zipper=fresh()).invoke(messages) == messages
    with pytest.raises(pz.BudgetError):
        PromptZipRunnable(budget=10, zipper=fresh()).invoke(messages)


# An agent's system prompt: long, but an instruction (kept verbatim), over the proxy tests' min_tokens.
LONG_SYSTEM = " ".join(
    f"Rule {i}: when the records are asked about, call the harbour tool and quote the year it gives." for i in range(9)
)


def test_the_proxy_forwards_it_as_a_pass_through_not_a_failure(live: str, upstream: FakeUpstream) -> None:
    chat = [{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": QUESTION}]
    with openai.OpenAI(base_url=live + "/v1", api_key="sk-test", max_retries=0) as client:
        sent = client.chat.completions.with_raw_response.create(
            model="gpt-4o",
            messages=chat,  # type: ignore[arg-type]
            extra_headers={"x-promptzip-rate": "0.3"},
        )
        assert (sent.headers["x-promptzip-status"], sent.headers["x-promptzip-reason"]) == (
            "passthrough",
            "rate-unreachable",
        )
        assert last_body(upstream, "/v1/chat/completions")["messages"] == chat
        capped = client.chat.completions.with_raw_response.create(
            model="gpt-4o",
            messages=chat,  # type: ignore[arg-type]
            extra_headers={"x-promptzip-budget": "20"},
        )
        assert capped.headers["x-promptzip-status"] == "fail-open"  # a cap it cannot meet is a failure, shown
        assert capped.headers["x-promptzip-error"] == "budget_not_met"
