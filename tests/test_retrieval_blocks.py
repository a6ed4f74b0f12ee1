"""Anthropic's retrieval blocks (``document`` with a plain-text or content source, ``search_result``) through the
real ``anthropic`` SDK: the running proxy and ``pz.wrap`` send the same thing upstream. Their passages are context
as a whole and shrink to the budget, in the turn or inside a tool result; titles and sources are counted and kept;
a block with citations enabled is counted and arrives byte for byte; a PDF document is neither counted nor changed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import pytest
from proxy_helpers import REPORT, bm25, last_body

import promptzip as pz
from promptzip._cache import MemoryCache
from promptzip.integrations.proxy._dialects import DIALECTS
from promptzip.integrations.proxy.testing import FakeUpstream

ROUTE = "/v1/messages"
QUESTION = "How many ships did the harbour handle in year 12?"
KINDS = ["sweet", "green", "red", "tiny", "wild", "old", "new", "rare", "plain", "cheap"]
BANANAS = " ".join(f"Bananas of the {k} kind are yellow fruit grown in warm countries." for k in KINDS * 2)
PDF = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x" * 50}}


def text_document(data: str, title: str) -> dict[str, Any]:
    return {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": data}, "title": title}


def search_result(source: str, *texts: str, **extra: Any) -> dict[str, Any]:
    content = [{"type": "text", "text": t} for t in texts]
    return {"type": "search_result", "source": source, "title": f"Result from {source}", "content": content, **extra}


@pytest.fixture(autouse=True)
def _no_anthropic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def through(live: str, upstream: FakeUpstream) -> Iterator[Callable[..., tuple[dict[str, Any], dict[str, Any]]]]:
    """Sends one ``messages.create`` through the proxy and through ``pz.wrap`` (each with a fresh key / Zipper, so
    no conversation state carries over) and returns both upstream bodies."""
    opened: list[anthropic.Anthropic] = []
    calls = 0

    def send(budget: int, **request: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        nonlocal calls
        calls += 1
        headers = {"x-promptzip-budget": str(budget), "x-api-key": f"sk-ant-blocks-{calls}"}
        proxy = anthropic.Anthropic(base_url=live, api_key=None, default_headers=headers, max_retries=0)
        direct = anthropic.Anthropic(base_url=upstream.url.removesuffix("/v1"), api_key="sk-ant", max_retries=0)
        opened.extend([proxy, direct])
        proxy.messages.create(model="claude-sonnet-4-5", max_tokens=64, **copy.deepcopy(request))
        via_proxy = last_body(upstream, ROUTE)
        wrapped = pz.wrap(direct, budget=budget, zipper=bm25("fast", "gpt-4o", MemoryCache()))
        wrapped.messages.create(model="claude-sonnet-4-5", max_tokens=64, **copy.deepcopy(request))
        return via_proxy, last_body(upstream, ROUTE)

    yield send
    for client in opened:
        client.close()


def test_documents_in_the_turn_shrink_to_the_budget(through: Callable[..., Any], gpt4o: pz.Tokenizer) -> None:
    content = [
        text_document(REPORT, "Harbour report"),
        text_document(BANANAS, "Fruit notes"),
        PDF,
        {"type": "text", "text": QUESTION},
    ]
    via_proxy, via_wrap = through(200, messages=[{"role": "user", "content": content}])
    assert via_proxy == via_wrap
    sent = via_proxy["messages"][0]["content"]
    assert [b["type"] for b in sent] == ["document", "document", "document", "text"]
    report = sent[0]["source"]["data"]
    assert "Sentence 12 of the report says the harbour handled 84 ships" in report  # the answer
    assert len(report) < len(REPORT) / 3
    assert "<pz" not in report
    assert [b.get("title") for b in sent[:2]] == ["Harbour report", "Fruit notes"]  # kept
    assert sent[2] == PDF
    assert sent[3] == content[3]
    passages = [sent[0]["source"]["data"], sent[1]["source"]["data"], "Harbour report", "Fruit notes", QUESTION]
    assert sum(gpt4o.count(t) for t in passages) <= 200


def test_short_passages_are_context_not_instructions(through: Callable[..., Any]) -> None:
    """A passage that is short, or opens with a question, is still a retrieved text: it may be dropped."""
    short = "Do apples grow on trees? Bananas are yellow."
    content = [
        text_document(short, "Off topic"),
        text_document(REPORT, "Harbour report"),
        {"type": "text", "text": QUESTION},
    ]
    via_proxy, _ = through(80, messages=[{"role": "user", "content": content}])
    sent = via_proxy["messages"][0]["content"]
    assert sent[0]["source"]["data"] != short  # read as context and given up for the relevant report
    assert "Sentence 12 " in sent[1]["source"]["data"]


def test_search_results_in_a_tool_result_shrink_and_keep_their_shape(through: Callable[..., Any]) -> None:
    results = [
        search_result("https://harbour.example/report", REPORT),
        search_result("https://fruit.example/bananas", BANANAS, "Bananas ripen after picking."),
    ]
    call = {"type": "tool_use", "id": "toolu_s1", "name": "search", "input": {"query": "harbour ships"}}
    messages = [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": [call]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_s1", "content": results}]},
    ]
    via_proxy, via_wrap = through(200, messages=messages)
    assert via_proxy == via_wrap
    sent = via_proxy["messages"][2]["content"][0]["content"]
    assert [(r["type"], r["source"], r["title"]) for r in sent] == [
        (r["type"], r["source"], r["title"]) for r in results
    ]
    assert "Sentence 12 of the report" in sent[0]["content"][0]["text"]
    assert len(sent[0]["content"][0]["text"]) < len(REPORT)
    assert 1 <= len(sent[1]["content"]) <= 2  # an emptied passage leaves the list, never the last one
    assert all(b["type"] == "text" and b["text"] for b in sent[1]["content"])
    assert via_proxy["messages"][:2] == messages[:2]


def test_blocks_with_citations_are_counted_and_arrive_byte_for_byte(
    through: Callable[..., Any], live: str, upstream: FakeUpstream
) -> None:
    """Citations point into a passage by position: it is kept whole, and still counted (a budget it does not fit
    is not silently exceeded: the proxy fails open with the reason, the wrapped client raises)."""
    cited = {**text_document(REPORT, "Harbour report"), "citations": {"enabled": True}}
    result = search_result("https://fruit.example/bananas", BANANAS, citations={"enabled": True})
    content = [cited, result, {"type": "text", "text": QUESTION}]
    via_proxy, via_wrap = through(2000, messages=[{"role": "user", "content": content}])
    assert via_proxy == via_wrap
    assert via_proxy["messages"][0]["content"] == content

    with anthropic.Anthropic(
        base_url=live, api_key=None, default_headers={"x-promptzip-budget": "300", "x-api-key": "k"}, max_retries=0
    ) as client:
        raw = client.messages.with_raw_response.create(
            model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": content}]
        )
    # the cited passages count, so the budget cannot be met: forwarded as it came, saying why (fail-open)
    assert (raw.headers["x-promptzip-status"], raw.headers["x-promptzip-error"]) == ("fail-open", "budget_not_met")
    assert last_body(upstream, ROUTE)["messages"][0]["content"] == content
    with anthropic.Anthropic(base_url=upstream.url.removesuffix("/v1"), api_key="k", max_retries=0) as direct:
        wrapped = pz.wrap(direct, budget=300, zipper=bm25("fast", "gpt-4o", MemoryCache()))
        with pytest.raises(pz.BudgetError):
            wrapped.messages.create(
                model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": content}]
            )


def test_a_content_source_document_and_a_pz_like_text() -> None:
    """A document of text blocks is read block by block; a passage that holds tag-like text for promptzip is
    kept (inside the wrapper it would change meaning), and the dialect writes back only what changed."""
    odd = "Use <pz keep> to keep text. " * 3
    doc = {
        "type": "document",
        "source": {"type": "content", "content": [{"type": "text", "text": REPORT}, {"type": "text", "text": odd}]},
        "title": "Mixed",
    }
    question = {"type": "text", "text": QUESTION}
    body = {"model": "claude-x", "max_tokens": 8, "messages": [{"role": "user", "content": [doc, question]}]}
    dialect = DIALECTS["anthropic"]
    chat = dialect.read(body)
    assert not isinstance(chat, str)
    parts = chat.messages[0]["content"]
    assert [p["text"][:4] for p in parts[:3]] == ['["Mi', "<pz>", '["Us']  # title kept, report wrapped, odd kept
    zipper = bm25("fast", "gpt-4o", MemoryCache())
    out = zipper.compress_messages(chat.messages, budget=150).messages
    written = dialect.write(body, chat, [dict(m) for m in out or ()])
    sent = written["messages"][0]["content"][0]["source"]["content"]
    assert "Sentence 12 " in sent[0]["text"]
    assert len(sent[0]["text"]) < len(REPORT)
    assert "<pz>" not in sent[0]["text"]
    assert sent[1] == {"type": "text", "text": odd}
    assert written["messages"][0]["content"][1] == {"type": "text", "text": QUESTION}
