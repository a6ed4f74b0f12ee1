"""Bad input that a fuzzing session found answered 500, forwarded as invalid JSON, or raised untyped: each is now a
4xx with a JSON body from the proxy (or a typed error from the library), and nothing malformed reaches the upstream.
Real HTTP on 127.0.0.1: the proxy under uvicorn in front of the recording :class:`FakeUpstream`."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import pytest

import promptzip as pz
from promptzip.compressors.extractive import ExtractiveCompressor
from promptzip.integrations.proxy.testing import FakeUpstream
from promptzip.retrievers.sparse import BM25Scorer

KEY = {"authorization": "Bearer k1"}
REPORT = "\n\n".join(f"In year {i} the harbour of town {i} saw {i * 3 + 7} ships arrive and leave." for i in range(80))
QUESTION = "How many ships did the harbour of town 12 see?"
CHAT = [{"role": "user", "content": f"Context:\n{REPORT}\n\nQuestion: {QUESTION}"}]


def post(url: str, path: str, body: bytes | dict[str, Any], **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        url + path, content=content, headers={**KEY, "content-type": "application/json", **headers}, timeout=60
    )


def refused(r: httpx.Response, code: str) -> None:
    assert r.status_code == 400, r.text
    assert code in r.text
    assert "error" in r.json()


@pytest.mark.parametrize("field", ["user", "safety_identifier"])
@pytest.mark.parametrize("disable", ["0", "1"])
def test_an_end_user_named_with_an_unpaired_surrogate_is_never_a_500(
    live: str, upstream: FakeUpstream, field: str, disable: str
) -> None:
    # valid JSON (an escaped lone surrogate), not valid Unicode: the end user's keyed hash raised UnicodeEncodeError
    body = json.dumps({"model": "gpt-4o", field: "\ud800", "messages": CHAT}).encode()
    assert b"\\ud800" in body
    r = post(live, "/v1/chat/completions", body, **{"x-promptzip-disable": disable})
    assert r.status_code < 500, r.text
    assert "error" in r.json() or r.json()["object"] == "chat.completion"
    anthropic = {"model": "claude-sonnet-4", "max_tokens": 5, "metadata": {"user_id": "\ud800"}, "messages": CHAT}
    r = post(live, "/v1/messages", anthropic)
    assert r.status_code < 500, r.text
    r = post(live, "/v1/embeddings", json.dumps({"model": "e", "input": "x", "user": "\ud800"}).encode())
    assert r.status_code == 200  # passed through as given
    assert post(live, "/v1/chat/completions", {"model": "gpt-4o", "messages": CHAT}).status_code == 200


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"model": "gpt-4o", "temperature": "NUMBER", "messages": CHAT}),
        ("/v1/messages", {"model": "claude-sonnet-4", "max_tokens": 5, "top_p": "NUMBER", "messages": CHAT}),
        (
            "/v1/messages/batches",
            {"requests": [{"custom_id": "a", "params": {"model": "c", "max_tokens": "NUMBER", "messages": CHAT}}]},
        ),
    ],
)
def test_a_number_no_float_holds_is_refused_not_forwarded_as_infinity(
    live: str, upstream: FakeUpstream, path: str, body: dict[str, Any]
) -> None:
    before = len(upstream.requests)
    raw = json.dumps(body).replace('"NUMBER"', "-1e400").encode()
    r = post(live, path, raw, **{"x-promptzip-rate": "0.3"})
    assert r.status_code == 400, r.text
    assert "the number -1e400 is out of range" in r.text
    assert len(upstream.requests) == before
    # a large finite number is an ordinary number
    assert post(live, path, raw.replace(b"-1e400", b"1e300")).status_code == 200


def test_a_batch_file_line_with_a_number_no_float_holds_is_refused(live: str) -> None:
    line = json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"n": "NUMBER"}})
    data = line.replace('"NUMBER"', "1e999").encode()
    r = httpx.post(
        live + "/v1/files", headers=KEY, files={"file": ("b.jsonl", data)}, data={"purpose": "batch"}, timeout=60
    )
    assert r.status_code == 400, r.text
    assert "line 1: not valid JSON: the number 1e999 is out of range" in r.text


@pytest.mark.parametrize("status", [600, 999])
def test_an_upstream_status_that_is_not_http_is_a_502(live: str, status: int) -> None:
    r = post(live, "/v1/chat/completions", {"model": "gpt-4o", "messages": CHAT}, **{"x-fake-mode": f"status:{status}"})
    assert r.status_code == 502
    assert f"the upstream answered status {status}" in r.json()["error"]["message"]
    assert post(live, "/v1/chat/completions", {"model": "gpt-4o", "messages": CHAT}).status_code == 200


def test_null_stream_and_null_name_are_absent_as_openai_reads_them(live: str, upstream: FakeUpstream) -> None:
    chat = [{**CHAT[0], "name": None}]
    body = {"model": "gpt-4o", "stream": None, "messages": chat}
    r = post(live, "/v1/chat/completions", body, **{"x-promptzip-rate": "0.3"})
    assert r.status_code == 200, r.text
    assert r.headers["x-promptzip-status"] == "compressed"
    sent = upstream.requests[-1].json()
    assert sent["stream"] is None
    assert QUESTION in sent["messages"][0]["content"]
    refused(post(live, "/v1/chat/completions", {"model": "gpt-4o", "stream": "yes", "messages": CHAT}), "invalid_type")


@pytest.mark.parametrize(
    "target",
    [b"/v1//promptzip/expand/pz-0123456789abcdef", b"/v1//chat/completions", b"/v1/models//x", b"/v1/a//b/"],
)
def test_an_empty_path_segment_is_refused_not_forwarded(live: str, upstream: FakeUpstream, target: bytes) -> None:
    before = len(upstream.requests)
    host, port = live.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nhost: x\r\nauthorization: Bearer k1\r\nconnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), head
    assert b"empty segment" in body
    assert len(upstream.requests) == before


def test_a_trailing_slash_is_still_forwarded(live: str, upstream: FakeUpstream) -> None:
    r = httpx.get(live + "/v1/models/", headers=KEY, timeout=30)
    assert r.status_code == 200
    assert upstream.requests[-1].target.endswith("/models/")


def test_the_library_answers_odd_chats_with_typed_errors() -> None:
    z = pz.Zipper(ExtractiveCompressor(BM25Scorer(), min_relevance=None), target="gpt-4o", cache="memory")
    call = [{"id": "\ud800", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    odd: list[tuple[list[dict[str, Any]], dict[str, str]]] = [
        ([CHAT[0], {"role": "assistant", "content": None, "tool_calls": call}], {}),
        ([{**CHAT[0], "name": "\ud800"}], {}),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "\ud800"}}, {"type": "text", "text": "x"}],
                }
            ],
            {},
        ),
        (CHAT, {"conversation": "\ud800"}),
        (CHAT, {"partition": "\ud800"}),
        ([{"role": ["user"], "content": "x"}], {}),
    ]
    for chat, options in odd:
        with pytest.raises(pz.InputError):
            z.compress_messages(chat, rate=0.3, **options)
    r = z.compress_messages(CHAT, rate=0.3)  # the cache given as a URL, as from_preset takes it
    assert QUESTION in r.text
    with pytest.raises(pz.ConfigError):
        pz.Zipper(ExtractiveCompressor(BM25Scorer()), cache=3)  # type: ignore[arg-type]
