"""OpenAI Batch API input files: each line whose ``url`` is ``/v1/chat/completions`` or ``/v1/responses`` has its
``body`` compressed as the same body sent alone to that route would be, through the proxy (``POST /v1/files``, a
multipart upload with ``purpose`` ``batch``) and through ``pz.wrap`` (``files.create``, sync and async, bytes, a
tuple, a path or a file object). The real ``openai`` SDK, the running proxy (uvicorn, the model-free BM25 stack)
and the recording fake upstream on 127.0.0.1; the multipart the upstream got is read with the stdlib's ``email``
parser, not the proxy's own."""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import io
import json
import re
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from proxy_helpers import REPORT, bm25, settings

import promptzip as pz
from promptzip._cache import MemoryCache
from promptzip.integrations.proxy import ProxySettings, RouteSettings, create_app
from promptzip.integrations.proxy._errors import RequestError
from promptzip.integrations.proxy._multipart import parse_form
from promptzip.integrations.proxy.testing import FakeUpstream, Recorded, live_server

BUDGET = 250
ROUTE = "/v1/files"
QUESTION = "How many ships in year 12?"


@pytest.fixture(autouse=True)
def _no_sdk_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)


def lines(tag: str) -> list[dict[str, Any]]:
    """A long RAG chat, a long Responses request, a short chat and an embeddings request. ``tag`` keeps each test's
    conversations apart in the proxy."""
    system = f"Answer from the documents only.\n\nDocuments:\n{REPORT}"
    chat = {
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": QUESTION}],
    }
    responses = {
        "model": "gpt-4.1",
        "instructions": "Answer briefly.",
        "input": f"Context:\n{REPORT}\n\nQuestion: [{tag}] {QUESTION}",
        "prompt_cache_key": f"{tag}-responses",
    }
    short = {"model": "gpt-4o", "messages": [{"role": "user", "content": f"[{tag}] Hi."}]}
    return [
        {"custom_id": f"{tag}-rag", "method": "POST", "url": "/v1/chat/completions", "body": chat},
        {"custom_id": f"{tag}-responses", "method": "POST", "url": "/v1/responses", "body": responses, "x": [1]},
        {"custom_id": f"{tag}-short", "method": "POST", "url": "/v1/chat/completions", "body": short},
        {
            "custom_id": f"{tag}-embed",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "e", "input": REPORT},
        },
    ]


def jsonl(requests: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in requests).encode()


def sdk(base_url: str, key: str) -> openai.OpenAI:
    headers = {"x-promptzip-budget": str(BUDGET)}
    return openai.OpenAI(base_url=base_url + "/v1", api_key=key, default_headers=headers, max_retries=0)


def last(upstream: FakeUpstream, route: str) -> Recorded:
    """The upstream's last request, which must have gone to ``route`` (its query aside)."""
    request = upstream.requests[-1]
    assert request.target.split("?")[0] == route
    return request


def form(request: Recorded) -> dict[str, tuple[bytes, str | None, str | None]]:
    """The fields of a multipart upload, read with the stdlib: name → (content, filename, content type)."""
    head = f"Content-Type: {request.header('content-type')}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.body)
    assert message.is_multipart()
    out: dict[str, tuple[bytes, str | None, str | None]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        assert isinstance(name, str)
        assert name not in out
        content = part.get_payload(decode=True)
        assert isinstance(content, bytes)
        out[name] = (content, part.get_filename(), part.get("content-type"))
    return out


def upload(
    url: str, data: bytes, purpose: str = "batch", fields: dict[str, str] | None = None, **headers: str
) -> tuple[httpx.Response, bytes]:
    """``data`` uploaded as ``b.jsonl`` to ``url`` (the proxy's) by plain httpx, after the form fields ``purpose``
    and ``fields``: the answer, and the body sent."""
    request = httpx.Request(
        "POST",
        url + ROUTE,
        data={"purpose": purpose, **(fields or {})},
        files={"file": ("b.jsonl", data, "application/jsonl")},
        headers={"x-api-key": "k", **{k.replace("_", "-"): v for k, v in headers.items()}},
    )
    body = request.read()
    with httpx.Client() as client:
        return client.send(request), body


def fresh() -> pz.Zipper:
    """The proxy tests' stack with a cache of its own, so no conversation state carries over between requests."""
    return bm25("fast", "gpt-4o", MemoryCache())


def through_proxy(live: str, upstream: FakeUpstream, data: bytes, key: str) -> bytes:
    """The batch file the upstream got for ``data`` uploaded through the running proxy with the SDK."""
    with sdk(live, key) as client:
        raw = client.files.with_raw_response.create(file=("batch.jsonl", data), purpose="batch")
    assert raw.headers["x-promptzip-status"] == "compressed"
    assert raw.parse().id == "file-fake"
    return form(last(upstream, ROUTE))["file"][0]


# ---------------------------------------------------------------------------------------------------- the proxy
def test_each_line_arrives_as_the_same_body_sent_alone_to_its_route(live: str, upstream: FakeUpstream) -> None:
    requests = lines("alone")
    with sdk(live, "sk-file-alone") as client:
        raw = client.files.with_raw_response.create(file=("batch.jsonl", jsonl(requests)), purpose="batch")
    uploaded = raw.parse()
    assert (uploaded.id, uploaded.purpose, uploaded.filename) == ("file-fake", "batch", "batch.jsonl")
    fields = form(last(upstream, ROUTE))
    assert fields["purpose"][0] == b"batch"
    assert list(fields) == ["purpose", "file"]  # the SDK's order, kept
    sent = [json.loads(line) for line in fields["file"][0].splitlines()]

    singles: list[tuple[dict[str, Any], httpx.Headers]] = []
    for i, request in enumerate(requests[:3]):  # each alone, under a credential of its own: no shared state
        with sdk(live, f"sk-single-alone-{i}") as client:
            create = client.chat.completions if request["url"] == "/v1/chat/completions" else client.responses
            single = create.with_raw_response.create(**request["body"])
        singles.append((last(upstream, request["url"]).json(), single.headers))

    assert [r["custom_id"] for r in sent] == [r["custom_id"] for r in requests]
    assert sent[1]["x"] == [1]
    for got, (alone, _) in zip(sent, singles, strict=False):
        assert got["body"] == alone
    for long in (0, 1):  # the RAG chat and the Responses request: compressed
        assert len(json.dumps(sent[long]["body"])) < len(json.dumps(requests[long]["body"]))
    assert sent[2:] == requests[2:]  # the short one and the embeddings, as they came
    assert fields["file"][0].splitlines()[2:] == jsonl(requests).splitlines()[2:]  # byte for byte
    assert [h["x-promptzip-status"] for _, h in singles] == ["compressed", "compressed", "passthrough"]

    headers = raw.headers
    assert headers["x-promptzip-status"] == "compressed"
    assert headers["x-promptzip-batch-requests"] == "4"
    assert headers["x-promptzip-batch-requests-compressed"] == "2"
    for name in ("x-promptzip-tokens-in", "x-promptzip-tokens-out", "x-promptzip-regions"):
        assert int(headers[name]) == sum(int(h[name]) for _, h in singles), name
    assert int(headers["x-promptzip-tokens-out"]) < int(headers["x-promptzip-tokens-in"])


def test_a_file_with_nothing_to_compress_is_forwarded_byte_for_byte(live: str, upstream: FakeUpstream) -> None:
    requests = lines("small")[2:]
    data = b"\n" + jsonl(requests).replace(b"\n", b"\r\n") + b"\n  \n"  # blank lines and CRLF: kept, skipped
    r, body = upload(live, data)
    assert r.status_code == 200
    assert (r.headers["x-promptzip-status"], r.headers["x-promptzip-reason"]) == ("passthrough", "mixed")
    assert (r.headers["x-promptzip-batch-requests"], r.headers["x-promptzip-batch-requests-compressed"]) == ("2", "0")
    sent = last(upstream, ROUTE)
    assert sent.body == body
    assert sent.header("content-type") == r.request.headers["content-type"]


def test_crlf_and_blank_lines_survive_a_compressed_file(live: str, upstream: FakeUpstream) -> None:
    requests = lines("crlf")
    data = b"\r\n" + jsonl(requests).replace(b"\n", b"\r\n")
    with sdk(live, "sk-file-crlf") as client:
        client.files.create(file=("b.jsonl", data, "application/jsonl"), purpose="batch")
    content, filename, mime = form(last(upstream, ROUTE))["file"]
    assert (filename, mime) == ("b.jsonl", "application/jsonl")
    got, given = content.split(b"\n"), data.split(b"\n")
    assert len(got) == len(given)
    assert all(line.endswith(b"\r") for line in got[:-1])
    assert got[0] == b"\r"
    assert got[3:] == given[3:]
    assert len(got[1]) < len(given[1])


@pytest.mark.parametrize("purpose", ["assistants", "fine-tune"])
def test_another_purpose_passes_through_byte_for_byte(live: str, upstream: FakeUpstream, purpose: str) -> None:
    data = jsonl(lines("other"))
    with sdk(live, "sk-file-other") as client:
        raw = client.files.with_raw_response.create(file=("b.jsonl", data), purpose=purpose)
    assert (raw.headers["x-promptzip-status"], raw.headers["x-promptzip-reason"]) == ("passthrough", "not-a-batch-file")
    assert form(last(upstream, ROUTE)) == {
        "purpose": (purpose.encode(), None, None),
        "file": (data, "b.jsonl", "application/octet-stream"),
    }
    _, body = upload(live, data, purpose)
    assert last(upstream, ROUTE).body == body


def test_disabled_and_encoded_uploads_pass_through_unread(live: str, upstream: FakeUpstream) -> None:
    data = jsonl(lines("off"))
    for headers, reason in (({"x_promptzip_disable": "1"}, "disabled"), ({"content_encoding": "gzip"}, "encoded-body")):
        r, body = upload(live, data, **headers)
        assert (r.headers["x-promptzip-status"], r.headers["x-promptzip-reason"]) == ("passthrough", reason)
        assert last(upstream, ROUTE).body == body


def test_batches_retrieval_and_uploads_pass_through(live: str, upstream: FakeUpstream) -> None:
    with sdk(live, "sk-file-get") as client:
        found = client.files.retrieve("file-abc")
        assert (found.id, found.purpose) == ("file-abc", "batch")
    assert last(upstream, "/v1/files/file-abc").method == "GET"
    batch = {"input_file_id": "file-fake", "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    r = httpx.post(live + "/v1/batches", json=batch, headers={"authorization": "Bearer k"})
    assert "x-promptzip-status" not in r.headers
    assert last(upstream, "/v1/batches").json() == batch
    request = httpx.Request("POST", live + "/v1/uploads/upload_1/parts", files={"data": ("p", jsonl(lines("part")))})
    body = request.read()
    with httpx.Client() as client:
        assert "x-promptzip-status" not in client.send(request).headers
    assert last(upstream, "/v1/uploads/upload_1/parts").body == body  # the Uploads API: as it came


def _line(custom_id: str, url: str, body: object) -> bytes:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body}).encode() + b"\n"


CHAT, RESPONSES = "/v1/chat/completions", "/v1/responses"
GOOD = _line("ok", CHAT, {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi."}]})
BAD_FILES: dict[str, tuple[bytes, str]] = {
    "not-utf8": (GOOD + b'{"custom_id": "\xff"}\n', r"^line 2: the batch file is not valid UTF-8"),
    "not-json": (GOOD + b"{not json\n", r"^line 2: not valid JSON"),
    "array-line": (b"\n[1, 2]\n", r"^line 2: a request must be a JSON object, not an array"),
    "body-array": (_line("b", CHAT, []), r"^line 1 \(custom_id 'b'\): body must be an object"),
    "body-missing": (GOOD + b'{"custom_id": "m", "url": "/v1/responses"}\n', r"^line 2 \(custom_id 'm'\): body must"),
    "bad-role": (
        GOOD + _line("r", CHAT, {"model": "m", "messages": [{"role": 1, "content": "x"}]}),
        r"^line 2 \(custom_id 'r'\): body: messages\[0\]\.role must be one of",
    ),
    "empty-messages": (_line("e", CHAT, {"model": "m", "messages": []}), r"^line 1 \(custom_id 'e'\): body: messages"),
    "model-number": (_line("n", RESPONSES, {"model": 4, "input": "x"}), r"^line 1 \(custom_id 'n'\): body: model"),
    "input-number": (_line("i", RESPONSES, {"model": "m", "input": 5}), r"^line 1 \(custom_id 'i'\): body: input"),
    "long-id": (_line("x" * 100, CHAT, 7), r"^line 1: body must be an object"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_bad_batch_file_is_a_4xx_naming_the_line_and_nothing_is_sent(
    live: str, upstream: FakeUpstream, name: str
) -> None:
    data, message = BAD_FILES[name]
    sent = len(upstream.requests)
    with sdk(live, "sk-bad") as client, pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("b.jsonl", data), purpose="batch")
    error = caught.value.response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert re.search(message, error["message"]), error
    assert len(upstream.requests) == sent


BOUNDARY = "b0und"
PART = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
BAD_FORMS: dict[str, tuple[str, bytes, str]] = {
    "no-boundary": ("multipart/form-data", PART.encode(), "no valid boundary"),
    "not-closed": (f"multipart/form-data; boundary={BOUNDARY}", PART.encode(), "not closed"),
    "no-boundary-in-body": ("multipart/form-data; boundary=other", PART.encode(), "boundary never occurs"),
    "no-name": (
        f"multipart/form-data; boundary={BOUNDARY}",
        f"--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode(),
        "not a named form-data field",
    ),
    "two-purposes": (
        f"multipart/form-data; boundary={BOUNDARY}",
        (PART * 2 + f"--{BOUNDARY}--").encode(),
        "2 'purpose'",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_FORMS))
def test_a_form_the_reader_cannot_frame_is_forwarded_unread(live: str, upstream: FakeUpstream, name: str) -> None:
    """Uploads went through unread before batch files were compressed: one the upstream takes must not fail here."""
    content_type, body, _ = BAD_FORMS[name]
    r = httpx.post(live + ROUTE, content=body, headers={"content-type": content_type, "x-api-key": "k"})
    assert (r.headers["x-promptzip-status"], r.headers["x-promptzip-reason"]) == ("passthrough", "unreadable-form")
    assert upstream.requests[-1].body == body
    assert upstream.requests[-1].header("content-type") == content_type


@pytest.mark.parametrize("name", sorted(BAD_FORMS))
def test_the_form_reader_refuses_what_it_cannot_frame(name: str) -> None:
    content_type, body, message = BAD_FORMS[name]

    def read() -> None:
        form = parse_form(content_type, body)
        assert form is not None
        form.field("purpose")

    with pytest.raises(RequestError, match=re.escape(message)):
        read()


# --------------------------------------------------------------------------------------------- failure modes
@pytest.mark.parametrize("failing", ["open"], indirect=True)
def test_a_line_that_fails_to_compress_is_sent_as_it_came_when_failing_open(
    failing: str, upstream: FakeUpstream
) -> None:
    data = jsonl(lines("open"))
    r, _ = upload(failing, data)
    assert (r.headers["x-promptzip-status"], r.headers["x-promptzip-error"]) == ("fail-open", "internal_error")
    assert form(last(upstream, ROUTE))["file"][0] == data


@pytest.mark.parametrize("failing", ["closed"], indirect=True)
def test_a_line_that_fails_to_compress_fails_the_upload_when_failing_closed(
    failing: str, upstream: FakeUpstream
) -> None:
    sent = len(upstream.requests)
    r, _ = upload(failing, jsonl(lines("closed")))
    assert r.status_code == 500
    assert r.json()["error"]["type"] == "server_error"
    assert (r.headers["x-promptzip-status"], r.headers["x-promptzip-batch-line"]) == ("error", "1")
    assert len(upstream.requests) == sent


def test_a_route_turned_off_leaves_its_lines_as_they_came(upstream: FakeUpstream) -> None:
    off = settings(upstream.url, routes={CHAT: RouteSettings(compress=False)}, budget=BUDGET)
    data = jsonl(lines("route-off"))
    with live_server(create_app(off, zipper_factory=bm25)) as url:
        r, _ = upload(url, data, fields={"expires_after[anchor]": "created_at", "expires_after[seconds]": "3600"})
    assert r.headers["x-promptzip-batch-requests-compressed"] == "1"  # the Responses line only
    fields = form(last(upstream, ROUTE))
    assert list(fields) == ["purpose", "expires_after[anchor]", "expires_after[seconds]", "file"]
    assert fields["expires_after[seconds]"] == (b"3600", None, None)
    assert fields["file"][1:] == ("b.jsonl", "application/jsonl")
    got, given = fields["file"][0].split(b"\n"), data.split(b"\n")
    assert (got[0], got[2:]) == (given[0], given[2:])
    assert len(got[1]) < len(given[1])


def test_the_line_routes_are_the_proxys_own() -> None:
    s = ProxySettings(upstream="https://api.openai.com/v1")
    assert s.batch_line_route(CHAT) == (s.route(CHAT), "chat")
    assert s.batch_line_route(RESPONSES) == (s.route(RESPONSES), "responses")
    assert s.batch_line_route("/v1/completions") == (s.route("/v1/completions"), "completions")
    for url in ("/v1/embeddings", "/v1/messages", "/v1/chat/completions?x=1", "v1/chat/completions"):
        assert s.batch_line_route(url) is None  # not a route, or not an OpenAI batch endpoint
    gateway = ProxySettings(
        upstream="https://api.openai.com/v1",
        routes={RESPONSES: RouteSettings(compress=False), "/v1/gw": RouteSettings(dialect="responses", budget=9)},
    )
    assert gateway.batch_line_route(RESPONSES) is None
    assert gateway.batch_line_route("/v1/gw") == (gateway.route("/v1/gw"), "responses")


def test_a_reencoded_form_keeps_its_fields_and_their_order() -> None:
    body = (
        b'preamble\r\n--xx\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--xx \t\r\n'
        b'Content-Disposition: form-data; name="file"; filename="q\\"d.jsonl"\r\nContent-Type: text/plain\r\n\r\n'
        b"--x\r\n--xx--\r\nepilogue"
    )
    parsed = parse_form('multipart/form-data; boundary="xx"', body)
    assert parsed is not None
    assert [(p.name, p.filename, p.content) for p in parsed.parts] == [("a", None, b"1"), ("file", 'q"d.jsonl', b"--x")]
    content_type, again = parsed.encoded({1: b"new\r\n--xx"})
    assert not content_type.endswith("xx")
    reread = parse_form(content_type, again)
    assert reread is not None
    assert [(p.name, p.head, p.content) for p in reread.parts] == [
        ("a", parsed.parts[0].head, b"1"),
        ("file", parsed.parts[1].head, b"new\r\n--xx"),
    ]
    assert parse_form("application/json", b"{}") is None


# ---------------------------------------------------------------------------------------------------- pz.wrap
def test_a_wrapped_client_uploads_the_file_the_proxy_uploads(live: str, upstream: FakeUpstream, tmp_path: Path) -> None:
    data = jsonl(lines("doors"))
    proxied = through_proxy(live, upstream, data, "sk-file-doors")
    path = tmp_path / "batch.jsonl"
    path.write_bytes(data)

    def wrapped(client: openai.OpenAI) -> Any:
        return pz.wrap(client, budget=BUDGET, zipper=fresh())

    with openai.OpenAI(base_url=upstream.url, api_key="sk-test", max_retries=0) as client:
        assert wrapped(client).files.create(file=data, purpose="batch").id == "file-fake"
        assert form(last(upstream, ROUTE))["file"] == (proxied, "upload", "application/octet-stream")
        wrapped(client).files.create(file=("b.jsonl", data, "application/jsonl"), purpose="batch")
        assert form(last(upstream, ROUTE))["file"] == (proxied, "b.jsonl", "application/jsonl")
        raw = wrapped(client).with_raw_response.files.create(file=path, purpose="batch")
        assert raw.parse().filename == "batch.jsonl"
        assert form(last(upstream, ROUTE))["file"][:2] == (proxied, "batch.jsonl")  # the type: as httpx guesses it
        with path.open("rb") as handle:
            wrapped(client).files.with_raw_response.create(file=handle, purpose="batch")
        assert form(last(upstream, ROUTE))["file"][:2] == (proxied, "batch.jsonl")
        wrapped(client).files.create(file=("b.jsonl", io.BytesIO(data)), purpose="batch")
        assert form(last(upstream, ROUTE))["file"][0] == proxied
        assert form(last(upstream, ROUTE))["purpose"][0] == b"batch"

    async def main() -> None:
        async with openai.AsyncOpenAI(base_url=upstream.url, api_key="sk-test", max_retries=0) as client:
            uploaded = await wrapped(client).files.create(file=path, purpose="batch")
            assert uploaded.id == "file-fake"
            assert form(last(upstream, ROUTE))["file"][0] == proxied
            raw = await wrapped(client).files.with_raw_response.create(file=data, purpose="batch")
            assert raw.parse().bytes == len(proxied)
            assert form(last(upstream, ROUTE))["file"][0] == proxied

    asyncio.run(main())


def test_a_wrapped_upload_of_another_purpose_or_nothing_to_compress_is_sent_as_given(upstream: FakeUpstream) -> None:
    data = jsonl(lines("given"))
    small = jsonl(lines("given")[2:])
    with openai.OpenAI(base_url=upstream.url, api_key="sk-test", max_retries=0) as client:
        wrapped = pz.wrap(client, budget=BUDGET, zipper=fresh())
        wrapped.files.create(file=("b.jsonl", data), purpose="assistants")
        assert form(last(upstream, ROUTE))["file"][0] == data
        wrapped.files.create(file=io.BytesIO(small), purpose="batch")
        assert form(last(upstream, ROUTE))["file"] == (small, "upload", "application/octet-stream")
        wrapped.files.create(file=("b.jsonl", data), purpose="batch", promptzip=False)
        assert form(last(upstream, ROUTE))["file"][0] == data


@pytest.mark.parametrize("name", ["not-utf8", "not-json", "body-array", "bad-role", "input-number"])
def test_a_wrapped_client_refuses_what_the_proxy_refuses_with_the_same_message(
    live: str, upstream: FakeUpstream, name: str
) -> None:
    data, _ = BAD_FILES[name]
    with sdk(live, "sk-bad") as client, pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("b.jsonl", data), purpose="batch")
    message = caught.value.response.json()["error"]["message"]
    sent = len(upstream.requests)
    with (
        openai.OpenAI(base_url=upstream.url, api_key="sk-test", max_retries=0) as client,
        pytest.raises(pz.InputError) as refused,
    ):
        pz.wrap(client, budget=BUDGET, zipper=fresh()).files.create(file=data, purpose="batch")
    assert str(refused.value) == message
    assert len(upstream.requests) == sent


def test_a_wrapped_line_that_cannot_meet_its_budget_is_named(upstream: FakeUpstream) -> None:
    with openai.OpenAI(base_url=upstream.url, api_key="sk-test", max_retries=0) as client:
        wrapped = pz.wrap(client, budget=BUDGET, zipper=fresh())
        with pytest.raises(pz.BudgetError) as caught:
            wrapped.files.create(file=jsonl(lines("tiny")), purpose="batch", promptzip=1)
    assert "in line 1 (custom_id 'tiny-rag') of the batch file" in caught.value.__notes__
