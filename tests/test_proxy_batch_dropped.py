"""What the model did not get, for batches: with ``report_dropped`` an Anthropic Message Batch
(``messages.batches.create``) and an OpenAI batch input file (``files.create(purpose="batch")``) answer one
``x-promptzip-dropped`` expand id whose report lists, per ``custom_id``, the report the same request sent alone
names; only the same API key reads it, the dropped text never reached the upstream, and nothing is reported with
the setting off or when nothing was dropped. The real ``anthropic`` and ``openai`` SDKs against the running proxy
and the recording fake upstream on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from proxy_helpers import REPORT, bm25, expand_report, settings, uploaded_lines

from promptzip._cache import MemoryCache
from promptzip._expand import ExpandStore
from promptzip.integrations.proxy import create_app
from promptzip.integrations.proxy._compression import batch_dropped_report
from promptzip.integrations.proxy.testing import FakeUpstream, Recorded, live_server

BUDGET = "150"
MODEL = "claude-sonnet-4-5"
DOCUMENTS = f"Answer from the documents only.\n\nDocuments:\n{REPORT}"


@pytest.fixture(autouse=True)
def _no_sdk_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_BASE_URL",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def reporting(upstream: FakeUpstream) -> Iterator[str]:
    app = create_app(settings(upstream.url, report_dropped=True), zipper_factory=bm25)
    with live_server(app) as url:
        yield url


def read_report(url: str, id: str, key: str) -> Any:
    got = expand_report(url, id, key)
    assert got.status_code == 200, got.text
    assert got.headers["cache-control"] == "private, no-store"
    return json.loads(got.json()["text"])


def strings(value: Any) -> list[str]:
    """Every string inside a JSON value (what the model is sent, whatever the shape)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def check_dropped(entry_report: dict[str, Any], sent: Any) -> None:
    """A request's report: spans cut from the original, none of which reached the upstream."""
    assert set(entry_report) == {"tokens_in", "tokens_out", "budget", "decision", "dropped"}
    assert entry_report["budget"] == int(BUDGET)
    spans = entry_report["dropped"]
    assert spans
    assert all(set(s) == {"source_id", "start", "end", "text"} for s in spans)
    texts = strings(sent)
    for span in spans:
        assert span["text"] in REPORT
        assert not any(span["text"] in t for t in texts), span["text"]  # missing upstream


# ----------------------------------------------------------------------------------------- Anthropic batches
def messages_batch(tag: str) -> list[dict[str, Any]]:
    """Two long RAG requests (documents in ``system``) and a short one; ``tag`` keeps tests apart in the proxy."""
    params = {"model": MODEL, "max_tokens": 64, "system": DOCUMENTS}
    return [
        {
            "custom_id": f"{tag}-ships",
            "params": {**params, "messages": [{"role": "user", "content": f"[{tag}] How many ships in year 12?"}]},
        },
        {
            "custom_id": f"{tag}-short",
            "params": {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "Hi."}]},
        },
        {
            "custom_id": f"{tag}-storms",
            "params": {**params, "messages": [{"role": "user", "content": f"[{tag}] How many storms in year 30?"}]},
        },
    ]


def claude(url: str, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=key, default_headers={"x-promptzip-budget": BUDGET}, max_retries=0)


def last(upstream: FakeUpstream, route: str) -> Recorded:
    request = upstream.requests[-1]
    assert request.target.split("?")[0] == route
    return request


def test_a_message_batch_names_what_each_request_dropped(reporting: str, upstream: FakeUpstream) -> None:
    requests = messages_batch("mb")
    with claude(reporting, "sk-batch-one") as client:
        raw = client.messages.batches.with_raw_response.create(requests=requests)
    assert raw.parse().id == "msgbatch_fake"
    assert (raw.headers["x-promptzip-status"], raw.headers["x-promptzip-batch-requests-compressed"]) == (
        "compressed",
        "2",
    )
    id = raw.headers["x-promptzip-dropped"]
    sent = {r["custom_id"]: r["params"] for r in last(upstream, "/v1/messages/batches").json()["requests"]}

    # the anthropic SDK sends x-api-key: the endpoint reads the credential the same way
    got = httpx.get(f"{reporting}/v1/promptzip/expand/{id}", headers={"x-api-key": "sk-batch-one"}, timeout=30)
    assert got.status_code == 200, got.text
    body = json.loads(got.json()["text"])
    assert body == read_report(reporting, id, "sk-batch-one")  # a bearer token of the same key: the same credential
    entries = body["requests"]
    assert [(e["custom_id"], e["index"]) for e in entries] == [("mb-ships", 0), ("mb-storms", 2)]  # not the short one
    for entry in entries:
        check_dropped(entry["report"], sent[entry["custom_id"]])
    assert sent["mb-short"] == requests[1]["params"]

    assert expand_report(reporting, id, "sk-batch-two").status_code == 404  # another key: as if it never existed
    assert expand_report(reporting, entries[0]["id"], "sk-batch-two").status_code == 404

    # each entry is the report of the same request sent alone to the Messages route
    for entry, request in zip(entries, (requests[0], requests[2]), strict=True):
        with claude(reporting, "sk-batch-one") as client:
            alone = client.messages.with_raw_response.create(**request["params"])
        assert alone.headers["x-promptzip-dropped"] == entry["id"]
        assert read_report(reporting, entry["id"], "sk-batch-one") == entry["report"]

    # sent again, the requests come from the result cache and the batch names the same report
    with claude(reporting, "sk-batch-one") as client:
        again = client.messages.batches.with_raw_response.create(requests=requests)
    assert again.headers["x-promptzip-dropped"] == id


def test_a_message_batch_reports_nothing_when_off_or_nothing_dropped(live: str, reporting: str) -> None:
    with claude(live, "sk-batch-off") as client:
        raw = client.messages.batches.with_raw_response.create(requests=messages_batch("off"))
    assert raw.headers["x-promptzip-status"] == "compressed"
    assert "x-promptzip-dropped" not in raw.headers
    small = [r for r in messages_batch("small") if r["custom_id"].endswith("-short")]
    with claude(reporting, "sk-batch-small") as client:
        raw = client.messages.batches.with_raw_response.create(requests=small)
    assert raw.headers["x-promptzip-status"] == "passthrough"
    assert "x-promptzip-dropped" not in raw.headers


# ------------------------------------------------------------------------------------------ OpenAI batch files
def batch_lines(tag: str) -> list[dict[str, Any]]:
    """A long RAG chat, a short chat, an embeddings request and a long Responses request."""
    chat = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": DOCUMENTS},
            {"role": "user", "content": f"[{tag}] How many ships in year 12?"},
        ],
    }
    responses = {
        "model": "gpt-4.1",
        "instructions": "Answer briefly.",
        "input": f"Context:\n{REPORT}\n\nQuestion: [{tag}] How many storms in year 30?",
    }
    short = {"model": "gpt-4o", "messages": [{"role": "user", "content": f"[{tag}] Hi."}]}
    return [
        {"custom_id": f"{tag}-chat", "method": "POST", "url": "/v1/chat/completions", "body": chat},
        {"custom_id": f"{tag}-short", "method": "POST", "url": "/v1/chat/completions", "body": short},
        {
            "custom_id": f"{tag}-embed",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "e", "input": REPORT},
        },
        {"custom_id": f"{tag}-responses", "method": "POST", "url": "/v1/responses", "body": responses},
    ]


def jsonl(requests: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in requests).encode()


def gpt(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=url + "/v1", api_key=key, default_headers={"x-promptzip-budget": BUDGET}, max_retries=0
    )


def test_a_batch_file_names_what_each_line_dropped(reporting: str, upstream: FakeUpstream) -> None:
    requests = batch_lines("bf")
    with gpt(reporting, "sk-file-one") as client:
        raw = client.files.with_raw_response.create(file=("batch.jsonl", jsonl(requests)), purpose="batch")
    assert raw.parse().id == "file-fake"
    assert (raw.headers["x-promptzip-status"], raw.headers["x-promptzip-batch-requests-compressed"]) == (
        "compressed",
        "2",
    )
    id = raw.headers["x-promptzip-dropped"]
    sent = {r["custom_id"]: r["body"] for r in uploaded_lines(last(upstream, "/v1/files"))}

    entries = read_report(reporting, id, "sk-file-one")["requests"]
    assert [(e["custom_id"], e["line"]) for e in entries] == [("bf-chat", 1), ("bf-responses", 4)]
    for entry in entries:
        check_dropped(entry["report"], sent[entry["custom_id"]])
    assert [sent["bf-short"], sent["bf-embed"]] == [requests[1]["body"], requests[2]["body"]]  # as they came

    assert expand_report(reporting, id, "sk-file-two").status_code == 404  # another key: as if it never existed

    # each entry is the report of the same body sent alone to its route
    with gpt(reporting, "sk-file-one") as client:
        chat = client.chat.completions.with_raw_response.create(**requests[0]["body"])
        responses = client.responses.with_raw_response.create(**requests[3]["body"])
    assert [chat.headers["x-promptzip-dropped"], responses.headers["x-promptzip-dropped"]] == [e["id"] for e in entries]
    assert [read_report(reporting, e["id"], "sk-file-one") for e in entries] == [e["report"] for e in entries]

    with gpt(reporting, "sk-file-one") as client:  # from the result cache: the same report
        again = client.files.with_raw_response.create(file=("batch.jsonl", jsonl(requests)), purpose="batch")
    assert again.headers["x-promptzip-dropped"] == id


def test_a_batch_file_reports_nothing_when_off_or_nothing_dropped(live: str, reporting: str) -> None:
    with gpt(live, "sk-file-off") as client:
        raw = client.files.with_raw_response.create(file=("b.jsonl", jsonl(batch_lines("off"))), purpose="batch")
    assert raw.headers["x-promptzip-status"] == "compressed"
    assert "x-promptzip-dropped" not in raw.headers
    small = [r for r in batch_lines("small") if r["custom_id"].endswith(("-short", "-embed"))]
    with gpt(reporting, "sk-file-small") as client:
        raw = client.files.with_raw_response.create(file=("b.jsonl", jsonl(small)), purpose="batch")
    assert raw.headers["x-promptzip-status"] == "passthrough"
    assert "x-promptzip-dropped" not in raw.headers
    with gpt(reporting, "sk-file-small") as client:  # another purpose is not a batch: not read, not reported
        raw = client.files.with_raw_response.create(file=("b.jsonl", jsonl(batch_lines("fine"))), purpose="fine-tune")
    assert raw.headers["x-promptzip-reason"] == "not-a-batch-file"
    assert "x-promptzip-dropped" not in raw.headers


# ------------------------------------------------------------------------------------------------ the builder
def test_a_report_the_cache_no_longer_holds_is_named_not_shown() -> None:
    cache = MemoryCache()
    store = ExpandStore(cache)
    kept = store.put(json.dumps({"dropped": [{"text": "x"}]}), scope="a")
    other = store.put(json.dumps({"dropped": []}), scope="b")  # another credential's: not readable from "a"
    id = batch_dropped_report(
        [({"custom_id": "k", "index": 0}, kept), ({"custom_id": "g", "index": 3}, other)], cache, "a"
    )
    assert json.loads(store.get(id, scope="a")) == {
        "requests": [
            {"custom_id": "k", "index": 0, "id": kept, "report": {"dropped": [{"text": "x"}]}},
            {"custom_id": "g", "index": 3, "id": other, "report": None},
        ]
    }
    assert batch_dropped_report([], cache, "a") == ""
