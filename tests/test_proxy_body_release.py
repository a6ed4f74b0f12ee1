"""A request body is let go once it is sent upstream: neither the proxy nor httpx keeps its bytes while the answer is
relayed, so its share of ``max_buffered_bytes`` is back as soon as the answer's headers are in, however long a
streamed answer goes on. What the upstream gets is unchanged: the same bytes, with a ``content-length`` (never
chunked), and a failure to reach it is the same error answer.

A real uvicorn server on 127.0.0.1 serves the proxy in front of :class:`FakeUpstream`, whose streamed answers here
take seconds. Bodies are small: the budget here has room for one of them at a time.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from proxy_helpers import REPORT, bm25, settings
from starlette.applications import Starlette

from promptzip.evals._redis_server import free_port
from promptzip.integrations.proxy import create_app
from promptzip.integrations.proxy.testing import FakeUpstream, live_server

KiB = 1 << 10
READ = 64 * KiB  # max_body_bytes and max_buffered_bytes: room for one body at a time, as in an idle proxy
CHUNKS, DELAY = 30, 0.1  # a streamed answer's text deltas, and the seconds between two: it lasts seconds
CHAT, MESSAGES, RESPONSES = "/v1/chat/completions", "/v1/messages", "/v1/responses"
JSON = {"content-type": "application/json"}


def chat(size: int, **extra: Any) -> bytes:
    """A valid chat body (OpenAI's and Anthropic's alike) of about ``size`` bytes: the report, then a question."""
    context = (REPORT + " ") * (size // (len(REPORT) + 1) + 1)
    question = f"Context: {context[: max(0, size - 200)]}\nQuestion: How many ships in year 12?"
    return json.dumps(
        {"model": "gpt-4o", "max_tokens": 16, "messages": [{"role": "user", "content": question}], **extra}
    ).encode()


class Recording(httpx.AsyncBaseTransport):
    """The network transport, keeping each request it sent (to see what httpx still holds of it)."""

    def __init__(self) -> None:
        self.sent: list[httpx.Request] = []
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@pytest.fixture(scope="module")
def slow() -> Iterator[FakeUpstream]:
    with FakeUpstream(chunks=CHUNKS, chunk_delay=DELAY) as fake:
        yield fake


@pytest.fixture(scope="module")
def transport() -> Recording:
    return Recording()


@pytest.fixture(scope="module")
def live_app(slow: FakeUpstream, transport: Recording) -> Starlette:
    limits = {"max_body_bytes": READ, "max_buffered_bytes": READ}
    return create_app(settings(slow.url, **limits), zipper_factory=bm25, transport=transport)


@pytest.fixture(scope="module")
def proxy(live_app: Starlette) -> Iterator[str]:
    with live_server(live_app) as url:
        yield url


# --------------------------------------------------------------------------------------- let go once sent
@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        (CHAT, JSON, "compressed"),
        (MESSAGES, JSON, "compressed"),
        (CHAT, {**JSON, "x-promptzip-disable": "1"}, "passthrough"),  # sent as it came, the whole body
    ],
    ids=["openai", "anthropic", "disabled"],
)
def test_a_body_is_let_go_once_sent_while_its_streamed_answer_goes_on(
    proxy: str,
    live_app: Starlette,
    slow: FakeUpstream,
    transport: Recording,
    path: str,
    headers: dict[str, str],
    status: str,
) -> None:
    budget = live_app.state.proxy.body_budget
    body = chat(60 * KiB, stream=True)
    with httpx.Client(base_url=proxy, timeout=30) as http:
        started = time.monotonic()
        with http.stream("POST", path, content=body, headers=headers) as streamed:
            assert (streamed.status_code, streamed.headers["x-promptzip-status"]) == (200, status)
            chunks = streamed.iter_raw()
            first = next(chunks)
            sent = slow.requests[-1]
            assert 0 < len(sent.body) <= len(body)
            assert budget.held == 0  # the answer streams on for seconds: its body is not held meanwhile
            with pytest.raises(httpx.RequestNotRead):  # nor kept by the request it went upstream as
                _ = transport.sent[-1].content
            # So a second body as large, which would not fit beside the first, gets through while it streams.
            again = http.post(path, content=chat(60 * KiB), headers=headers)
            assert again.status_code == 200, again.text
            assert time.monotonic() - started < CHUNKS * DELAY  # the first answer was still being relayed
            rest = b"".join(chunks)
    text = (first + rest).decode()
    assert f"part{CHUNKS - 1} " in text
    assert ("[DONE]" if path == CHAT else "message_stop") in text
    assert budget.held == 0


def test_a_body_stays_reserved_while_it_is_sent() -> None:
    """The reservation is given back once the body is sent, not before: a transport that reads the body (as
    ``httpx.MockTransport`` does) finds it covered, and gets its bytes with their length."""
    seen: list[tuple[int, bytes, str | None]] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append((budget.held, request.content, request.headers.get("content-length")))
        return httpx.Response(200, json={"ok": True})

    limits = {"max_body_bytes": READ, "max_buffered_bytes": READ}
    mock = httpx.MockTransport(upstream)
    app = create_app(settings("http://upstream.invalid/v1", **limits), zipper_factory=bm25, transport=mock)
    budget = app.state.proxy.body_budget
    body = chat(40 * KiB)

    async def post() -> httpx.Response:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy")
        async with app.router.lifespan_context(app), client:
            return await client.post(CHAT, content=body, headers={**JSON, "x-promptzip-disable": "1"})

    r = asyncio.run(post())
    assert r.json() == {"ok": True}
    assert seen == [(len(body), body, str(len(body)))]
    assert budget.held == 0


# -------------------------------------------------------------------------------------------- on the wire
def _upload(lines: list[dict[str, Any]]) -> tuple[bytes, str]:
    """A ``/v1/files`` batch upload of ``lines`` as a form, and its content-type."""
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    head = b'--b\r\ncontent-disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
    file = b'--b\r\ncontent-disposition: form-data; name="file"; filename="b.jsonl"\r\n'
    body = head + file + b"content-type: application/jsonl\r\n\r\n" + data + b"\r\n--b--\r\n"
    return body, "multipart/form-data; boundary=b"


def _batch_line(i: int) -> dict[str, Any]:
    return {"custom_id": f"r{i}", "method": "POST", "url": CHAT, "body": json.loads(chat(8 * KiB))}


@pytest.mark.parametrize(
    ("path", "body", "content_type", "same"),
    [
        (CHAT, chat(40 * KiB), "application/json", False),  # compressed: a new body
        (MESSAGES, chat(40 * KiB), "application/json", False),
        (RESPONSES, b'{"model": "gpt-4o", "input": "Hi."}', "application/json", True),  # too small: as it came
        (
            MESSAGES + "/batches",
            json.dumps({"requests": [{"custom_id": "a", "params": json.loads(chat(20 * KiB))}]}).encode(),
            "application/json",
            False,
        ),
        ("/v1/files", *_upload([_batch_line(0), _batch_line(1)]), False),  # re-encoded: a new form
        ("/v1/embeddings", json.dumps({"model": "e", "input": REPORT * 20}).encode(), "application/json", True),
        ("/v1/embeddings", b"", "application/json", True),  # no body: content-length 0, as httpx sends a POST
    ],
    ids=["openai", "anthropic", "responses", "batch", "batch-file", "passthrough", "empty"],
)
def test_the_upstream_gets_the_bytes_with_a_content_length_never_chunked(
    proxy: str, slow: FakeUpstream, path: str, body: bytes, content_type: str, same: bool
) -> None:
    r = httpx.post(proxy + path, content=body, headers={"content-type": content_type}, timeout=30)
    assert r.status_code == 200, r.text
    sent = slow.requests[-1]
    assert sent.header("content-length") == str(len(sent.body))
    assert sent.header("transfer-encoding") is None
    if same:
        assert sent.body == body
    else:
        assert r.headers["x-promptzip-status"] == "compressed"
        assert 0 < len(sent.body) < len(body)
        if content_type == "application/json":
            json.loads(sent.body)


def test_a_disabled_chat_goes_byte_for_byte_with_its_length(proxy: str, slow: FakeUpstream) -> None:
    body = chat(40 * KiB).replace(b'"model"', b' "model"')  # not as the proxy would write it
    r = httpx.post(proxy + CHAT, content=body, headers={**JSON, "x-promptzip-disable": "1"}, timeout=30)
    assert r.status_code == 200, r.text
    sent = slow.requests[-1]
    assert (sent.body, sent.header("content-length"), sent.header("transfer-encoding")) == (
        body,
        str(len(body)),
        None,
    )


# ------------------------------------------------------------------------------------------------ failures
OPENAI_DOWN = {
    "error": {
        "message": "cannot connect to the upstream",
        "type": "upstream_error",
        "param": None,
        "code": "upstream_failed",
    }
}
ANTHROPIC_DOWN = {"type": "error", "error": {"type": "api_error", "message": "cannot connect to the upstream"}}


def test_an_upstream_that_cannot_be_reached_is_the_same_502() -> None:
    app = create_app(settings(f"http://127.0.0.1:{free_port()}/v1"), zipper_factory=bm25)  # nothing listens there
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        for path, expected in [(CHAT, OPENAI_DOWN), (MESSAGES, ANTHROPIC_DOWN), ("/v1/embeddings", OPENAI_DOWN)]:
            r = http.post(path, content=chat(20 * KiB), headers=JSON)
            assert (r.status_code, r.json()) == (502, expected), path
        assert app.state.proxy.metrics.upstream_errors.value("connect") == 3
        assert app.state.proxy.body_budget.held == 0


def test_an_upstream_that_hangs_up_after_the_body_is_the_same_502() -> None:
    with FakeUpstream(mode="close") as closing:
        app = create_app(settings(closing.url), zipper_factory=bm25)
        with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
            body = chat(20 * KiB)
            r = http.post(CHAT, content=body, headers={**JSON, "x-promptzip-disable": "1"})
            assert r.status_code == 502
            assert r.json()["error"]["message"] == "the upstream's answer is not valid HTTP"
            assert closing.requests[-1].body == body  # sent whole before the upstream hung up
            assert app.state.proxy.body_budget.held == 0
