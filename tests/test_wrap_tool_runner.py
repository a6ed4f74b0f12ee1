"""The beta ``tool_runner`` of a wrapped Anthropic client sends every turn of its loop compressed, and so does a
message thread the caller drives (``beta.messages.thread``).

The real ``anthropic`` SDK runs its own loop against the recording fake upstream on 127.0.0.1, whose ``tool:NAME``
mode calls a tool on the first turn and answers in text once the tool's result comes back; the tools are real
``@beta_tool`` functions that return a large JSON document. Compression is the model-free BM25 stack. By default
the SDK runs the loop on a message thread (turn two sends only the tool result, continuing the server's thread);
with ``thread=False`` each turn resends the whole history, and the prefix sent before goes again byte for byte.
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
from promptzip.integrations.proxy.testing import FakeUpstream, Recorded

BUDGET = 250
MODEL = "claude-sonnet-4-5"
QUESTION = "How many ships did the harbour handle in year 12?"
PROMPT = f"Answer from the documents and the harbour log only.\n\nDocuments:\n{REPORT}\n\nQuestion: {QUESTION}"
MESSAGES = [{"role": "user", "content": PROMPT}]
# The tool's JSON answer: an array of similar records, one of which answers the question.
RECORDS = json.dumps([{"year": i, "port": "Oslo", "ships": i * 7, "storms": i * 3} for i in range(60)])
TOOL_MODE = {"x-fake-mode": "tool:harbour_log"}  # the fake calls harbour_log, then answers in text


@pytest.fixture(autouse=True)
def _no_sdk_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def claude(upstream: FakeUpstream) -> Iterator[anthropic.Anthropic]:
    base = upstream.url.removesuffix("/v1")
    with anthropic.Anthropic(base_url=base, api_key="sk-ant-test", max_retries=0, default_headers=TOOL_MODE) as c:
        yield c


def fresh() -> pz.Zipper:
    """The BM25 stack with a cache of its own, so no conversation state carries over between tests."""
    return bm25("fast", "gpt-4o", MemoryCache())


def harbour_tools() -> tuple[Any, list[str]]:
    """A ``@beta_tool`` that returns the harbour's records, and the list of the ports it was called for."""
    calls: list[str] = []

    @anthropic.beta_tool
    def harbour_log(port: str = "Oslo") -> str:
        """The harbour's yearly records as JSON.

        Args:
            port: the harbour.
        """
        calls.append(port)
        return RECORDS

    return harbour_log, calls


def run_loop(client: Any, upstream: FakeUpstream, **kwargs: Any) -> tuple[Any, list[dict[str, Any]], list[str]]:
    """Run ``client.beta.messages.tool_runner`` to the end: the final message, the bodies of the turns the upstream
    received, and the tool's calls."""
    tool, calls = harbour_tools()
    sent = len(upstream.requests)
    runner = client.beta.messages.tool_runner(model=MODEL, max_tokens=64, messages=MESSAGES, tools=[tool], **kwargs)
    final = runner.until_done()
    return final, bodies(upstream.requests[sent:]), calls


def bodies(requests: list[Recorded]) -> list[dict[str, Any]]:
    assert requests
    assert all(r.target == "/v1/messages" for r in requests)
    return [r.json() for r in requests]


def size(body: dict[str, Any]) -> int:
    return len(json.dumps(body["messages"]))


def tool_result(body: dict[str, Any]) -> dict[str, Any]:
    """The ``tool_result`` block of a turn's last message."""
    block: dict[str, Any] = body["messages"][-1]["content"][0]
    assert (block["type"], block["tool_use_id"]) == ("tool_result", "toolu_fake")
    return block


def assert_cut_by_structure(block: dict[str, Any], gpt4o: pz.Tokenizer) -> None:
    """A tool result's JSON, cut as ``messages.create`` cuts it: still valid JSON with the original keys, shorter,
    and the record the question asks about kept."""
    content = block["content"]
    text = content if isinstance(content, str) else "".join(b["text"] for b in content)
    assert gpt4o.count(text) < gpt4o.count(RECORDS)
    records = [r for r in json.loads(text) if isinstance(r, dict) and "year" in r]
    assert records
    assert all(set(r) == {"year", "port", "ships", "storms"} for r in records)


def final_text(message: Any) -> str:
    assert message.stop_reason == "end_turn"
    text: str = message.content[0].text
    return text


# ------------------------------------------------------------------------------------------------ the sync client
@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_every_turn_of_the_loop_is_compressed(
    stream: bool, claude: anthropic.Anthropic, upstream: FakeUpstream, gpt4o: pz.Tokenizer
) -> None:
    """On the SDK's default message thread: turn one creates the thread with the question and its documents, turn
    two continues it with the tool's result alone; both arrive compressed, the rest of each turn as the SDK sent it."""
    final, given, calls = run_loop(claude, upstream, stream=stream)  # the SDK's own loop, unwrapped
    results: list[pz.Result] = []
    wrapped = pz.wrap(claude, budget=BUDGET, zipper=fresh(), on_result=results.append)
    wrapped_final, sent, wrapped_calls = run_loop(wrapped, upstream, stream=stream)

    assert calls == wrapped_calls == ["Oslo"]  # the tool ran once, and the loop went on to the final answer
    # the fake's last answer, as the SDK parsed it: its text stream, or its count of the texts it received
    assert (
        final_text(wrapped_final) == final_text(final) if stream else final_text(wrapped_final).endswith("characters")
    )
    assert len(sent) == len(given) == 2 == len(results)
    for compressed, original in zip(sent, given, strict=True):
        assert size(compressed) < size(original)
        assert {k: v for k, v in compressed.items() if k != "messages"} == {
            k: v for k, v in original.items() if k != "messages"
        }
    assert [body["thread"]["type"] for body in sent] == ["create", "continue"]
    assert sent[0]["messages"][0]["content"].endswith(f"Question: {QUESTION}")  # the question kept as given
    assert len(sent[1]["messages"]) == 1
    assert_cut_by_structure(tool_result(sent[1]), gpt4o)


def test_turn_two_begins_with_exactly_what_turn_one_sent(
    claude: anthropic.Anthropic, upstream: FakeUpstream, gpt4o: pz.Tokenizer
) -> None:
    """Without a thread each turn resends the history: the compressed messages of turn one open turn two byte for
    byte (the provider's prompt cache keeps hitting), and only the tool's result, appended, is cut. The budget is a
    rate, which grows with the history (under a fixed cap that turn one's prefix already fills, the core compacts the
    history instead, as :mod:`promptzip._conversation` says)."""
    results: list[pz.Result] = []
    wrapped = pz.wrap(claude, budget=pz.Budget(rate=0.3), zipper=fresh(), on_result=results.append)
    sent_before = len(upstream.requests)
    final, sent, calls = run_loop(wrapped, upstream, thread=False)
    assert calls == ["Oslo"]
    assert final_text(final).endswith("characters")
    first, second = sent
    assert "thread" not in first
    assert "thread" not in second
    assert len(first["messages"][0]["content"]) < len(PROMPT)  # turn one itself was compressed
    assert second["messages"][: len(first["messages"])] == first["messages"]
    raw_first, raw_second = (r.body for r in upstream.requests[sent_before:])
    opening = raw_first[raw_first.index(b'"messages":[') :].split(b'],"model"')[0]
    assert opening in raw_second  # the same bytes, not only the same JSON
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
    assert second["messages"][1]["content"][0]["type"] == "tool_use"
    assert_cut_by_structure(tool_result(second), gpt4o)
    assert [r.reused_messages for r in results] == [0, 1]


def test_promptzip_false_sends_every_turn_as_the_sdk_does(claude: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    results: list[pz.Result] = []
    wrapped = pz.wrap(claude, budget=BUDGET, zipper=fresh(), on_result=results.append)
    for thread in (anthropic.omit, False):
        _, given, _ = run_loop(claude, upstream, thread=thread)
        final, sent, calls = run_loop(wrapped, upstream, thread=thread, promptzip=False)
        assert calls == ["Oslo"]
        assert final_text(final).endswith("characters")
        assert sent == given
    assert results == []  # nothing was compressed


def test_the_runners_promptzip_options_apply_to_every_turn(claude: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    results: list[pz.Result] = []
    wrapped = pz.wrap(claude, budget=BUDGET, zipper=fresh(), on_result=results.append)
    _, sent, _ = run_loop(wrapped, upstream, promptzip={"budget": 120})
    assert [r.budget for r in results] == [120, 120]
    _, wider, _ = run_loop(wrapped.with_options(timeout=30), upstream, promptzip=pz.Budget(tokens=400))
    assert [r.budget for r in results[2:]] == [400, 400]
    assert all(size(small) < size(large) for small, large in zip(sent, wider, strict=True))


@pytest.mark.parametrize(
    ("value", "error"),
    [(0.5, pz.BudgetError), ("all", pz.ConfigError), ({"scope": "nope"}, pz.ConfigError)],
    ids=["float", "string", "scope"],
)
def test_a_bad_promptzip_value_raises_as_it_does_for_create(
    value: Any, error: type[Exception], claude: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    wrapped = pz.wrap(claude, budget=BUDGET, zipper=fresh())
    tool, calls = harbour_tools()
    sent = len(upstream.requests)
    with pytest.raises(error) as by_create:
        wrapped.beta.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, promptzip=value)
    with pytest.raises(error) as by_runner:
        wrapped.beta.messages.tool_runner(model=MODEL, max_tokens=64, messages=MESSAGES, tools=[tool], promptzip=value)
    assert type(by_runner.value) is type(by_create.value)
    assert str(by_runner.value) == str(by_create.value)
    assert len(upstream.requests) == sent
    assert calls == []


# ----------------------------------------------------------------------------------------------- the async client
def test_the_async_client_compresses_every_turn(
    claude: anthropic.Anthropic, upstream: FakeUpstream, gpt4o: pz.Tokenizer
) -> None:
    """``AsyncAnthropic`` with an async ``@beta_async_tool``: the same turns as the sync client sends, each compressed
    in a worker thread; a bad ``promptzip=`` raises at the call, before anything is sent."""
    calls: list[str] = []

    @anthropic.beta_async_tool
    async def harbour_log(port: str = "Oslo") -> str:
        """The harbour's yearly records as JSON.

        Args:
            port: the harbour.
        """
        calls.append(port)
        return RECORDS

    async def main() -> tuple[Any, list[dict[str, Any]]]:
        base = upstream.url.removesuffix("/v1")
        async with anthropic.AsyncAnthropic(
            base_url=base, api_key="sk-ant-test", max_retries=0, default_headers=TOOL_MODE
        ) as client:
            wrapped = pz.wrap(client, budget=BUDGET, zipper=fresh())
            with pytest.raises(pz.BudgetError):
                wrapped.beta.messages.tool_runner(
                    model=MODEL, max_tokens=64, messages=MESSAGES, tools=[harbour_log], promptzip=0.5
                )
            sent = len(upstream.requests)
            runner = wrapped.beta.messages.tool_runner(
                model=MODEL, max_tokens=64, messages=MESSAGES, tools=[harbour_log]
            )
            final = await runner.until_done()
            return final, bodies(upstream.requests[sent:])

    final, sent = asyncio.run(main())
    assert calls == ["Oslo"]
    assert final_text(final).endswith("characters")
    _, sync_sent, _ = run_loop(pz.wrap(claude, budget=BUDGET, zipper=fresh()), upstream)
    assert sent == sync_sent
    _, given, _ = run_loop(claude, upstream)
    assert all(size(compressed) < size(original) for compressed, original in zip(sent, given, strict=True))
    assert_cut_by_structure(tool_result(sent[1]), gpt4o)


# ------------------------------------------------------------------------------------- a thread the caller drives
def drive_thread(client: Any, upstream: FakeUpstream, **kwargs: Any) -> list[dict[str, Any]]:
    """Two turns on ``client.beta.messages.thread``: the question with its documents, then another question with
    more documents; the bodies the upstream received."""
    ok = {"x-fake-mode": "ok"}  # a text answer on each turn
    sent = len(upstream.requests)
    thread = client.beta.messages.thread(model=MODEL, max_tokens=64, **kwargs)
    thread.send(MESSAGES[0], extra_headers=ok)
    more = f"Answer from these too.\n\nDocuments:\n{REPORT}\n\nQuestion: How many storms in year 9?"
    thread.send({"role": "user", "content": more}, extra_headers=ok)
    return bodies(upstream.requests[sent:])


def test_a_thread_the_caller_drives_sends_each_turn_compressed(
    claude: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    given = drive_thread(claude, upstream)
    results: list[pz.Result] = []
    wrapped = pz.wrap(claude, budget=BUDGET, zipper=fresh(), on_result=results.append)
    sent = drive_thread(wrapped, upstream)
    assert [body["thread"]["type"] for body in sent] == ["create", "continue"]
    assert len(results) == 2
    for compressed, original in zip(sent, given, strict=True):
        assert size(compressed) < size(original)
        assert {k: v for k, v in compressed.items() if k != "messages"} == {
            k: v for k, v in original.items() if k != "messages"
        }
    assert sent[1]["messages"][0]["content"].endswith("Question: How many storms in year 9?")
    assert drive_thread(wrapped, upstream, promptzip=False) == given
    assert len(results) == 2  # nothing more was compressed
