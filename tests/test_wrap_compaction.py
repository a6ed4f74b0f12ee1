"""Compaction in the beta ``tool_runner`` of a wrapped Anthropic client: ``runner.compact_before_next_turn()``.

How the SDK compacts: once the turn in flight is done (its tool results appended), the runner forks its message
thread and sends the whole history on the fork, through the client's ``beta.messages.create``, with
``compaction={"type": "summarize"}`` and without the fields that only shape a reply (``context_management``,
``stop_sequences``, a forced ``tool_choice``, ``output_config.format``). The API answers with one ``compaction``
block (``stop_reason: compaction``), which the runner yields like any reply; it then replaces the thread's history
with that reply (an assistant message holding the block), followed by whatever was appended to the thread
meanwhile, and carries on: the next turn starts a new server thread and sends the block first in ``messages``.

What a wrapped client does with it: the compaction request is compressed like every other turn (the model
summarises the conversation it was shown, compressed, and with a rate budget the prefix sent before goes again
byte for byte, so the provider's prompt cache keeps hitting), its other fields exactly as the SDK set them; the
``compaction`` block is never cut, moved or rewritten, since the dialect sends no block but text to the core
(:mod:`promptzip.integrations._dialects`); the turns around it are compressed as usual.

The fake upstream answers a body with ``compaction`` with a compaction block whose summary repeats the texts it
received (so a compressed request gets a shorter summary, and a summary that compression touched would show).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from proxy_helpers import REPORT, bm25

import promptzip as pz
from promptzip._cache import MemoryCache
from promptzip.integrations.proxy._fake_answers import compaction
from promptzip.integrations.proxy.testing import FakeUpstream, Recorded

BUDGET = 250
MODEL = "claude-sonnet-4-5"
BETA = "compact-2026-09-04"
PROMPT = (
    "Answer from the documents and the harbour log only.\n\n"
    f"Documents:\n{REPORT}\n\nQuestion: How many ships did the harbour handle in year 12?"
)
MORE = f"Answer from these too.\n\nDocuments:\n{REPORT}\n\nQuestion: How many storms in year 9?"
RECORDS = json.dumps([{"year": i, "port": "Oslo", "ships": i * 7, "storms": i * 3} for i in range(60)])
TOOL_MODE = {"x-fake-mode": "tool:harbour_log"}  # the fake calls harbour_log, then answers in text
# Fields the runner keeps off the compaction request and sends on every other turn.
CLEAR_TOOL_USES = {"edits": [{"type": "clear_tool_uses_20250919"}]}
SHAPING = {"context_management": CLEAR_TOOL_USES, "stop_sequences": ["END"]}
# What each request of a loop that compacts after its first reply is: the question (the model calls the tool), the
# compaction request (the tool result is the history's last message), the compaction block alone (the model calls
# the tool again), the tool's result (the model answers).
STOPS = ["tool_use", "compaction", "tool_use", "end_turn"]


@pytest.fixture(autouse=True)
def _no_sdk_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def claude(upstream: FakeUpstream) -> Iterator[anthropic.Anthropic]:
    base = upstream.url.removesuffix("/v1")
    with anthropic.Anthropic(base_url=base, api_key="sk-ant-test", max_retries=0, default_headers=TOOL_MODE) as c:
        yield c


def fresh(**kwargs: Any) -> tuple[Any, list[pz.Result]]:
    """The keyword arguments of ``pz.wrap``: the BM25 stack with a cache of its own (no conversation state carries
    over between runs), and the list its Results go to."""
    results: list[pz.Result] = []
    return {
        "budget": BUDGET,
        "zipper": bm25("fast", "gpt-4o", MemoryCache()),
        "on_result": results.append,
    } | kwargs, results


def harbour_tool(calls: list[str]) -> Any:
    @anthropic.beta_tool
    def harbour_log(port: str = "Oslo") -> str:
        """The harbour's yearly records as JSON.

        Args:
            port: the harbour.
        """
        calls.append(port)
        return RECORDS

    return harbour_log


def reply(item: Any) -> Any:
    """The message a runner yielded: a reply, or the final message of a streamed one."""
    return item.get_final_message() if isinstance(item, anthropic.lib.streaming.BetaMessageStream) else item


def run_compacting(
    client: Any, upstream: FakeUpstream, **kwargs: Any
) -> tuple[list[Any], list[dict[str, Any]], list[str]]:
    """A tool runner on ``client`` whose caller asks for compaction once the first reply is in: the replies it
    yielded, the bodies the upstream received, and the tool's calls."""
    calls: list[str] = []
    sent = len(upstream.requests)
    runner = client.beta.messages.tool_runner(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": PROMPT}],
        tools=[harbour_tool(calls)],
        betas=[BETA],
        **kwargs,
    )
    replies = []
    for item in runner:
        replies.append(reply(item))
        if len(replies) == 1:
            runner.compact_before_next_turn()
    return replies, bodies(upstream.requests[sent:]), calls


def bodies(requests: list[Recorded]) -> list[dict[str, Any]]:
    assert requests
    assert all(r.target == "/v1/messages" for r in requests)
    assert all(BETA in (r.header("anthropic-beta") or "") for r in requests)
    return [r.json() for r in requests]


def size(body: dict[str, Any]) -> int:
    return len(json.dumps(body["messages"]))


def fields(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "messages"}


def compaction_message(request: dict[str, Any]) -> dict[str, Any]:
    """The assistant message the next turn must send first: the block the fake answered ``request`` with, as is."""
    return {"role": "assistant", "content": compaction(request)["content"]}


def assert_loop(replies: list[Any], calls: list[str]) -> None:
    """The loop yielded the compaction reply with its summary, went on, ran the tool on each side of it and ended."""
    assert [r.stop_reason for r in replies] == STOPS
    block = replies[1].content[0]
    assert (len(replies[1].content), block.type, block.signature) == (1, "compaction", "sig_fake")
    assert block.content.startswith("Summary of 2 texts")  # the question and the tool result were summarised
    assert replies[-1].content[0].text  # the fake's answer: a count of what it received, or its text stream
    assert calls == ["Oslo", "Oslo"]


def assert_tool_result_cut(message: dict[str, Any]) -> None:
    """A tool result's JSON, cut by its structure as ``messages.create`` cuts it: valid, shorter, the keys kept."""
    block = message["content"][0]
    assert (message["role"], block["type"]) == ("user", "tool_result")
    content = block["content"]
    text = content if isinstance(content, str) else "".join(b["text"] for b in content)
    assert len(text) < len(RECORDS)
    records = json.loads(text)
    assert records
    assert all(set(r) == {"year", "port", "ships", "storms"} for r in records if isinstance(r, dict))


# ------------------------------------------------------------------------------------------------ the sync client
@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_the_compaction_request_goes_compressed_and_the_loop_goes_on(
    stream: bool, claude: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    """On the SDK's message thread: the compaction request (a new thread: the whole history, ``compaction`` set, the
    reply-shaping fields left off) arrives compressed with every other field as the unwrapped SDK sends it; the turn
    after it sends the block the fake answered, as it was; the tool's result after that is cut as usual."""
    given_replies, given, given_calls = run_compacting(claude, upstream, stream=stream, **SHAPING)
    assert_loop(given_replies, given_calls)
    options, results = fresh()
    replies, sent, calls = run_compacting(pz.wrap(claude, **options), upstream, stream=stream, **SHAPING)
    assert_loop(replies, calls)

    first, compacting, after, last = sent
    assert [fields(body) for body in sent] == [fields(body) for body in given]  # what the SDK set, unchanged
    assert compacting["compaction"] == {"type": "summarize"}
    assert compacting["thread"] == {"type": "create"}
    assert "context_management" not in compacting
    assert "stop_sequences" not in compacting
    assert all(body["context_management"] == CLEAR_TOOL_USES for body in (first, after, last))
    assert [m["role"] for m in compacting["messages"]] == ["user", "assistant", "user"]
    assert size(compacting) < size(given[1])  # compressed, as every other turn is
    assert_tool_result_cut(compacting["messages"][2])
    assert after["thread"] == {"type": "create"}  # the runner starts a new thread from the compacted history
    assert after["messages"] == [compaction_message(compacting)]
    assert replies[1].content[0].content == after["messages"][0]["content"][0]["content"]
    assert last["thread"]["type"] == "continue"
    assert_tool_result_cut(last["messages"][0])
    # the question, the compaction request and the tool result after it; the block alone had nothing to compress
    assert len(results) == 3
    assert size(first) < size(given[0])
    assert size(last) < size(given[3])


def test_without_a_thread_the_turn_after_compaction_sends_the_block_first_unchanged(
    claude: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    """With ``thread=False`` every turn resends the history, which after compaction begins with the block: the turn
    that brings the tool's result is compressed (the result cut) and still opens with the block as the fake gave
    it, whose summary would be cut too if compression touched it. Under a rate budget the compaction request resends
    the question exactly as turn one sent it (the provider's prompt cache keeps hitting)."""
    options, results = fresh(budget=pz.Budget(rate=0.3))
    replies, sent, calls = run_compacting(pz.wrap(claude, **options), upstream, thread=False)
    assert_loop(replies, calls)
    first, compacting, after, last = sent
    assert all("thread" not in body for body in sent)
    assert compacting["messages"][0] == first["messages"][0]
    assert [r.reused_messages for r in results] == [0, 1, 0]  # the question, the compaction request, the last turn
    block = compaction_message(compacting)
    assert after["messages"] == [block]
    assert [m["role"] for m in last["messages"]] == ["assistant", "assistant", "user"]
    assert last["messages"][0] == block
    assert last["messages"][1]["content"][0]["type"] == "tool_use"
    assert_tool_result_cut(last["messages"][2])
    _, given, _ = run_compacting(claude, upstream, thread=False)
    assert size(last) < size(given[3])


def test_a_thread_the_caller_drives_compacts_and_the_next_turn_is_compressed(
    claude: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    """The caller's own thread and its runner: what the caller appends to the thread while the compaction runs
    follows the block, so the turn after compaction carries the block first, unchanged, and the new documents
    compressed."""
    options, results = fresh()
    calls: list[str] = []
    sent_before = len(upstream.requests)
    thread = pz.wrap(claude, **options).beta.messages.thread(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": PROMPT}],
        tools=[harbour_tool(calls)],
        betas=[BETA],
    )
    runner = thread.tool_runner()
    replies = []
    for item in runner:
        replies.append(item)
        if item.stop_reason == "tool_use" and len(replies) == 1:
            runner.compact_before_next_turn()
        if item.stop_reason == "compaction":
            thread.append({"role": "user", "content": MORE})
    _, compacting, after, last = bodies(upstream.requests[sent_before:])
    assert [r.stop_reason for r in replies] == STOPS
    assert calls == ["Oslo", "Oslo"]
    assert compacting["compaction"] == {"type": "summarize"}
    assert after["thread"] == {"type": "create"}
    assert [m["role"] for m in after["messages"]] == ["assistant", "user"]
    assert after["messages"][0] == compaction_message(compacting)
    assert len(after["messages"][1]["content"]) < len(MORE)  # the new documents were compressed
    assert after["messages"][1]["content"].endswith("Question: How many storms in year 9?")
    assert_tool_result_cut(last["messages"][0])
    assert len(results) == 4  # every turn, the compaction request included


def test_promptzip_false_sends_the_compacting_loop_as_the_sdk_does(
    claude: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    _, given, _ = run_compacting(claude, upstream, **SHAPING)
    options, results = fresh()
    replies, sent, calls = run_compacting(pz.wrap(claude, **options), upstream, promptzip=False, **SHAPING)
    assert_loop(replies, calls)
    assert sent == given
    assert results == []


# ----------------------------------------------------------------------------------------------- the async client
@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_the_async_client_compacts_as_the_sync_client_does(
    stream: bool, claude: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    """``AsyncAnthropic`` with an async tool: the same requests as the sync client sends, compaction included, each
    compressed in a worker thread."""
    calls: list[str] = []

    @anthropic.beta_async_tool
    async def harbour_log(port: str = "Oslo") -> str:
        """The harbour's yearly records as JSON.

        Args:
            port: the harbour.
        """
        calls.append(port)
        return RECORDS

    async def main() -> tuple[list[Any], list[dict[str, Any]]]:
        base = upstream.url.removesuffix("/v1")
        async with anthropic.AsyncAnthropic(
            base_url=base, api_key="sk-ant-test", max_retries=0, default_headers=TOOL_MODE
        ) as client:
            options, _ = fresh()
            sent = len(upstream.requests)
            runner = pz.wrap(client, **options).beta.messages.tool_runner(
                model=MODEL,
                max_tokens=64,
                messages=[{"role": "user", "content": PROMPT}],
                tools=[harbour_log],
                betas=[BETA],
                stream=stream,
                **SHAPING,
            )
            replies = []
            async for item in runner:
                replies.append(await item.get_final_message() if stream else item)
                if len(replies) == 1:
                    runner.compact_before_next_turn()
            return replies, bodies(upstream.requests[sent:])

    replies, sent = asyncio.run(main())
    assert_loop(replies, calls)
    options, _ = fresh()
    _, sync_sent, _ = run_compacting(pz.wrap(claude, **options), upstream, stream=stream, **SHAPING)
    assert sent == sync_sent
    assert sent[2]["messages"] == [compaction_message(sent[1])]
    _, given, _ = run_compacting(claude, upstream, stream=stream, **SHAPING)
    assert size(sent[1]) < size(given[1])
