"""Tool outputs inside a chat are cut by their structure, within the request's budget, and what was cut comes back
through ``promptzip.expand`` and the proxy's ``GET /v1/promptzip/expand/{id}``, for the same credential only (real
BM25 stacks, the real openai SDK against the real proxy, a recording fake upstream on 127.0.0.1)."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import openai
import pytest
from proxy_helpers import settings

import promptzip as pz
from promptzip._cache import Cache
from promptzip._diff import render_diff
from promptzip._messages import message_tokens
from promptzip._structured import _shares, reduce_texts
from promptzip.compressors.extractive import ExtractiveCompressor
from promptzip.integrations.proxy import create_app
from promptzip.integrations.proxy.testing import FakeUpstream, live_server
from promptzip.retrievers.sparse import BM25Scorer

EXPAND_ID = re.compile(r"pz-[0-9a-f]{16}")


def zipper(cache: Cache | None = None) -> pz.Zipper:
    return pz.Zipper(ExtractiveCompressor(BM25Scorer(), min_relevance=None), target="gpt-4o", name="bm25", cache=cache)


def products(n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": 1000 + i,
            "name": f"Widget {i}",
            "price": round(3.5 + i * 1.7, 2),
            "created": f"2024-0{1 + i % 9}-1{i % 10}",
            "description": f"A sturdy widget number {i} made of {'steel' if i % 3 else 'oak'}.",
        }
        for i in range(n)
    ]


def service_log(lines: int) -> str:
    out = [f"2024-05-01T10:{i // 60:02d}:{i % 60:02d}Z INFO worker-{i % 4} processed batch {i}" for i in range(lines)]
    out[lines // 2] = "2024-05-01T10:03:00Z ERROR payment gateway timeout for order ORD-77231 after 30000 ms"
    return "\n".join(out)


def agent_chat(search: str, log: str) -> list[dict[str, Any]]:
    calls = [
        {"id": f"c{n}", "type": "function", "function": {"name": name, "arguments": "{}"}}
        for n, name in ((1, "search"), (2, "logs"))
    ]
    return [
        {"role": "system", "content": "You are a shopping agent."},
        {"role": "user", "content": "Find Widget 42 and check the logs."},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "c1", "content": search},
        {"role": "tool", "tool_call_id": "c2", "content": log},
        {"role": "user", "content": "What does Widget 42 cost, and which order failed?"},
    ]


def test_json_and_log_tool_outputs_are_cut_by_structure_within_the_budget() -> None:
    z = zipper()
    search = json.dumps({"results": products(80), "total": 80}, indent=2)
    chat = agent_chat(search, service_log(400))
    r = z.compress_messages(chat, budget=1200)
    assert r.messages is not None
    assert r.tokens_out == message_tokens(list(r.messages), z.tokenizer.count) <= 1200 < r.tokens_in
    assert r.decision == "compressed"
    assert r.regions_compressed >= 2
    found = json.loads(r.messages[3]["content"])  # still valid JSON, with the original keys and the total
    assert set(found) == {"results", "total"}
    assert found["total"] == 80
    kept = [item for item in found["results"] if isinstance(item, dict)]
    assert {"id", "name", "price", "created", "description"} == set(kept[0])
    assert any(item["name"] == "Widget 42" for item in kept)
    note = found["results"][-1]
    assert isinstance(note, str)
    assert f"{80 - len(kept)} of 80 items omitted" in note
    log = r.messages[4]["content"]
    assert "ERROR payment gateway timeout for order ORD-77231" in log
    assert len(log) < len(chat[4]["content"]) / 4
    # every cut original comes back from the Zipper's cache, whole
    ids = EXPAND_ID.findall(r.messages[3]["content"] + log)
    assert {pz.expand(i, cache=z.cache) for i in ids} == {search, chat[4]["content"]}
    with pytest.raises(pz.ExpandNotFound):
        pz.expand(ids[0], cache=z.cache, scope="another-caller")


def test_a_request_that_fits_is_untouched_and_bad_json_is_plain_text() -> None:
    z = zipper()
    small = agent_chat(json.dumps(products(3)), service_log(5))
    r = z.compress_messages(small, budget=5000)
    assert list(r.messages or ()) == small
    assert r.decision == "kept_all"
    broken = agent_chat('{"results": [' + ", ".join(json.dumps(p) for p in products(60)), service_log(5))
    out = z.compress_messages(broken, budget=600)  # not JSON: compressed as context, no error
    assert out.tokens_out <= 600
    assert out.messages is not None


def test_a_5_mb_tool_output_fits_and_nothing_is_lost() -> None:
    z = zipper()
    big = json.dumps(products(36_000))
    assert len(big) > 5_000_000
    chat = agent_chat(big, "ok")
    r = z.compress_messages(chat, budget=2000)
    assert r.tokens_out <= 2000
    assert r.messages is not None
    (eid,) = set(EXPAND_ID.findall(r.messages[3]["content"]))
    assert pz.expand(eid, cache=z.cache) == big


def shared_bm25(preset: str, target: str, cache: Cache) -> pz.Zipper:
    return zipper(cache)


def test_the_proxy_cuts_tool_outputs_and_expands_them_for_the_same_key_only(upstream: FakeUpstream) -> None:
    search = json.dumps({"results": products(80), "total": 80}, indent=2)
    with live_server(create_app(settings(upstream.url), zipper_factory=shared_bm25)) as url:
        alice = openai.OpenAI(base_url=url + "/v1", api_key="sk-alice", max_retries=0)
        alice.chat.completions.create(
            model="gpt-4o",
            messages=agent_chat(search, service_log(400)),  # type: ignore[arg-type]
            extra_headers={"x-promptzip-budget": "1200"},
        )
        sent = upstream.requests[-1].json()["messages"]
        (eid,) = set(EXPAND_ID.findall(sent[3]["content"]))
        before = len(upstream.requests)
        got = httpx.get(f"{url}/v1/promptzip/expand/{eid}", headers={"authorization": "Bearer sk-alice"})
        assert got.status_code == 200
        assert got.json()["text"] == search
        other = httpx.get(f"{url}/v1/promptzip/expand/{eid}", headers={"authorization": "Bearer sk-bob"})
        assert other.status_code == 404
        assert search[:50] not in other.text
        assert other.json()["error"]["code"]
        assert len(upstream.requests) == before  # the expand endpoint never reaches the upstream


def catalog(word: str, n: int, first_id: int) -> str:
    items = [{"id": first_id + i, "name": f"{word} {i}", "price": 100 + 3 * i, "stock": i % 9} for i in range(n)]
    return json.dumps(items, indent=2)


def three_searches(question: str) -> list[dict[str, Any]]:
    calls = [{"id": f"c{n}", "type": "function", "function": {"name": "search", "arguments": "{}"}} for n in range(3)]
    results = [
        {"role": "tool", "tool_call_id": f"c{n}", "content": catalog(word, 60, 1000 * (n + 1))}
        for n, word in enumerate(("Widget", "Gizmo", "Sprocket"))
    ]
    return [
        {"role": "user", "content": question},
        {"role": "assistant", "content": None, "tool_calls": calls},
        *results,
    ]


def test_the_tool_result_that_answers_gets_more_of_the_budget_than_those_that_do_not() -> None:
    z = zipper()
    chat = three_searches("What is the price of Gizmo 42 and how many are in stock?")
    r = z.compress_messages(chat, rate=0.05)
    assert r.messages is not None
    assert r.tokens_out <= r.tokens_in * 0.05
    found = [json.loads(m["content"]) for m in r.messages[2:]]  # every result still valid JSON
    assert {"id": 2042, "name": "Gizmo 42", "price": 226, "stock": 6} in found[1]
    for results, original in zip(found, chat[2:], strict=True):  # and says what it left out
        assert isinstance(results[-1], str)
        assert "of 60 items omitted" in results[-1]
        (eid,) = EXPAND_ID.findall(results[-1])
        assert pz.expand(eid, cache=z.cache) == original["content"]


def test_shares_follow_size_unless_one_text_holds_what_is_asked() -> None:
    texts = [catalog(word, 40, 0) for word in ("Widget", "Gizmo", "Sprocket")]
    sizes = [len(t) // 4 for t in texts]
    by_size = [1500 * s // sum(sizes) for s in sizes]
    assert _shares(texts, sizes, 1500, None) == by_size  # no question
    assert _shares(texts[:1], sizes[:1], 1500, "Gizmo 12?") == [1500]  # one text
    assert _shares(texts, sizes, 1500, "What is the weather?") == by_size  # no text scores above another
    shares = _shares(texts, sizes, 1500, "What does Gizmo 12 cost?")
    assert sum(shares) <= 1500
    assert shares[1] > max(1.5 * by_size[1], shares[0], shares[2])
    assert min(shares[0], shares[2]) >= by_size[0] // 2  # the others keep half their share
    # a text is never given more than it holds: the rest goes to the next most relevant windows
    small = [catalog("Gizmo", 3, 0), *texts[::2]]
    sizes = [len(t) // 4 for t in small]
    shares = _shares(small, sizes, 1500, "What does Gizmo 2 cost?")
    assert shares[0] == sizes[0]
    assert sum(shares) == 1500


def test_what_a_reducer_left_out_is_in_result_dropped_and_the_diff() -> None:
    z = zipper()
    search = json.dumps(products(80), indent=2)
    chat = agent_chat(search, service_log(400))
    r = z.compress_messages(chat, budget=1200)
    assert r.messages is not None
    sources = {s.id: s for s in r.sources}
    assert sources["messages[3]"].text == search  # the originals are the Result's sources
    assert sources["messages[4]"].text == chat[4]["content"]
    dropped: dict[str, list[str]] = {}
    for d in r.dropped:
        assert d.text == sources[d.source_id].text[d.start : d.end]
        dropped.setdefault(d.source_id, []).append(d.text)
    sent = r.messages[3]["content"]
    for item in json.loads(sent)[:-1]:  # each kept item went out verbatim: none of it is listed as dropped
        assert not any(f'"name": "{item["name"]}"' in t for t in dropped["messages[3]"])
    kept = {item["name"] for item in json.loads(sent)[:-1]}
    left = [p["name"] for p in products(80) if p["name"] not in kept]
    assert all(any(f'"name": "{name}"' in t for t in dropped["messages[3]"]) for name in left)
    assert not any("ORD-77231" in t for t in dropped["messages[4]"])  # the error line went
    assert any("processed batch 7\n" in t for t in dropped["messages[4]"])  # the lines folded away did not
    shown = render_diff(r, color=False)  # promptzip diff's view: the original, what was left out marked
    assert "==> messages[3] <==" in shown
    marked = [part.split("-]", 1)[0] for part in shown.split("[-")[1:]]
    assert any(f'"name": "{left[0]}"' in m for m in marked)
    assert not any('"name": "Widget 42"' in m for m in marked)


def test_the_proxy_reports_what_a_reducer_left_out(upstream: FakeUpstream) -> None:
    search = json.dumps(products(120))
    chat = [
        {"role": "user", "content": "What does Widget 57 cost?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "search", "arguments": "{}"}},
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": search},
    ]  # fmt: skip
    app = create_app(settings(upstream.url, report_dropped=True), zipper_factory=shared_bm25)
    with live_server(app) as url:
        answer = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "gpt-4o", "messages": chat},
            headers={"authorization": "Bearer sk-alice", "x-promptzip-budget": "400"},
            timeout=60,
        )
        assert answer.headers["x-promptzip-status"] == "compressed"
        report = httpx.get(
            f"{url}/v1/promptzip/expand/{answer.headers['x-promptzip-dropped']}",
            headers={"authorization": "Bearer sk-alice"},
        )
    assert report.status_code == 200
    spans = json.loads(report.json()["text"])["dropped"]
    assert {s["source_id"] for s in spans} == {"messages[2]"}
    assert all(s["text"] == search[s["start"] : s["end"]] for s in spans)
    assert any('"name": "Widget 3"' in s["text"] for s in spans)
    assert not any('"name": "Widget 57"' in s["text"] for s in spans)


def test_a_compacted_history_cuts_each_tool_output_for_the_question_of_its_turn() -> None:
    from promptzip._messages import compress_messages

    z = zipper()
    calls = [{"id": "c1", "type": "function", "function": {"name": "search", "arguments": "{}"}}]
    chat = [
        {"role": "user", "content": "What is the price of Sprocket 17?"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "c1", "content": catalog("Sprocket", 60, 3000)},
        {"role": "assistant", "content": "It is 151."},
        {"role": "user", "content": "And what is the price of Sprocket 42?"},
    ]
    items = lambda r: [i["name"] for i in json.loads(r.messages[2]["content"]) if isinstance(i, dict)]  # noqa: E731
    now = compress_messages(z, chat, pz.Budget(rate=0.15))
    assert "Sprocket 42" in items(now)  # cut for the question being answered
    assert "Sprocket 17" not in items(now)
    own = compress_messages(z, chat, pz.Budget(rate=0.15), questions={2: chat[0]["content"]})
    assert "Sprocket 17" in items(own)  # as a compaction cuts it: for the question its turn asked
    with pytest.raises(pz.ConfigError):
        reduce_texts(
            ["[1]"], available=1, other_context=0, question=None, count=len, cache=z.cache, scope="", questions=[]
        )
