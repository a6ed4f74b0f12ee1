"""A wrapped SDK client sends what the proxy sends: ``pz.wrap`` around the real ``anthropic`` and ``openai`` SDKs
reads an Anthropic Messages request and a Responses ``input`` list with the proxy's own dialects, so the same
request arrives upstream byte for byte the same through either door (the model-free BM25 stack on both, the
recording fake upstream on 127.0.0.1). Also: the SDK's own objects in a chat, cache breakpoints, streaming and the
async client, ``promptzip=False``, and the errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from proxy_helpers import REPORT, bm25, last_body

import promptzip as pz
from promptzip._cache import MemoryCache
from promptzip.integrations.proxy.testing import FakeUpstream

BUDGET = 150
TOOL_BUDGET = 250  # room for the items that answer, beside the question and the tool call
INSTRUCTION = "Answer from the documents only."
QUESTION = "How many ships in year 12?"
MODEL = "claude-sonnet-4-5"
# A tool's JSON answer: an array of similar records, one of which answers the question.
RECORDS = json.dumps([{"year": i, "port": "Oslo", "ships": i * 7, "storms": i * 3} for i in range(60)])


@pytest.fixture(autouse=True)
def _no_sdk_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def fresh() -> pz.Zipper:
    """The proxy tests' stack with a cache of its own, so no conversation state carries over between requests."""
    return bm25("fast", "gpt-4o", MemoryCache())


@pytest.fixture
def claude(upstream: FakeUpstream) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=upstream.url.removesuffix("/v1"), api_key="sk-ant-test", max_retries=0) as c:
        yield c


@pytest.fixture
def via_proxy(live: str) -> Iterator[anthropic.Anthropic]:
    headers = {"x-promptzip-budget": str(BUDGET)}
    with anthropic.Anthropic(base_url=live, api_key="sk-ant-test", default_headers=headers, max_retries=0) as c:
        yield c


def tool_loop(tag: str) -> list[Any]:
    """An agent loop's third request: a question, the model's tool call (the SDK's own object, as a reply's content
    is appended), and the tool's JSON result. ``tag`` keeps each test's conversation apart in the proxy."""
    call = anthropic.types.ToolUseBlock(id=f"toolu_{tag}", name="harbour_log", input={"port": "Oslo"}, type="tool_use")
    return [
        {"role": "user", "content": f"[{tag}] {QUESTION}"},
        {"role": "assistant", "content": [anthropic.types.TextBlock(text="Let me look.", type="text"), call]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"toolu_{tag}", "content": RECORDS}]},
    ]


REQUESTS: dict[str, dict[str, Any]] = {
    "rag-system": {
        "system": f"{INSTRUCTION}\n\nDocuments:\n{REPORT}",
        "messages": [{"role": "user", "content": f"[rag] {QUESTION}"}],
    },
    "breakpoint": {
        "system": [{"type": "text", "text": INSTRUCTION, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": f"Documents:\n{REPORT}\n\n{QUESTION}"}]}],
    },
    "tool-loop": {"messages": tool_loop("loop")},
}


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_a_wrapped_anthropic_client_sends_what_the_proxy_sends(
    name: str, claude: anthropic.Anthropic, via_proxy: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    request = {"model": MODEL, "max_tokens": 64, **REQUESTS[name]}
    budget = TOOL_BUDGET if name == "tool-loop" else BUDGET
    headers = {"x-promptzip-budget": str(budget)}
    raw = via_proxy.messages.with_raw_response.create(**request, extra_headers=headers)
    assert raw.headers["x-promptzip-status"] == "compressed"
    proxied = last_body(upstream, "/v1/messages")

    reply = pz.wrap(claude, budget=budget, zipper=fresh()).messages.create(**request)
    assert reply.content[0].type == "text"  # the SDK's own Message, parsed from the fake's answer
    wrapped = last_body(upstream, "/v1/messages")
    assert wrapped == proxied
    if name == "breakpoint":  # the block a breakpoint marks arrives byte for byte
        assert wrapped["system"] == REQUESTS[name]["system"]
    assert len(json.dumps(wrapped)) < len(json.dumps(anthropic_body(request)))


def anthropic_body(request: dict[str, Any]) -> dict[str, Any]:
    """What the SDK sends for ``request`` uncompressed: its objects as JSON."""
    return json.loads(json.dumps(request, default=lambda o: o.model_dump(exclude_none=True)))


def test_tool_results_are_cut_by_structure_and_the_rest_arrives_as_given(
    claude: anthropic.Anthropic, upstream: FakeUpstream, gpt4o: pz.Tokenizer
) -> None:
    messages = tool_loop("cut")
    wrapped = pz.wrap(claude, budget=TOOL_BUDGET, zipper=fresh())
    wrapped.messages.create(model=MODEL, max_tokens=64, system=anthropic.NOT_GIVEN, messages=messages)
    body = last_body(upstream, "/v1/messages")
    assert "system" not in body  # NOT_GIVEN stays left out
    assert body["messages"][:2] == anthropic_body({"m": messages[:2]})["m"]  # the question and the tool call
    block = body["messages"][2]["content"][0]
    assert (block["type"], block["tool_use_id"]) == ("tool_result", "toolu_cut")
    kept = json.loads(block["content"])  # still valid JSON, shorter, with the original keys
    assert len(block["content"]) < len(RECORDS)
    records = [r for r in kept if isinstance(r, dict) and "year" in r]
    assert records
    assert set(records[0]) == {"year", "port", "ships", "storms"}
    assert any(r["year"] == 12 for r in records)
    assert gpt4o.count(block["content"]) < gpt4o.count(RECORDS)


def test_promptzip_false_sends_the_call_as_given(claude: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    request = {"model": MODEL, "max_tokens": 64, **REQUESTS["rag-system"]}
    pz.wrap(claude, budget=BUDGET, zipper=fresh()).messages.create(**request, promptzip=False)
    assert last_body(upstream, "/v1/messages") == anthropic_body(request)


def test_a_small_request_is_sent_as_given(claude: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    request = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "Hi.\n\n  Two paragraphs."}]}
    pz.wrap(claude, budget=BUDGET, zipper=fresh()).messages.create(**request)
    assert last_body(upstream, "/v1/messages") == request


def test_the_async_client_streams_a_compressed_request(upstream: FakeUpstream, gpt4o: pz.Tokenizer) -> None:
    system = f"{INSTRUCTION}\n\nDocuments:\n{REPORT}"

    async def main() -> str:
        base = upstream.url.removesuffix("/v1")
        async with anthropic.AsyncAnthropic(base_url=base, api_key="sk-ant-test", max_retries=0) as client:
            wrapped = pz.wrap(client, budget=BUDGET, zipper=fresh())
            created = await wrapped.messages.create(
                model=MODEL, max_tokens=64, system=system, messages=[{"role": "user", "content": QUESTION}]
            )
            assert created.content[0].type == "text"
            async with wrapped.messages.stream(
                model=MODEL, max_tokens=64, system=system, messages=[{"role": "user", "content": QUESTION}]
            ) as stream:
                return await stream.get_final_text()

    text = asyncio.run(main())
    assert text.startswith("part0 ")  # the fake's stream, relayed by the SDK as it came
    body = last_body(upstream, "/v1/messages")
    assert body["stream"] is True
    assert body["system"].startswith(f"{INSTRUCTION}\n\nDocuments:\n")
    assert "Sentence 12 " in body["system"]
    assert gpt4o.count(body["system"]) + gpt4o.count(QUESTION) <= BUDGET < gpt4o.count(system)


def test_a_bad_request_is_an_input_error_before_anything_is_sent(
    claude: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    sent = len(upstream.requests)
    wrapped = pz.wrap(claude, budget=BUDGET, zipper=fresh())
    with pytest.raises(pz.InputError, match=r"messages\[0\].role"):
        wrapped.messages.create(model=MODEL, max_tokens=64, messages=[{"role": 7, "content": REPORT}])
    assert len(upstream.requests) == sent


def test_wrap_names_the_clients_it_takes() -> None:
    with pytest.raises(pz.ConfigError, match=r"anthropic\.Anthropic"):
        pz.wrap(object())  # type: ignore[type-var]


# ------------------------------------------------------------------------------------------------- Responses
def responses_through_both(
    live: str, upstream: FakeUpstream, request: dict[str, Any], budget: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The bodies the upstream got for one Responses ``request`` sent through the running proxy, then through
    ``pz.wrap`` (a Zipper of its own), both with ``budget``."""
    headers = {"x-promptzip-budget": str(budget)}
    with openai.OpenAI(base_url=live + "/v1", api_key="sk-test", default_headers=headers, max_retries=0) as client:
        client.responses.create(**request)
    proxied = last_body(upstream, "/v1/responses")
    with openai.OpenAI(base_url=upstream.url, api_key="sk-test", max_retries=0) as client:
        pz.wrap(client, budget=budget, zipper=fresh()).responses.create(**request)
    return proxied, last_body(upstream, "/v1/responses")


def test_a_wrapped_responses_call_sends_what_the_proxy_sends(live: str, upstream: FakeUpstream) -> None:
    """A Responses ``input`` list with a function call's JSON output: cut by its structure in both doors alike,
    with ``instructions`` read as the system message."""
    items: list[Any] = [
        {"role": "user", "content": [{"type": "input_text", "text": f"[responses] {QUESTION}"}]},
        {"type": "function_call", "call_id": "c1", "name": "harbour_log", "arguments": json.dumps({"port": "Oslo"})},
        {"type": "function_call_output", "call_id": "c1", "output": RECORDS},
    ]
    request = {"model": "gpt-4o", "instructions": INSTRUCTION, "input": items}
    proxied, wrapped = responses_through_both(live, upstream, request, TOOL_BUDGET)
    assert wrapped == proxied
    assert wrapped["input"][:2] == items[:2]
    assert wrapped["instructions"] == INSTRUCTION
    assert len(wrapped["input"][2]["output"]) < len(RECORDS)
    assert any(r.get("year") == 12 for r in json.loads(wrapped["input"][2]["output"]) if isinstance(r, dict))


def test_a_responses_string_input_is_read_as_the_proxy_reads_it(
    live: str, upstream: FakeUpstream, gpt4o: pz.Tokenizer
) -> None:
    """A RAG prompt as one ``input`` string, with long ``instructions``: both doors read it as a system and a user
    message, so the same body goes out, its question kept, and the instructions count in the budget."""
    instructions = " ".join([INSTRUCTION] * 12)
    prompt = f"Documents:\n{REPORT}\n\nQuestion: [string] {QUESTION}"
    request = {"model": "gpt-4o", "instructions": instructions, "input": prompt}
    proxied, wrapped = responses_through_both(live, upstream, request, BUDGET)
    with openai.OpenAI(base_url=upstream.url, api_key="sk-test", max_retries=0) as client:
        wrapped_client = pz.wrap(client, budget=BUDGET, zipper=fresh())
        wrapped_client.responses.create(**{**request, "input": prompt.encode()})  # UTF-8 bytes read as the text
        assert last_body(upstream, "/v1/responses") == wrapped
        with pytest.raises(pz.InputError, match="UTF-8"):
            wrapped_client.responses.create(**{**request, "input": b"caf\xe9"})
    assert wrapped == proxied
    assert wrapped["instructions"] == instructions
    assert wrapped["input"].endswith(f"Question: [string] {QUESTION}")
    assert gpt4o.count(instructions) + gpt4o.count(wrapped["input"]) <= BUDGET < gpt4o.count(prompt)


def test_what_the_core_did_not_change_keeps_the_callers_own_objects() -> None:
    """Arguments are read as JSON, but the messages the core left alone go to the SDK as the caller's own objects
    (a reply's content blocks), and an iterator of messages, which can be read once, is sent as the list it held."""
    from promptzip.integrations._calls import Compression
    from promptzip.integrations._dialects import AnthropicMessages

    compression = Compression(budget=TOOL_BUDGET, rate=None, target="gpt-4o", preset="fast", cache=None, zipper=fresh())
    messages = tool_loop("own")
    out = compression.call(AnthropicMessages(), {"model": MODEL, "messages": messages}, ("system", "messages"))
    assert out["messages"][1] is messages[1]  # the assistant turn with the SDK's ToolUseBlock, untouched
    assert out["messages"][2] != messages[2]  # the tool result, cut
    again = compression.call(AnthropicMessages(), {"model": MODEL, "messages": iter(messages)}, ("messages",))
    assert isinstance(again["messages"], list)
    assert again["messages"][1] is messages[1]
    assert again["messages"][2] == out["messages"][2]


def test_an_argument_left_out_by_the_sdks_marker_is_not_compressed(upstream: FakeUpstream) -> None:
    """``openai.omit`` for ``input`` (a stored prompt carries the conversation): nothing to compress, and the SDK
    leaves the argument out as it would unwrapped."""
    with openai.OpenAI(base_url=upstream.url, api_key="sk-test", max_retries=0) as client:
        reply = pz.wrap(client, budget=BUDGET, zipper=fresh()).responses.create(
            model="gpt-4o", input=openai.omit, previous_response_id="resp_earlier"
        )
    assert reply.id == "resp_fake"
    body = last_body(upstream, "/v1/responses")
    assert "input" not in body
    assert body["previous_response_id"] == "resp_earlier"
