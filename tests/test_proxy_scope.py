"""The proxy's compression scope and region reporting, and requests whose context is malformed.

``x-promptzip-scope: all | history`` (else the route's, else the server's ``scope``) says what a chat's compression
may touch; every compressed or pass-through answer reports ``x-promptzip-regions`` and
``x-promptzip-regions-compressed``. Malformed context (broken tags, tags across messages, thousands of tiny
elements, binary junk) must always be answered: compressed, passed through or forwarded fail-open, never a 5xx.
Compression uses a BM25-only stack (no model), so these tests are fast.
"""

from __future__ import annotations

import argparse
import io
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from proxy_helpers import bm25, settings
from starlette.testclient import TestClient

from promptzip._cache import encode_json
from promptzip._errors import ConfigError
from promptzip.integrations.proxy import ProxySettings, RouteSettings, create_app, load_settings
from promptzip.integrations.proxy._cli import add_proxy_command
from promptzip.integrations.proxy._requests import Outcome, decode_outcome, encode_outcome
from promptzip.integrations.proxy.testing import FakeUpstream

SAMPLE = (Path(__file__).parents[1] / "promptzip" / "_sample" / "sotu.txt").read_text(encoding="utf-8")
QUESTION = "What did the president say about college tuition?"
CHAT_ROUTE = "/v1/chat/completions"
STATUSES = {"compressed", "passthrough", "fail-open"}


def rag_chat() -> list[dict[str, Any]]:
    """A RAG chat: retrieved documents in the system message, an older turn, and a last turn with its own context."""
    documents = f"<document>{SAMPLE[:4000]}</document>\n<document>{SAMPLE[4000:8000]}</document>"
    return [
        {"role": "system", "content": f"Answer from the documents only.\n\n<documents>\n{documents}\n</documents>"},
        {"role": "user", "content": SAMPLE[8000:14000]},
        {"role": "assistant", "content": "I have read it."},
        {"role": "user", "content": f"Context:\n{SAMPLE[14000:18000]}\n\nQuestion: {QUESTION}"},
    ]


@pytest.fixture
def client(upstream: FakeUpstream) -> Iterator[TestClient]:
    with TestClient(create_app(settings(upstream.url), zipper_factory=bm25)) as c:
        yield c


def post(client: TestClient, messages: list[dict[str, Any]], **headers: str) -> httpx.Response:
    named = {k.replace("_", "-"): v for k, v in headers.items()}
    return client.post(CHAT_ROUTE, json={"model": "gpt-4o", "messages": messages}, headers=named)


def regions(r: httpx.Response) -> tuple[int, int]:
    """The two region headers, which must be present and whole numbers, the second at most the first."""
    found, shorter = r.headers["x-promptzip-regions"], r.headers["x-promptzip-regions-compressed"]
    assert found.isdigit(), found
    assert shorter.isdigit(), shorter
    assert int(shorter) <= int(found)
    return int(found), int(shorter)


# ------------------------------------------------------------------------------------------ the scope header
@pytest.mark.parametrize("value", ["everything", "", "all,history", "histories", "al l", "none"])
def test_an_invalid_scope_is_a_400_json_error(client: TestClient, upstream: FakeUpstream, value: str) -> None:
    before = len(upstream.requests)
    r = post(client, rag_chat(), x_promptzip_scope=value)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        "x-promptzip-scope",
        "invalid_header",
    )
    assert "all, history" in error["message"]
    assert len(upstream.requests) == before  # nothing was forwarded


@pytest.mark.parametrize(("value", "echo"), [("history", "history"), (" History ", "history"), ("ALL", "all")])
def test_a_valid_scope_is_echoed_and_not_forwarded(
    client: TestClient, upstream: FakeUpstream, value: str, echo: str
) -> None:
    r = post(client, rag_chat(), x_promptzip_scope=value, x_promptzip_budget="3000")
    assert r.status_code == 200, r.text
    assert r.headers["x-promptzip-scope"] == echo
    assert upstream.requests[-1].header("x-promptzip-scope") is None  # a control header stays at the proxy


def test_history_leaves_system_and_the_last_user_turn_byte_identical(
    client: TestClient, upstream: FakeUpstream
) -> None:
    chat = rag_chat()
    r = post(client, chat, x_promptzip_scope="history", x_promptzip_budget="3000")
    assert r.status_code == 200, r.text
    assert r.headers["x-promptzip-status"] == "compressed"
    assert r.headers["x-promptzip-scope"] == "history"
    sent = upstream.requests[-1].json()["messages"]
    assert sent[0] == chat[0]
    assert sent[-1] == chat[-1]
    assert len(sent[1]["content"]) < len(chat[1]["content"])  # the older turns shrink
    assert regions(r)[1] >= 1
    assert int(r.headers["x-promptzip-tokens-out"]) <= 3000


def test_all_compresses_the_context_of_system_and_last_turn_too(client: TestClient, upstream: FakeUpstream) -> None:
    chat = rag_chat()
    r = post(client, chat, x_promptzip_budget="2500")  # no header: the server's default, "all"
    assert r.status_code == 200, r.text
    assert r.headers["x-promptzip-status"] == "compressed"
    assert r.headers["x-promptzip-scope"] == "all"
    sent = upstream.requests[-1].json()["messages"]
    assert [m["role"] for m in sent] == [m["role"] for m in chat]
    assert sent[0] != chat[0] or sent[-1] != chat[-1]  # what "history" would never touch
    assert sent[-1]["content"].endswith(f"Question: {QUESTION}")  # the question itself is kept
    found, shorter = regions(r)
    assert found >= 2
    assert shorter >= 1
    assert int(r.headers["x-promptzip-tokens-out"]) <= 2500


# ------------------------------------------------------------------------------------------ region headers
def test_region_headers_on_every_compressed_and_passthrough_answer(client: TestClient) -> None:
    compressed = post(client, rag_chat(), x_promptzip_budget="2500")
    assert compressed.headers["x-promptzip-status"] == "compressed"
    assert regions(compressed)[0] >= 1

    small = post(client, [{"role": "user", "content": "Hello there."}])
    assert (small.headers["x-promptzip-status"], small.headers["x-promptzip-reason"]) == (
        "passthrough",
        "below-min-tokens",
    )
    assert regions(small) == (0, 0)

    disabled = post(client, rag_chat(), x_promptzip_disable="1")
    assert (disabled.headers["x-promptzip-status"], disabled.headers["x-promptzip-reason"]) == (
        "passthrough",
        "disabled",
    )
    assert regions(disabled) == (0, 0)

    fits = post(client, rag_chat(), x_promptzip_rate="1")  # a budget it already fits: sent as it came
    assert fits.headers["x-promptzip-status"] == "passthrough"
    regions(fits)


def test_the_result_cache_distinguishes_scopes(client: TestClient) -> None:
    chat = rag_chat()

    def send(scope: str | None) -> httpx.Response:
        headers = {"x_promptzip_budget": "3000", **({"x_promptzip_scope": scope} if scope else {})}
        r = post(client, chat, **headers)
        assert r.headers["x-promptzip-status"] == "compressed", r.headers
        return r

    answers = [send("history"), send("history"), send("all"), send(None), send("all")]
    assert [r.headers["x-promptzip-cache"] for r in answers] == ["miss", "hit", "miss", "hit", "hit"]
    assert [r.headers["x-promptzip-scope"] for r in answers] == ["history", "history", "all", "all", "all"]
    # A hit reports what the miss found: the regions travel in the cached outcome.
    assert regions(answers[1]) == regions(answers[0])
    assert regions(answers[3]) == regions(answers[4]) == regions(answers[2])
    assert answers[0].headers["x-promptzip-tokens-out"] == answers[1].headers["x-promptzip-tokens-out"]


def test_cached_outcomes_decode_with_and_without_regions() -> None:
    outcome = Outcome([{"role": "user", "content": "x"}], 100, 40, "compressed", "extractive", regions=3)
    outcome.regions_compressed = 2
    back = decode_outcome(encode_json(encode_outcome(outcome)))
    assert back is not None
    assert (back.messages, back.tokens_in, back.tokens_out, back.regions, back.regions_compressed) == (
        outcome.messages,
        100,
        40,
        3,
        2,
    )
    # Written before regions were counted: still a hit, with no regions.
    old = {"messages": None, "tokens_in": 10, "tokens_out": 10, "reason": "kept_all", "method": "extractive"}
    back = decode_outcome(encode_json(old))
    assert back is not None
    assert (back.tokens_in, back.regions, back.regions_compressed) == (10, 0, 0)
    for corrupt in ({**old, "regions": "many"}, {**old, "regions": None}, [old], "text"):
        assert decode_outcome(encode_json(corrupt)) is None  # a corrupt entry is a miss


# ------------------------------------------------------------------------------------------ settings and CLI
def test_route_and_server_scope_defaults(upstream: FakeUpstream) -> None:
    routes = {CHAT_ROUTE: RouteSettings(), "/v1/custom/chat": RouteSettings(scope="all")}
    s = settings(upstream.url, scope="history", routes=routes)
    chat = rag_chat()
    with TestClient(create_app(s, zipper_factory=bm25)) as c:
        r = post(c, chat, x_promptzip_budget="3000")
        assert r.headers["x-promptzip-scope"] == "history"  # the server's scope
        sent = upstream.requests[-1].json()["messages"]
        assert (sent[0], sent[-1]) == (chat[0], chat[-1])
        r = c.post(
            "/v1/custom/chat", json={"model": "gpt-4o", "messages": chat}, headers={"x-promptzip-budget": "3000"}
        )
        assert r.headers["x-promptzip-scope"] == "all"  # the route's beats the server's
        r = post(c, chat, x_promptzip_budget="3000", x_promptzip_scope="all")
        assert r.headers["x-promptzip-scope"] == "all"  # the header beats both

    assert ProxySettings(upstream="https://x/v1").scope == "all"
    routed = load_settings(upstream="https://x/v1", routes={CHAT_ROUTE: {"scope": "history"}})
    assert routed.routes[CHAT_ROUTE].scope == "history"
    for bad in [{"scope": "everything"}, {"routes": {CHAT_ROUTE: {"scope": "most"}}}]:
        with pytest.raises(ConfigError, match="scope"):
            load_settings(upstream="https://x/v1", **bad)


def test_cli_scope_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[ProxySettings] = []
    monkeypatch.setattr("promptzip.integrations.proxy._app.serve", lambda s, **kw: seen.append(s))
    parser = argparse.ArgumentParser()
    add_proxy_command(parser.add_subparsers())
    for argv, scope in [([], "all"), (["--scope", "history"], "history"), (["--scope", "all"], "all")]:
        args = parser.parse_args(
            ["proxy", "--no-warmup", "--upstream", "http://127.0.0.1:1/v1", "--cache", "memory", *argv]
        )
        assert args.func(args, io.StringIO(), io.StringIO()) == 0
        assert seen[-1].scope == scope
    with pytest.raises(SystemExit):
        parser.parse_args(["proxy", "--upstream", "http://127.0.0.1:1/v1", "--scope", "everything"])


# ------------------------------------------------------------------------------------------ malformed context
def _junk(n: int, seed: int = 7) -> str:
    """Control characters, U+FFFD and lone high bytes read as latin-1: what a bad PDF extraction leaves behind."""
    rng = random.Random(seed)
    alphabet = [*map(chr, range(32)), "\ufffd", *bytes(range(0x80, 0x100)).decode("latin-1")]
    return "".join(rng.choice(alphabet) for _ in range(n))


def _question(text: str) -> str:
    return f"{text}\n\nQuestion: {QUESTION}"


BAD_INPUTS: dict[str, list[dict[str, Any]]] = {
    "unclosed-document": [{"role": "user", "content": _question("<document>" + SAMPLE[:6000])}],
    "closing-context-only": [{"role": "user", "content": _question(SAMPLE[:6000] + "\n</context>")}],
    "interleaved-tags": [
        {"role": "user", "content": _question(f"<document><context>{SAMPLE[:5000]}</document></context>")}
    ],
    "tag-across-messages": [
        {"role": "system", "content": "Answer from the context.\n<context>\n" + SAMPLE[:4000]},
        {"role": "user", "content": SAMPLE[4000:8000] + "\n</context>"},
        {"role": "assistant", "content": "<document>" + SAMPLE[8000:10000]},
        {"role": "user", "content": "</document>\n" + QUESTION},
    ],
    "ten-thousand-documents": [
        {"role": "user", "content": _question("".join(f"<document>d{i}</document>" for i in range(10_000)))}
    ],
    "question-is-the-message": [
        {"role": "user", "content": SAMPLE[:6000]},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": QUESTION},
    ],
    "long-question-is-the-whole-chat": [{"role": "user", "content": f"Question: {SAMPLE[:3000]}?"}],
    "empty-regions": [
        {"role": "user", "content": SAMPLE[:6000]},
        {
            "role": "user",
            "content": _question("<context></context>\n<document>   </document>\n<documents></documents>"),
        },
    ],
    "binary-junk-in-a-document": [
        {"role": "user", "content": _question(f"<document>{SAMPLE[:3000]}{_junk(3000)}{SAMPLE[3000:5000]}</document>")}
    ],
    "junk-without-nul": [
        {"role": "system", "content": f"<document>{_junk(4000).replace(chr(0), '')}</document>"},
        {"role": "user", "content": _question(SAMPLE[:3000])},
    ],
}


@pytest.mark.parametrize("scope", ["all", "history"])
@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_malformed_context_is_always_answered(live: str, upstream: FakeUpstream, case: str, scope: str) -> None:
    body = json.dumps({"model": "gpt-4o", "messages": BAD_INPUTS[case]}).encode()
    headers = {"content-type": "application/json", "x-promptzip-scope": scope}
    with httpx.Client(timeout=60) as http:
        r = http.post(live + CHAT_ROUTE, content=body, headers=headers)
    assert r.status_code < 500, r.text
    assert 200 <= r.status_code < 300, r.text  # the fake upstream answers every chat it receives with 200
    assert isinstance(r.json(), dict)
    assert r.headers["x-promptzip-status"] in STATUSES
    assert r.headers["x-promptzip-scope"] == scope
    assert upstream.requests[-1].target == CHAT_ROUTE


def test_a_message_with_nul_bytes_is_forwarded_whole_and_the_rest_compressed(live: str, upstream: FakeUpstream) -> None:
    junk = "pasted file:\x00\x01\x02" + _junk(200)
    messages = [
        {"role": "system", "content": "Answer from the documents.\n\n<documents>" + SAMPLE[:8000] + "</documents>"},
        {"role": "user", "content": junk},
        {"role": "assistant", "content": "That file is binary."},
        {"role": "user", "content": QUESTION},
    ]
    with httpx.Client(timeout=60) as http:
        r = http.post(live + CHAT_ROUTE, json={"model": "gpt-4o", "messages": messages})
    assert r.headers["x-promptzip-status"] == "compressed", r.headers  # not a fail-open of the whole chat
    sent = upstream.requests[-1].json()["messages"]
    assert sent[1]["content"] == junk  # byte for byte
    assert len(sent[0]["content"]) < len(messages[0]["content"])
    assert sent[3]["content"] == QUESTION
