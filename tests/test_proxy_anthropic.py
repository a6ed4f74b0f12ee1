"""The proxy speaks Anthropic's Messages API: ``POST /v1/messages`` through the real ``anthropic`` SDK.

A real uvicorn proxy (the model-free BM25 stack) in front of the recording fake upstream: the context of ``system``
and of text blocks shrinks to the budget, the instruction and question bytes stay, a ``cache_control`` breakpoint
keeps the system prompt (with ``history: reselect``, every block up to it) and every non-text block arrives as the
client sent it, streams are relayed, the
``x-api-key`` credential is forwarded and scopes the result cache, and a malformed body is a 4xx JSON error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proxy_helpers import REPORT, bm25, last_body
from proxy_helpers import settings as proxy_settings
from starlette.testclient import TestClient

import promptzip as pz
from promptzip.integrations.proxy import create_app
from promptzip.integrations.proxy._dialects import DIALECTS, MINIMAL_TEXT, Chat
from promptzip.integrations.proxy._errors import RequestError
from promptzip.integrations.proxy.testing import FakeUpstream

ROUTE = "/v1/messages"
INSTRUCTION = "Answer from the documents only."
QUESTION = "How many ships in year 12?"
TEXT = REPORT
KINDS = ["sweet", "green", "red", "tiny", "wild", "old", "new", "rare", "plain", "cheap"]
BANANAS = " ".join(f"Bananas of the {k} kind are yellow fruit grown in warm countries." for k in KINDS * 2)
IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo" * 40}}
TOOL_USE = {"type": "tool_use", "id": "toolu_01", "name": "harbour_report", "input": {"year": 12, "port": "Oslo"}}


@pytest.fixture(autouse=True)
def _no_anthropic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # A client built with api_key=None reads these: the test decides which credential is sent.
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def sdk(live: str) -> Iterator[Callable[..., anthropic.Anthropic]]:
    """Builds the real SDK against the proxy: ``key`` goes in ``x-api-key`` (else the SDK sends its ``api_key`` its
    own way); every client is closed after the test, so no connection is left to the garbage collector."""
    opened: list[anthropic.Anthropic] = []

    def build(*, key: str | None = None, budget: int | None = None) -> anthropic.Anthropic:
        headers = {"x-promptzip-budget": str(budget)} if budget else {}
        if key is not None:
            headers["x-api-key"] = key
        api_key = None if key is not None else "sk-ant-test"
        opened.append(anthropic.Anthropic(base_url=live, api_key=api_key, default_headers=headers, max_retries=0))
        return opened[-1]

    yield build
    for c in opened:
        c.close()


def sent(upstream: FakeUpstream) -> dict[str, Any]:
    return last_body(upstream, ROUTE)


def texts(body: dict[str, Any]) -> list[str]:
    """Every text a Messages body carries (system, string contents, text blocks, tool results)."""

    def of(value: Any) -> list[str]:
        if isinstance(value, str):
            return [value]
        out: list[str] = []
        for block in value if isinstance(value, list) else ():
            if block.get("type") == "text":
                out.append(block["text"])
            elif block.get("type") == "tool_result":
                out += of(block.get("content"))
        return out

    return of(body.get("system")) + [t for m in body["messages"] for t in of(m["content"])]


def within(body: dict[str, Any], budget: int, tokenizer: pz.Tokenizer) -> None:
    used = sum(tokenizer.count(t) for t in texts(body))
    assert used <= budget, f"{used} text tokens arrived for a budget of {budget}"


# ------------------------------------------------------------------------------------------------- compression
def test_a_rag_system_prompt_arrives_within_the_budget(
    sdk: Callable[..., anthropic.Anthropic], upstream: FakeUpstream, gpt4o: pz.Tokenizer
) -> None:
    system = f"{INSTRUCTION}\n\nDocuments:\n{TEXT}"
    raw = sdk(budget=150).messages.with_raw_response.create(
        model="claude-sonnet-4-5",
        max_tokens=64,
        stop_sequences=["END"],
        metadata={"user_id": "u-1"},
        system=system,
        messages=[{"role": "user", "content": QUESTION}],
    )
    assert raw.headers["x-promptzip-status"] == "compressed"
    assert int(raw.headers["x-promptzip-tokens-out"]) <= 150 < int(raw.headers["x-promptzip-tokens-in"])
    assert raw.parse().content[0].type == "text"  # the fake's Anthropic-shaped answer parsed by the SDK
    body = sent(upstream)
    assert body["system"].startswith(f"{INSTRUCTION}\n\nDocuments:\n")  # the instruction, byte for byte
    assert len(body["system"]) < len(system)
    assert "Sentence 12 " in body["system"]
    assert body["messages"] == [{"role": "user", "content": QUESTION}]
    assert (body["model"], body["max_tokens"], body["stop_sequences"], body["metadata"]) == (
        "claude-sonnet-4-5",
        64,
        ["END"],
        {"user_id": "u-1"},
    )
    within(body, 150, gpt4o)


def test_text_blocks_shrink_and_other_blocks_arrive_untouched(
    sdk: Callable[..., anthropic.Anthropic], upstream: FakeUpstream, gpt4o: pz.Tokenizer
) -> None:
    question = {"type": "text", "text": f"Question: {QUESTION}"}
    messages = [
        {"role": "user", "content": [{"type": "text", "text": f"<document>{BANANAS}</document>"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Let me look it up."}, TOOL_USE]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": [{"type": "text", "text": TEXT}, IMAGE]},
                {"type": "text", "text": f"<document>{BANANAS}</document>"},
                IMAGE,
                question,
            ],
        },
    ]
    raw = sdk(budget=200).messages.with_raw_response.create(model="claude-x", max_tokens=64, messages=messages)
    assert raw.headers["x-promptzip-status"] == "compressed"
    body = sent(upstream)
    first, assistant, last = body["messages"]
    assert assistant == messages[1]  # the tool_use block (and its turn) byte for byte
    # An earlier turn whose only block the core emptied keeps a minimal text (the API refuses empty blocks) ...
    assert first["content"] == [{"type": "text", "text": MINIMAL_TEXT}]
    # ... and an emptied block among others is dropped; the image and the question stay, in order.
    result, *rest = last["content"]
    assert rest == [IMAGE, question]
    assert result["tool_use_id"] == "toolu_01"
    assert result["content"][-1] == IMAGE
    kept = result["content"][0]["text"]
    assert len(kept) < len(TEXT)
    assert "Sentence 12 " in kept
    within(body, 200, gpt4o)


def test_with_reselect_every_block_up_to_the_last_breakpoint_is_kept(
    sdk: Callable[..., anthropic.Anthropic], live: str, upstream: FakeUpstream
) -> None:
    ephemeral = {"type": "ephemeral"}
    system = [
        {"type": "text", "text": INSTRUCTION},
        {"type": "text", "text": f"Documents:\n{TEXT}", "cache_control": ephemeral},
    ]
    messages = [
        {"role": "user", "content": f"Context:\n{TEXT}\n\nQuestion: How many storms in year 3?"},
        {"role": "assistant", "content": "9 storms."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": f"Notes:\n{TEXT}"},
                {"type": "text", "text": "Thanks.", "cache_control": ephemeral},
                {"type": "text", "text": f"Documents:\n{TEXT}\n\nQuestion: {QUESTION}"},
            ],
        },
    ]
    reselect = {"x-promptzip-history": "reselect"}
    raw = sdk(budget=2500).messages.with_raw_response.create(
        model="claude-x", max_tokens=64, system=system, messages=messages, extra_headers=reselect
    )
    assert raw.headers["x-promptzip-status"] == "compressed"
    body = sent(upstream)
    assert body["system"] == system  # before the breakpoints: system and the earlier turns, as sent
    assert body["messages"][:2] == messages[:2]
    assert body["messages"][2]["content"][:2] == messages[2]["content"][:2]
    after = body["messages"][2]["content"][2]["text"]  # only what follows the last breakpoint shrank
    assert len(after) < len(messages[2]["content"][2]["text"])
    assert after.endswith(f"Question: {QUESTION}")

    # A top-level cache_control caches up to the last block: nothing may change, so the body goes as it came.
    whole = {"model": "claude-x", "max_tokens": 64, "cache_control": ephemeral, "messages": messages}
    answer = httpx.post(
        live + ROUTE, content=json.dumps(whole).encode(), headers={"x-promptzip-budget": "300", **reselect}
    )
    assert (answer.status_code, answer.headers["x-promptzip-reason"]) == (200, "nothing-to-compress")
    assert upstream.requests[-1].body == json.dumps(whole).encode()


def test_an_agent_loop_marking_every_request_is_compressed_and_resends_what_it_sent(
    sdk: Callable[..., anthropic.Anthropic], upstream: FakeUpstream
) -> None:
    """The cache-stable history (the default) with a breakpoint that moves to the end of every request, as agent
    loops mark them: the system prompt stays byte for byte, the new turn's context is compressed, and the next
    request starts with exactly what the provider was sent (and cached) the turn before."""
    ephemeral = {"type": "ephemeral"}
    system = [{"type": "text", "text": INSTRUCTION, "cache_control": ephemeral}]
    rate = {"x-promptzip-rate": "0.5"}

    def turn(text: str) -> dict[str, Any]:
        return {"role": "user", "content": [{"type": "text", "text": text, "cache_control": ephemeral}]}

    def unmarked(message: dict[str, Any]) -> dict[str, Any]:  # back to the string it was before it was marked
        return {**message, "content": message["content"][0]["text"]}

    client = sdk(key="sk-ant-loop")
    first = [turn(f"Context:\n{TEXT}\n\nQuestion: How many storms in year 3?")]
    raw = client.messages.with_raw_response.create(
        model="claude-x", max_tokens=64, system=system, messages=first, extra_headers=rate
    )
    assert raw.headers["x-promptzip-status"] == "compressed"
    one = sent(upstream)
    assert one["system"] == system
    assert len(one["messages"][0]["content"][0]["text"]) < len(first[0]["content"][0]["text"])
    assert one["messages"][0]["content"][0]["cache_control"] == ephemeral  # the client's breakpoint, where it was
    # The next request: the breakpoint moved to the new last turn; the earlier turn is resent by the client as it
    # wrote it, and by the proxy as the provider got it.
    second = [
        unmarked(first[0]),
        {"role": "assistant", "content": "9 storms."},
        turn(f"Context:\n{TEXT}\n\nQuestion: {QUESTION}"),
    ]
    raw = client.messages.with_raw_response.create(
        model="claude-x", max_tokens=64, system=system, messages=second, extra_headers=rate
    )
    assert raw.headers["x-promptzip-status"] == "compressed"
    assert raw.headers["x-promptzip-reused-messages"] != "0"
    two = sent(upstream)
    assert two["system"] == system
    assert two["messages"][0]["content"] == one["messages"][0]["content"][0]["text"]  # in the client's shape
    assert two["messages"][1] == second[1]
    assert len(two["messages"][2]["content"][0]["text"]) < len(second[2]["content"][0]["text"])
    assert two["messages"][2]["content"][0]["text"].endswith(QUESTION)


def test_streaming_is_relayed(sdk: Callable[..., anthropic.Anthropic], upstream: FakeUpstream) -> None:
    system = f"{INSTRUCTION}\n\nDocuments:\n{TEXT}"
    messages: list[Any] = [{"role": "user", "content": QUESTION}]
    with sdk(budget=150).messages.stream(model="claude-x", max_tokens=64, system=system, messages=messages) as stream:
        assert "".join(stream.text_stream) == "part0 part1 part2 part3 part4 "
        assert stream.get_final_message().stop_reason == "end_turn"
        assert stream.response.headers["x-promptzip-status"] == "compressed"
    body = sent(upstream)
    assert body["stream"] is True
    assert len(body["system"]) < len(system)

    events = sdk(budget=150).messages.create(
        model="claude-x", max_tokens=64, system=system, messages=messages, stream=True
    )
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert kinds.count("content_block_delta") == 5


def test_x_api_key_is_forwarded_and_scopes_the_result_cache(
    sdk: Callable[..., anthropic.Anthropic], upstream: FakeUpstream
) -> None:
    alice, bob = "sk-ant-alice-0000000000000000", "sk-ant-bob-11111111111111111"
    system = f"{INSTRUCTION}\n\nDocuments:\n{TEXT}\nScoping test."

    def ask(key: str) -> str:
        raw = sdk(key=key, budget=150).messages.with_raw_response.create(
            model="claude-x", max_tokens=64, system=system, messages=[{"role": "user", "content": QUESTION}]
        )
        last = upstream.requests[-1]
        assert last.header("x-api-key") == key
        assert last.header("authorization") is None
        assert raw.headers["x-promptzip-status"] == "compressed"
        return raw.headers["x-promptzip-cache"]

    assert [ask(alice), ask(alice), ask(bob), ask(bob)] == ["miss", "hit", "miss", "hit"]


def test_tenants_are_found_by_the_x_api_key_digest(upstream: FakeUpstream) -> None:
    from promptzip.integrations.proxy import TenantSettings, key_digest

    key = "sk-ant-tenant-22222222222222"
    s = proxy_settings(upstream.url, tenants={"acme": TenantSettings(keys=(key_digest(key),))})
    with TestClient(create_app(s, zipper_factory=bm25)) as c:
        body = {
            "model": "x",
            "max_tokens": 8,
            "system": f"Documents:\n{TEXT}",
            "messages": [{"role": "user", "content": QUESTION}],
        }
        first = c.post(ROUTE, json=body, headers={"x-api-key": key, "x-promptzip-budget": "150"})
        again = c.post(ROUTE, json=body, headers={"x-api-key": key, "x-promptzip-budget": "150"})
        other = c.post(ROUTE, json=body, headers={"x-api-key": "sk-ant-someone-else", "x-promptzip-budget": "150"})
    assert [r.headers["x-promptzip-cache"] for r in (first, again, other)] == ["miss", "hit", "miss"]


# ----------------------------------------------------------------------------------------------- bad input
def _deep(levels: int) -> Any:
    nested: Any = "x"
    for _ in range(levels):
        nested = [nested]
    return nested


BAD: list[tuple[str, Any]] = [
    ("not-json", b"{nope"),
    ("array", []),
    ("no-messages", {"model": "x", "max_tokens": 8}),
    ("messages-object", {"model": "x", "messages": {"role": "user"}}),
    ("messages-empty", {"model": "x", "messages": []}),
    ("message-string", {"model": "x", "messages": ["hi"]}),
    ("role-number", {"model": "x", "messages": [{"role": 1, "content": "hi"}]}),
    ("content-number", {"model": "x", "messages": [{"role": "user", "content": 3}]}),
    ("content-missing", {"model": "x", "messages": [{"role": "user"}]}),
    ("block-untyped", {"model": "x", "messages": [{"role": "user", "content": [{"text": "hi"}]}]}),
    ("text-number", {"model": "x", "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}),
    ("system-number", {"model": "x", "system": 7, "messages": [{"role": "user", "content": "hi"}]}),
    ("system-block-text", {"model": "x", "system": [{"type": "text"}], "messages": [{"role": "user", "content": "a"}]}),
    (
        "tool-result-number",
        {"model": "x", "messages": [{"role": "user", "content": [{"type": "tool_result", "content": 4}]}]},
    ),
    ("model-number", {"model": 4, "messages": [{"role": "user", "content": "hi"}]}),
    ("stream-string", {"model": "x", "stream": "yes", "messages": [{"role": "user", "content": "hi"}]}),
    ("too-deep", {"model": "x", "messages": [{"role": "user", "content": "hi"}], "metadata": _deep(80)}),
    ("surrogate", b'{"model": "x", "messages": [{"role": "user", "content": "\\ud800"}]}'),
]


@pytest.mark.parametrize(("name", "body"), BAD, ids=[n for n, _ in BAD])
def test_a_malformed_body_is_a_4xx_anthropic_error(live: str, upstream: FakeUpstream, name: str, body: Any) -> None:
    before = len(upstream.requests)
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = httpx.post(live + ROUTE, content=content, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    error = r.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"]
    assert len(upstream.requests) == before  # refused by the proxy, never forwarded


def test_a_body_of_unknown_shape_is_forwarded_as_it_came(live: str, upstream: FakeUpstream) -> None:
    raw = json.dumps({"model": "x", "max_tokens": 8, "messages": [{"role": "robot", "content": TEXT}]}).encode()
    r = httpx.post(live + ROUTE, content=raw, headers={"x-promptzip-budget": "100"})
    assert (r.status_code, r.headers["x-promptzip-status"], r.headers["x-promptzip-reason"]) == (
        200,
        "passthrough",
        "unknown-shape",
    )
    assert upstream.requests[-1].body == raw


def test_errors_of_the_proxy_itself_are_anthropic_shaped(upstream: FakeUpstream) -> None:
    s = proxy_settings(upstream.url, fail_mode="closed")
    with TestClient(create_app(s, zipper_factory=bm25)) as c:
        # The cached prefix is counted and kept: alone, it is far larger than the budget.
        system = [{"type": "text", "text": f"Documents:\n{TEXT}", "cache_control": {"type": "ephemeral"}}]
        messages = [{"role": "user", "content": f"Context:\n{TEXT}\n\nQuestion: {QUESTION}"}]
        body = {"model": "x", "max_tokens": 8, "system": system, "messages": messages}
        r = c.post(ROUTE, json=body, headers={"x-promptzip-budget": "100"})
        assert r.status_code == 422
        assert r.headers["x-promptzip-error"] == "budget_not_met"
        assert r.json()["type"] == "error"
        assert r.json()["error"]["type"] == "invalid_request_error"
        chat = c.post("/v1/chat/completions", json={"messages": 1})
        assert chat.status_code == 400
        assert chat.json()["error"]["code"] == "invalid_type"


def test_routes_default_and_configurable(upstream: FakeUpstream) -> None:
    s = proxy_settings(upstream.url)
    assert s.route(ROUTE) is not None
    assert s.route("/v1/responses") is not None
    off = proxy_settings(upstream.url, routes={ROUTE: {"compress": False}, "/v1/gw/messages": {"dialect": "anthropic"}})
    body = {
        "model": "x",
        "max_tokens": 8,
        "system": f"Documents:\n{TEXT}",
        "messages": [{"role": "user", "content": QUESTION}],
    }
    with TestClient(create_app(off, zipper_factory=bm25)) as c:
        raw = json.dumps(body).encode()
        assert "x-promptzip-status" not in c.post(ROUTE, content=raw).headers
        assert upstream.requests[-1].body == raw
        r = c.post("/v1/gw/messages", json=body, headers={"x-promptzip-budget": "150"})
        assert r.headers["x-promptzip-status"] == "compressed"
        assert len(upstream.requests[-1].json()["system"]) < len(body["system"])


# -------------------------------------------------------------------------------------------- the dialect
_text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12).filter(str.strip)
_block = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": _text}, optional={"cache_control": st.just({})}),
    st.fixed_dictionaries({"type": st.sampled_from(["image", "document", "thinking", "tool_use"])}),
    st.fixed_dictionaries(
        {"type": st.just("tool_result")},
        optional={
            "content": st.one_of(_text, st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": _text})))
        },
    ),
    st.integers(),
)
_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "robot"]), "content": st.one_of(_text, st.lists(_block, max_size=4))}
)
_body = st.fixed_dictionaries(
    {"messages": st.lists(_message, max_size=4)},
    optional={"system": st.one_of(_text, st.lists(_block, max_size=3)), "cache_control": st.just({})},
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_body, shrink=st.integers(0, 3))
def test_any_body_reads_or_is_refused_and_writes_back_in_place(body: dict[str, Any], shrink: int) -> None:
    dialect = DIALECTS["anthropic"]
    try:
        chat = dialect.read(body)
    except RequestError as exc:  # a bad body is a 4xx, never anything else
        status = exc.status
        chat = f"refused {status}"
        assert 400 <= status < 500
    if isinstance(chat, str):
        return
    assert dialect.write(body, chat, chat.messages) == body  # nothing changed: the very same body
    # Any text may shrink, even to nothing or to blanks: the body keeps its shape and no text ends up blank.
    out = dialect.write(body, chat, [_shrunk(m, shrink) for m in chat.messages])
    assert len(out["messages"]) == len(body["messages"])
    assert set(out) == set(body)
    assert all(t.strip() for t in texts(out))


def _shrunk(message: dict[str, Any], keep: int) -> dict[str, Any]:
    content = message.get("content")
    if isinstance(content, str):
        return {**message, "content": content[:keep]}
    if isinstance(content, list):
        return {**message, "content": [{**p, "text": p["text"][:keep]} if "text" in p else p for p in content]}
    return message


def test_write_drops_emptied_blocks_but_never_the_last_one() -> None:
    dialect = DIALECTS["anthropic"]
    body = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "a a"}, {"type": "text", "text": "b b"}, IMAGE]},
            {"role": "assistant", "content": [{"type": "text", "text": "c c"}]},
            {"role": "user", "content": "d d"},
        ]
    }
    chat = dialect.read(body)
    assert isinstance(chat, Chat)
    emptied = json.loads(json.dumps(chat.messages).replace('"a a"', '""').replace('"c c"', '" "'))
    emptied = json.loads(json.dumps(emptied).replace('"b b"', '""').replace('"d d"', '""'))
    out = dialect.write(body, chat, emptied)
    assert out["messages"][0]["content"] == [IMAGE]  # the image is a block the message keeps
    assert out["messages"][1]["content"] == [{"type": "text", "text": MINIMAL_TEXT}]
    assert out["messages"][2]["content"] == MINIMAL_TEXT
    assert body["messages"][0]["content"][0]["text"] == "a a"  # the client's body itself is never changed
