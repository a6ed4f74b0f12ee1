"""What the proxy tests share: a model-free Zipper factory, settings for a fake upstream, and for the fair-queue
tests a compressor that waits behind a gate and the jobs a queue starts."""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx

from promptzip._cache import Cache
from promptzip._pipeline import Zipper
from promptzip._roles import Compressor
from promptzip._tokenizers import Tokenizer
from promptzip._types import Chunk, Variant
from promptzip.compressors.extractive import ExtractiveCompressor
from promptzip.integrations.proxy import ProxySettings, create_app
from promptzip.integrations.proxy.testing import Recorded, live_server
from promptzip.retrievers.sparse import BM25Scorer


def bm25(preset: str, target: str, cache: Cache) -> Zipper:
    """A cheap stack with no model: BM25 relevance + extractive selection."""
    return Zipper(ExtractiveCompressor(BM25Scorer(), min_relevance=None), target=target, name=preset)


def settings(upstream: str, **kw: Any) -> ProxySettings:
    return ProxySettings(**{"upstream": upstream, "cache": "memory", "min_tokens": 50, **kw})


class Recording(Compressor):
    """BM25 selection that waits for ``gate`` on chats holding a ``TAG-`` word, recording each chat's tags in the
    order the compression thread took them."""

    name = "recording"

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate
        self.order: list[str] = []
        self.inner = ExtractiveCompressor(BM25Scorer(), min_relevance=None)

    def _propose(self, chunks: Sequence[Chunk], query: str | None, tokenizer: Tokenizer) -> list[list[Variant]]:
        tags = [word for c in chunks for word in c.text.split() if word.startswith("TAG-")]
        self.order.extend(tags)
        if tags:
            assert self.gate.wait(timeout=30), "the test never opened the gate"
        return self.inner.propose(chunks, query, tokenizer)


class Exploding(Compressor):
    """A compressor that raises ``error`` on every call: a crash inside compression."""

    name = "exploding"

    def __init__(self, error: Exception) -> None:
        self.error = error

    def _propose(self, chunks: Sequence[Chunk], query: str | None, tokenizer: Tokenizer) -> list[list[Variant]]:
        raise self.error


def exploding(error: Exception) -> Any:
    """A Zipper factory whose Zippers raise ``error``."""
    return lambda preset, target, cache: Zipper(Exploding(error), target=target)


# A long report whose year-12 sentence answers "How many ships in year 12?": the dialect tests' shared context.
REPORT = " ".join(
    f"Sentence {i} of the report says the harbour handled {i * 7} ships and {i * 3} storms that year."
    for i in range(40)
)


def ask_as_given(
    url: str, key: str, tag: str, mode: str, user: str | None = None, *, embed: bool = False
) -> httpx.Response:
    """A one-line chat (its text ``tag``) sent with ``x-promptzip-disable`` under ``key`` or, with ``embed``, an
    embeddings request of ``tag`` (a route the proxy passes through), answered by the fake upstream in ``mode``
    (``slow:1.5``, ``ok``), its body naming ``user`` when given."""
    body: dict[str, Any] = (
        {"model": "text-embedding-3-small", "input": tag}
        if embed
        else {"model": "gpt-4o", "messages": [{"role": "user", "content": tag}]}
    )
    if user is not None:
        body["user"] = user
    extra = {"x-fake-mode": mode} if embed else {"x-promptzip-disable": "true", "x-fake-mode": mode}
    route = "/v1/embeddings" if embed else "/v1/chat/completions"
    with httpx.Client(base_url=url, timeout=30) as http:
        return http.post(route, json=body, headers={"authorization": f"Bearer {key}", **extra})


def gauge(url: str, name: str) -> int:
    """The proxy's gauge ``promptzip_proxy_<name>`` at ``url`` (``requests_in_flight`` counts the scrape that asks)."""
    text = httpx.get(url + "/metrics", timeout=10).text
    found = re.search(rf"^promptzip_proxy_{name} (\S+)$", text, re.M)
    assert found is not None
    return int(float(found.group(1)))


def wait_for_gauge(url: str, name: str, at_least: int) -> None:
    deadline = time.monotonic() + 10
    while gauge(url, name) < at_least:
        assert time.monotonic() < deadline, f"{name} stayed under {at_least}"
        time.sleep(0.01)


def slow_six_in_order(
    pool: ThreadPoolExecutor, url: str, upstream: Any, key: str, user: str | None = None, *, embed: bool = False
) -> list[Future[httpx.Response]]:
    """Six slow requests ``a0``…``a5`` (``slow:1.5``) sent through ``pool``, each once the one before is in: the first
    two once the upstream has them (on a loaded machine two threads started 50 ms apart can reach the proxy in either
    order), the other four once the proxy holds them, to wait for one of the two upstream connections the caller's
    proxy has."""
    before, batch = len(upstream.requests), []
    for i in range(6):
        batch.append(pool.submit(ask_as_given, url, key, f"a{i}", "slow:1.5", user, embed=embed))
        deadline = time.monotonic() + 10
        while i < 2 and len(upstream.requests) - before <= i:
            assert time.monotonic() < deadline, f"request a{i} did not reach the upstream"
            time.sleep(0.01)
        wait_for_gauge(url, "requests_in_flight", i + 2)  # this one and the scrape
    time.sleep(0.2)  # the last one reads its body and joins the queue for a connection
    return batch


def last_body(upstream: Any, route: str) -> dict[str, Any]:
    """The JSON body of the upstream's last request, which must have gone to ``route``."""
    last = upstream.requests[-1]
    assert last.target == route
    body: dict[str, Any] = last.json()
    return body


def raw_answer(sock: socket.socket) -> tuple[int, dict[str, str], Any]:
    """The status, headers (lowercase names) and JSON body of the HTTP answer on a raw ``sock``; closes it."""
    data = b""
    with sock:
        while b"\r\n\r\n" not in data and (more := sock.recv(65536)):
            data += more
        head, _, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        while length is not None and len(body) < int(length[1]) and (more := sock.recv(65536)):
            body += more
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ", 2)[1]), headers, json.loads(body)


def expand_report(url: str, id: str, key: str) -> httpx.Response:
    """``GET /v1/promptzip/expand/{id}`` on the proxy at ``url`` with the API key ``key`` (a bearer token)."""
    return httpx.get(f"{url}/v1/promptzip/expand/{id}", headers={"authorization": f"Bearer {key}"}, timeout=30)


class Runs:
    """The ``start`` callables of a fair queue's jobs: each records its name when a thread would take it, and its
    future is settled by the test."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.futures: dict[str, asyncio.Future[str]] = {}

    def start(self, name: str) -> Callable[[], asyncio.Future[str]]:
        def run() -> asyncio.Future[str]:
            self.started.append(name)
            future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self.futures[name] = future
            return future

        return run

    def finish(self, name: str) -> None:
        self.futures[name].set_result(name)

    async def finish_all(self, count: int) -> None:
        """Settle the newest started job ``count`` times, letting the queue start the next after each."""
        for _ in range(count):
            self.finish(self.started[-1])
            await asyncio.sleep(0)


@contextmanager
def gated_proxy(upstream: str, **kw: Any) -> Iterator[tuple[str, Recording, threading.Event]]:
    """A live proxy with one compression thread and a queue of 4 whose compressor waits behind a gate (``Recording``):
    its URL, the compressor and the gate, which is always opened at the end."""
    gate = threading.Event()
    compressor = Recording(gate)
    s = settings(upstream, compression_threads=1, compression_queue=4, compression_deadline=30, **kw)
    factory = lambda preset, target, cache: Zipper(compressor, target=target, name=preset)  # noqa: E731
    try:
        with live_server(create_app(s, zipper_factory=factory)) as url:
            yield url, compressor, gate
    finally:
        gate.set()


def uploaded_lines(request: Recorded) -> list[dict[str, Any]]:
    """The JSONL lines of the ``file`` field of a multipart upload the upstream got, read with the stdlib."""
    head = f"Content-Type: {request.header('content-type')}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.body)
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            content = part.get_payload(decode=True)
            assert isinstance(content, bytes)
            return [json.loads(line) for line in content.splitlines() if line.strip()]
    raise AssertionError("no file field")
