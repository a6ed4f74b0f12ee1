"""The proxy speaks OpenAI's Responses API: ``POST /v1/responses`` through the real ``openai`` SDK.

A real uvicorn proxy (the model-free BM25 stack) in front of the recording fake upstream: ``instructions`` and the
question arrive byte for byte, the context of ``input`` (a string, or message items and function-call outputs)
shrinks to the budget, items and parts that are not text arrive as sent, streams are relayed, and a malformed body
is a 4xx OpenAI-style JSON error while a valid body of an unknown shape is forwarded as it came.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proxy_helpers import REPORT, last_body

import promptzip as pz
from promptzip.integrations.proxy._dialects import DIALECTS
from promptzip.integrations.proxy._errors import RequestError
from promptzip.integrations.proxy.testing import FakeUpstream

ROUTE = "/v1/responses"
INSTRUCTIONS = "Answer from the context only, in one sentence."
QUESTION = "How many ships in year 12?"
TEXT = REPORT
IMAGE = {"type": "input_image", "image_url": "data:image/png;base64," + "iVBORw0KGgo" * 40, "detail": "low"}
CALL = {"type": "function_call", "call_id": "call_1", "name": "harbour_report", "arguments": '{"year": 12}'}


@pytest.fixture
def sdk(live: str) -> Iterator[Callable[..., openai.OpenAI]]:
    """Builds the real SDK against the proxy (``budget``: the x-promptzip-budget header); closed after the test."""
    opened: list[openai.OpenAI] = []

    def build(budget: int) -> openai.OpenAI:
        headers = {"x-promptzip-budget": str(budget)}
        opened.append(openai.OpenAI(base_url=live + "/v1", api_key="sk-test", default_headers=headers, max_retries=0))
        return opened[-1]

    yield build
    for c in opened:
        c.close()


def sent(upstream: FakeUpstream) -> dict[str, Any]:
    return last_body(upstream, ROUTE)


def texts(body: dict[str, Any]) -> list[str]:
    """Every text a Responses body carries: instructions, a string input, message texts, function outputs."""
    out = [body["instructions"]] if isinstance(body.get("instructions"), str) else []
    items = body["input"] if isinstance(body["input"], list) else [{"content": body["input"]}]
    for item in items:
        value = item.get("content", item.get("output"))
        if isinstance(value, str):
            out.append(value)
        for part in value if isinstance(value, list) else ():
            if part.get("type") in ("input_text", "output_text"):
                out.append(part["text"])
    return out


def test_a_string_input_arrives_within_the_budget(
    sdk: Callable[..., openai.OpenAI], upstream: FakeUpstream, gpt4o: pz.Tokenizer
) -> None:
    prompt = f"Context:\n{TEXT}\n\nQuestion: {QUESTION}"
    raw = sdk(160).responses.with_raw_response.create(
        model="gpt-4o", instructions=INSTRUCTIONS, input=prompt, max_output_tokens=50, store=False
    )
    assert raw.headers["x-promptzip-status"] == "compressed"
    assert int(raw.headers["x-promptzip-tokens-out"]) <= 160 < int(raw.headers["x-promptzip-tokens-in"])
    assert raw.parse().output_text  # the fake's Responses-shaped answer parsed by the SDK
    body = sent(upstream)
    assert body["instructions"] == INSTRUCTIONS
    assert (body["model"], body["max_output_tokens"], body["store"]) == ("gpt-4o", 50, False)
    assert body["input"].startswith("Context:\n")
    assert body["input"].endswith(f"\n\nQuestion: {QUESTION}")  # the question, byte for byte
    assert len(body["input"]) < len(prompt)
    assert "Sentence 12 " in body["input"]
    assert sum(gpt4o.count(t) for t in texts(body)) <= 160


def test_items_shrink_and_other_items_arrive_untouched(
    sdk: Callable[..., openai.OpenAI], upstream: FakeUpstream, gpt4o: pz.Tokenizer
) -> None:
    answer = {
        "type": "message",
        "role": "assistant",
        "id": "msg_1",
        "status": "completed",
        "content": [
            {
                "type": "output_text",
                "text": f"Checked: {TEXT}",
                "annotations": [
                    {"type": "url_citation", "start_index": 0, "end_index": 7, "url": "https://x.y", "title": "t"}
                ],
            }
        ],
    }
    question = {"type": "input_text", "text": f"Question: {QUESTION}"}
    items: list[Any] = [
        {"role": "developer", "content": "Use the tools when needed."},
        {"role": "user", "content": [{"type": "input_text", "text": f"<document>{TEXT}</document>"}, IMAGE, question]},
        answer,
        CALL,
        {"type": "function_call_output", "call_id": "call_1", "output": f"Report:\n{TEXT}"},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"role": "user", "content": [question]},
    ]
    raw = sdk(1200).responses.with_raw_response.create(model="gpt-4o", input=items)
    assert raw.headers["x-promptzip-status"] == "compressed"
    body = sent(upstream)
    developer, user, kept_answer, call, output, reasoning, last = body["input"]
    assert (developer, kept_answer, call, reasoning, last) == (items[0], answer, CALL, items[5], items[6])
    assert user["content"][1:] == [IMAGE, question]  # the image and the question part as sent
    assert len(user["content"][0]["text"]) < len(items[1]["content"][0]["text"])
    assert output["call_id"] == "call_1"
    assert len(output["output"]) < len(items[4]["output"])
    assert sum(gpt4o.count(t) for t in texts(body)) <= 1200


def test_streaming_is_relayed(sdk: Callable[..., openai.OpenAI], upstream: FakeUpstream) -> None:
    prompt = f"Context:\n{TEXT}\n\nQuestion: {QUESTION}"
    events = sdk(160).responses.create(model="gpt-4o", input=prompt, stream=True)
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == 5
    body = sent(upstream)
    assert body["stream"] is True
    assert len(body["input"]) < len(prompt)


BAD: list[tuple[str, Any]] = [
    ("not-json", b"[1, 2"),
    ("string-body", "input"),
    ("input-number", {"model": "x", "input": 5}),
    ("input-object", {"model": "x", "input": {"role": "user"}}),
    ("item-string", {"model": "x", "input": ["hi"]}),
    ("role-list", {"model": "x", "input": [{"role": ["user"], "content": "hi"}]}),
    ("content-number", {"model": "x", "input": [{"role": "user", "content": 1}]}),
    ("content-missing", {"model": "x", "input": [{"role": "user"}]}),
    ("part-untyped", {"model": "x", "input": [{"role": "user", "content": [{"text": "hi"}]}]}),
    ("text-null", {"model": "x", "input": [{"role": "user", "content": [{"type": "input_text", "text": None}]}]}),
    ("output-number", {"model": "x", "input": [{"type": "function_call_output", "call_id": "c", "output": 3}]}),
    ("instructions-list", {"model": "x", "instructions": ["a"], "input": "hi"}),
    ("stream-number", {"model": "x", "stream": 1, "input": "hi"}),
]


@pytest.mark.parametrize(("name", "body"), BAD, ids=[n for n, _ in BAD])
def test_a_malformed_body_is_a_4xx_json_error(live: str, upstream: FakeUpstream, name: str, body: Any) -> None:
    before = len(upstream.requests)
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = httpx.post(live + ROUTE, content=content, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert r.json()["error"]["message"]
    assert len(upstream.requests) == before


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"model": "x", "previous_response_id": "resp_1", "instructions": TEXT}, "no-input"),
        ({"model": "x", "input": [{"role": "critic", "content": TEXT}]}, "unknown-shape"),
        ({"model": "x", "input": [{"type": "item_reference", "id": "msg_1"}, CALL]}, "nothing-to-compress"),
    ],
    ids=["no-input", "unknown-role", "no-text"],
)
def test_a_body_without_anything_to_compress_is_forwarded_as_it_came(
    live: str, upstream: FakeUpstream, body: dict[str, Any], reason: str
) -> None:
    raw = json.dumps(body).encode()
    r = httpx.post(live + ROUTE, content=raw, headers={"x-promptzip-budget": "100"})
    assert (r.status_code, r.headers["x-promptzip-status"], r.headers["x-promptzip-reason"]) == (
        200,
        "passthrough",
        reason,
    )
    assert upstream.requests[-1].body == raw


_text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12).filter(str.strip)
_part = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["input_text", "output_text"]), "text": _text}),
    st.fixed_dictionaries({"type": st.sampled_from(["input_image", "input_file", "refusal"])}),
    st.none(),
)
_item = st.one_of(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "system", "developer", "critic"])},
        optional={"content": st.one_of(_text, st.lists(_part, max_size=3)), "type": st.just("message")},
    ),
    st.fixed_dictionaries(
        {"type": st.just("function_call_output"), "output": st.one_of(_text, st.lists(_part, max_size=2))}
    ),
    st.fixed_dictionaries({"type": st.sampled_from(["function_call", "reasoning", "item_reference"])}),
    st.integers(),
)
_body = st.fixed_dictionaries(
    {}, optional={"input": st.one_of(_text, st.lists(_item, max_size=4)), "instructions": _text}
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_body, keep=st.integers(0, 3))
def test_any_body_reads_or_is_refused_and_writes_back_in_place(body: dict[str, Any], keep: int) -> None:
    dialect = DIALECTS["responses"]
    try:
        chat = dialect.read(body)
    except RequestError as exc:  # a bad body is a 4xx, never anything else
        status = exc.status
        chat = f"refused {status}"
        assert 400 <= status < 500
    if isinstance(chat, str):
        return
    assert dialect.write(body, chat, chat.messages) == body  # nothing changed: the very same body
    shrunk = []
    for m in chat.messages:
        content = m.get("content")
        if isinstance(content, str):
            content = content[:keep]
        elif isinstance(content, list):
            content = [{**p, "text": p["text"][:keep]} if "text" in p else p for p in content]
        shrunk.append({**m, "content": content})
    out = dialect.write(body, chat, shrunk)
    assert set(out) == set(body)
    assert all(t.strip() for t in texts({"input": [], **out}))  # shrunk to blanks, yet never blank
