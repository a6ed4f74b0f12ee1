"""A large body is read, checked and re-encoded on one of the proxy's body threads, not on the event loop that
serves every other client: its Python work grows with its JSON values. Each path a large body takes is answered
as a small one is, and the body check reads deep and wide bodies as before. The running proxy (uvicorn, the
model-free BM25 stack) in front of the recording fake upstream on 127.0.0.1; the thread each step ran on is read by
wrapping the proxy's own functions, which still do the work."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from proxy_helpers import REPORT, bm25, settings

from promptzip.integrations import _bodies
from promptzip.integrations._bodies import MAX_DEPTH, RequestError, check_body
from promptzip.integrations.proxy import ProxySettings, _app, _batches, _compression, _openai_batches, create_app
from promptzip.integrations.proxy.testing import FakeUpstream, live_server

CHAT = "/v1/chat/completions"
QUESTION = "How many crates did the harbour log in week 12?"
THRESHOLD: int = ProxySettings.model_fields["thread_body_bytes"].default
NUMBERS = list(range(THRESHOLD))  # an extra field of small values: a body of about 400 KB


@pytest.fixture
def threads(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """The names of the threads the proxy's body steps ran on, by step, while each still does its work."""
    seen: dict[str, list[str]] = {}

    def watch(module: Any, name: str, step: str | None = None) -> None:
        real: Callable[..., Any] = getattr(module, name)

        def watched(*args: Any, **kwargs: Any) -> Any:
            seen.setdefault(step or name, []).append(threading.current_thread().name)
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, watched)

    steps = [(_app, "parse_json"), (_app, "encode"), (_app, "end_user_of_body"), (_batches, "encode")]
    steps += [(_openai_batches, "read_batch_file"), (_openai_batches, "rewritten"), (_compression, "message_tokens")]
    for module, name in steps:
        watch(module, name)
    watch(_app, "message_tokens", "counted_here")  # a small chat counted at once, before the result cache
    seen["counted_here"] = []
    return seen


@pytest.fixture
def proxy(upstream: FakeUpstream) -> Iterator[str]:
    with live_server(create_app(settings(upstream.url), zipper_factory=bm25)) as url:
        yield url


def chat(document: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": f"Answer from the documents.\n\nDocuments:\n{document}"},
            {"role": "user", "content": QUESTION},
        ],
        **extra,
    }


def on_body_thread(names: list[str]) -> list[bool]:
    return [name.startswith("promptzip-body") for name in names]


def test_a_large_chat_is_parsed_and_written_on_a_body_thread_and_a_small_one_on_the_loop(
    proxy: str, upstream: FakeUpstream, threads: dict[str, list[str]]
) -> None:
    large = chat(REPORT * 200)
    assert len(json.dumps(large)) > THRESHOLD
    with httpx.Client(base_url=proxy, timeout=60) as http:
        r = http.post(CHAT, json=large, headers={"x-promptzip-budget": "300"})
        assert r.status_code == 200, r.text
        assert r.headers["x-promptzip-status"] == "compressed"
        sent = upstream.requests[-1].json()
        assert sent["messages"][-1] == {"role": "user", "content": QUESTION}
        assert int(r.headers["x-promptzip-tokens-out"]) <= 300
        assert on_body_thread(threads.pop("parse_json")) == [True]
        assert on_body_thread(threads.pop("encode")) == [True]

        small = http.post(CHAT, json=chat(REPORT), headers={"x-promptzip-budget": "150"})
        assert small.headers["x-promptzip-status"] == "compressed"
        assert on_body_thread(threads.pop("parse_json")) == [False]
        assert on_body_thread(threads.pop("encode")) == [False]


@pytest.mark.parametrize(("threshold", "on_thread"), [(0, True), (10 << 20, False)])
def test_thread_body_bytes_sets_which_bodies_go_to_a_thread(
    upstream: FakeUpstream, threads: dict[str, list[str]], threshold: int, on_thread: bool
) -> None:
    app = create_app(settings(upstream.url, thread_body_bytes=threshold), zipper_factory=bm25)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        for body in (chat(REPORT), chat(REPORT * 200)):
            r = http.post(CHAT, json=body, headers={"x-promptzip-budget": "150"})
            assert r.headers["x-promptzip-status"] == "compressed"
    assert on_body_thread(threads["parse_json"]) == [on_thread, on_thread]
    assert on_body_thread(threads["encode"]) == [on_thread, on_thread]


def test_a_large_chat_under_min_tokens_is_counted_on_a_body_thread(
    upstream: FakeUpstream, threads: dict[str, list[str]]
) -> None:
    """With a high ``min_tokens``, a chat whose body is shorter than it in bytes was counted on the event loop
    however long it was; past ``thread_body_bytes`` it is counted where the result cache is read."""
    app = create_app(settings(upstream.url, min_tokens=1_000_000), zipper_factory=bm25)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        for body in (chat(REPORT), chat(REPORT), chat(REPORT * 200)):  # the first builds the Zipper on a thread
            r = http.post(CHAT, json=body)
            assert (r.headers["x-promptzip-status"], r.headers["x-promptzip-reason"]) == (
                "passthrough",
                "below-min-tokens",
            )
    assert on_body_thread(threads["counted_here"]) == [False]  # the second: small, counted at once
    # The first and the large one, where the result cache is read.
    assert [name.startswith("promptzip-io") for name in threads["message_tokens"]] == [True, True]


def test_a_large_body_sent_as_given_names_its_user_on_a_body_thread(
    proxy: str, upstream: FakeUpstream, threads: dict[str, list[str]]
) -> None:
    body = json.dumps(chat("A short document.", user="alice@example.com", metadata={"n": NUMBERS})).encode()
    with httpx.Client(base_url=proxy, timeout=60) as http:
        r = http.post(CHAT, content=body, headers={"content-type": "application/json", "x-promptzip-disable": "1"})
    assert r.status_code == 200
    assert upstream.requests[-1].body == body  # as given, byte for byte
    assert on_body_thread(threads["end_user_of_body"]) == [True]
    assert "parse_json" not in threads


def test_large_bodies_are_answered_as_small_ones_are(proxy: str, upstream: FakeUpstream) -> None:
    """A large body that is not JSON, nests too deep, or holds a chat too short to compress: the same answers as a
    small one's, the errors raised on the body thread reaching the client as 400s."""
    deep: Any = "x"
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with httpx.Client(base_url=proxy, timeout=60) as http:
        for padding in ([], NUMBERS):  # small, then past THRESHOLD
            before = len(upstream.requests)
            broken = json.dumps(chat("A short document.", metadata={"n": padding})).encode()[:-1]
            r = http.post(CHAT, content=broken, headers={"content-type": "application/json"})
            assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_json")
            r = http.post(CHAT, json=chat("A short document.", metadata={"n": padding, "deep": deep}))
            assert (r.status_code, r.json()["error"]["code"]) == (400, "too_deeply_nested")
            r = http.post(CHAT, json=chat("A short document.", metadata={"n": padding}))
            assert r.status_code == 200
            assert r.headers["x-promptzip-status"] == "passthrough"
            assert upstream.requests[-1].json()["metadata"] == {"n": padding}
            assert len(upstream.requests) == before + 1


def test_a_large_batch_is_read_and_written_on_a_body_thread(
    proxy: str, upstream: FakeUpstream, threads: dict[str, list[str]]
) -> None:
    params = {"model": "claude-sonnet-4-5", "max_tokens": 64}
    requests = [
        {
            "custom_id": f"r{i}",
            "params": {
                **params,
                "system": f"Answer from the documents only.\n\nDocuments:\n{REPORT * 20}",
                "messages": [{"role": "user", "content": f"[{i}] {QUESTION}"}],
            },
        }
        for i in range(3)
    ]
    assert len(json.dumps(requests)) > THRESHOLD
    with httpx.Client(base_url=proxy, timeout=60) as http:
        r = http.post("/v1/messages/batches", json={"requests": requests}, headers={"x-promptzip-budget": "250"})
    assert r.status_code == 200, r.text
    assert r.headers["x-promptzip-status"] == "compressed"
    sent = upstream.requests[-1].json()["requests"]
    assert [s["custom_id"] for s in sent] == ["r0", "r1", "r2"]
    assert all(len(s["params"]["system"]) < len(q["params"]["system"]) for s, q in zip(sent, requests, strict=True))
    assert on_body_thread(threads["encode"]) == [True]


# ------------------------------------------------------------------------------------------ the body check
def nested(depth: int, container: str) -> Any:
    """A value nesting ``depth`` arrays or objects (``container``: "list", "dict" or "mixed")."""
    value: Any = 0
    for i in range(depth):
        as_list = container == "list" or (container == "mixed" and i % 2 == 0)
        value = [value] if as_list else {"k": value}
    return value


class Ordered(dict[str, Any]):
    """A dict subclass, as a client library may build a body of (the SDK doors check bodies too)."""


@pytest.mark.parametrize("container", ["list", "dict", "mixed"])
def test_the_body_check_refuses_one_level_past_the_limit(container: str) -> None:
    check_body({"x": nested(MAX_DEPTH - 1, container)})  # the body itself is the first level
    with pytest.raises(RequestError, match="deeper than 64"):
        check_body({"x": nested(MAX_DEPTH, container)})
    scalars = [1, 2.5, "s", True, None] * 200
    shallow = {"a": scalars, "b": [{"c": 1}] * 1000, "d": {str(i): i for i in range(1000)}}
    check_body({**shallow, "x": [*scalars, nested(MAX_DEPTH - 2, container)]})
    for deep in (
        {"x": [1, 2, nested(MAX_DEPTH - 1, container)]},  # a short array
        {"x": [*scalars, nested(MAX_DEPTH - 1, container)]},  # a long one of scalars but its last
        {"x": {**{str(i): i for i in range(1000)}, "last": nested(MAX_DEPTH - 1, container)}},  # a long object
    ):
        with pytest.raises(RequestError, match="deeper than 64"):  # beside many shallow values, at the end
            check_body({**shallow, **deep})


def test_the_body_check_reads_containers_of_any_subclass() -> None:
    assert _bodies._deeper_than(Ordered(a=[Ordered(b=[1])]), 3)
    assert not _bodies._deeper_than(Ordered(a=[Ordered(b=[1])]), 4)
    assert not _bodies._deeper_than("a string", 0)
    assert _bodies._deeper_than([], 0)


def test_a_large_batch_file_is_read_and_written_on_a_body_thread(
    proxy: str, upstream: FakeUpstream, threads: dict[str, list[str]]
) -> None:
    lines = [
        {"custom_id": f"r{i}", "method": "POST", "url": CHAT, "body": chat(REPORT * 20, messages_tag=i)}
        for i in range(3)
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    assert len(data) > THRESHOLD
    with httpx.Client(base_url=proxy, timeout=60) as http:
        r = http.post(
            "/v1/files",
            data={"purpose": "batch"},
            files={"file": ("b.jsonl", data, "application/jsonl")},
            headers={"x-promptzip-budget": "250"},
        )
    assert r.status_code == 200, r.text
    assert (r.headers["x-promptzip-status"], r.headers["x-promptzip-batch-requests-compressed"]) == ("compressed", "3")
    assert len(upstream.requests[-1].body) < len(data)
    assert on_body_thread(threads["read_batch_file"]) == [True]
    assert on_body_thread(threads["rewritten"]) == [True]
