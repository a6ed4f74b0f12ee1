"""What the model did not get, through the running proxy: with ``report_dropped`` each compressed answer names in
``x-promptzip-dropped`` an expand id whose text lists the dropped spans (the real ``openai`` and ``anthropic`` SDKs
against a recording fake upstream); only the same API key reads it, a cached answer names the same report, and the
setting is off by default and on the command line."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from proxy_helpers import REPORT, bm25, expand_report, last_body, settings

from promptzip.integrations.proxy import ProxySettings, create_app
from promptzip.integrations.proxy._cli import add_proxy_command
from promptzip.integrations.proxy.testing import FakeUpstream, live_server

QUESTION = "How many ships did the harbour handle in year 12?"
CHAT = [
    {"role": "system", "content": "Answer from the documents."},
    {"role": "user", "content": f"Documents:\n{REPORT}\n\nQuestion: {QUESTION}"},
]


@pytest.fixture(scope="module")
def reporting(upstream: FakeUpstream) -> Iterator[str]:
    app = create_app(settings(upstream.url, report_dropped=True), zipper_factory=bm25)
    with live_server(app) as url:
        yield url


def test_a_compressed_chat_names_what_it_dropped(reporting: str, upstream: FakeUpstream) -> None:
    with openai.OpenAI(base_url=reporting + "/v1", api_key="sk-one", max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=CHAT, extra_headers={"x-promptzip-budget": "150"}
        )
    assert raw.headers["x-promptzip-status"] == "compressed"
    id = raw.headers["x-promptzip-dropped"]
    sent = last_body(upstream, "/v1/chat/completions")["messages"]
    got = expand_report(reporting, id, "sk-one")
    assert got.status_code == 200, got.text
    assert got.headers["cache-control"] == "private, no-store"
    body = json.loads(got.json()["text"])
    assert (body["budget"], body["tokens_out"]) == (150, int(raw.headers["x-promptzip-tokens-out"]))
    assert body["tokens_in"] == int(raw.headers["x-promptzip-tokens-in"])
    spans = body["dropped"]
    assert spans
    assert all(set(s) == {"source_id", "start", "end", "text"} for s in spans)
    assert all(s["text"] in REPORT and s["text"] not in sent[1]["content"] for s in spans)  # missing upstream
    assert not any("Sentence 12 of the report" in s["text"] for s in spans)  # the answer went

    assert expand_report(reporting, id, "sk-two").status_code == 404  # another key: as if it never existed

    with openai.OpenAI(base_url=reporting + "/v1", api_key="sk-one", max_retries=0) as client:
        again = client.chat.completions.with_raw_response.create(
            model="gpt-4o",
            messages=CHAT,
            extra_headers={"x-promptzip-budget": "150", "x-promptzip-history": "reselect"},
        )
        cached = client.chat.completions.with_raw_response.create(
            model="gpt-4o",
            messages=CHAT,
            extra_headers={"x-promptzip-budget": "150", "x-promptzip-history": "reselect"},
        )
    assert cached.headers["x-promptzip-cache"] == "hit"
    assert cached.headers["x-promptzip-dropped"] == again.headers["x-promptzip-dropped"]


def test_the_anthropic_route_reports_too(reporting: str) -> None:
    with anthropic.Anthropic(base_url=reporting, api_key=None, default_headers={"x-api-key": "k-ant"}) as client:
        raw = client.messages.with_raw_response.create(
            model="claude-sonnet-4-5",
            max_tokens=16,
            system=CHAT[0]["content"],
            messages=CHAT[1:],
            extra_headers={"x-promptzip-budget": "150"},
        )
    got = httpx.get(
        f"{reporting}/v1/promptzip/expand/{raw.headers['x-promptzip-dropped']}",
        headers={"x-api-key": "k-ant"},
        timeout=30,
    )
    assert got.status_code == 200
    assert json.loads(got.json()["text"])["dropped"]


def test_nothing_is_reported_by_default_or_when_nothing_was_dropped(
    live: str, reporting: str, upstream: FakeUpstream
) -> None:
    with openai.OpenAI(base_url=live + "/v1", api_key="sk-one", max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=CHAT, extra_headers={"x-promptzip-budget": "150"}
        )
    assert raw.headers["x-promptzip-status"] == "compressed"
    assert "x-promptzip-dropped" not in raw.headers
    small = [{"role": "user", "content": "Hello there, how are you today?"}]
    with openai.OpenAI(base_url=reporting + "/v1", api_key="sk-one", max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=small)
    assert "x-promptzip-dropped" not in raw.headers


@pytest.mark.parametrize(("flag", "expected"), [([], False), (["--report-dropped"], True)])
def test_the_command_line_turns_it_on(flag: list[str], expected: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[ProxySettings] = []
    monkeypatch.setattr("promptzip.integrations.proxy._app.serve", lambda s, **kw: seen.append(s))
    parser = argparse.ArgumentParser()
    add_proxy_command(parser.add_subparsers())
    args = parser.parse_args(["proxy", "--no-warmup", "--upstream", "http://127.0.0.1:1/v1", *flag])
    assert args.func(args, io.StringIO(), io.StringIO()) == 0
    assert seen[0].report_dropped is expected


@pytest.mark.parametrize("first", [False, True])
def test_a_shared_result_cache_names_a_report_only_where_the_setting_is_on(
    first: bool, upstream: FakeUpstream, tmp_path: Path
) -> None:
    """Replicas sharing a result cache, one reporting and one not: an answer cached by the one is not replayed by the
    other with (or without) a report that its own setting says it should not (or should) carry."""
    cache = f"sqlite:///{tmp_path / 'shared.db'}"
    headers = {"x-promptzip-budget": "150", "x-promptzip-history": "reselect", "authorization": "Bearer sk-one"}
    seen = []
    for on in (first, not first, first):
        app = create_app(
            settings(upstream.url, cache=cache, cache_key_secret="one", report_dropped=on), zipper_factory=bm25
        )
        with live_server(app) as url:
            r = httpx.post(f"{url}/v1/chat/completions", json={"model": "gpt-4o", "messages": CHAT}, headers=headers)
        assert r.headers["x-promptzip-status"] == "compressed"
        assert ("x-promptzip-dropped" in r.headers) == on
        seen.append(r.headers["x-promptzip-cache"])
    assert seen == ["miss", "miss", "hit"]  # each setting its own entry; the third replays the first's
