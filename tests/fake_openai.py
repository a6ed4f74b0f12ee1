"""A fake OpenAI-compatible upstream: a real HTTP/1.1 server on 127.0.0.1 that records every request.

>>> with FakeOpenAI(reply="Paris.") as fake:  # doctest: +SKIP
...     client = openai.OpenAI(base_url=fake.url + "/v1", api_key="test")
...     client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
...     fake.requests[-1].json()["messages"]

Routes: ``POST /v1/chat/completions`` (JSON, or SSE when the body has ``"stream": true``), ``POST /v1/responses``
(JSON or SSE events), ``GET /v1/models``; anything else is an OpenAI-style 404. Malformed JSON is a 400.

Faults for tests: queue :class:`Reply` objects with :meth:`FakeOpenAI.push`; each request takes the next one
(``status``/``body`` replace the response, ``delay_s`` waits first, ``reset_after`` aborts an SSE stream with a TCP
reset after that many events). With an empty queue every request gets the normal answer.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["FakeOpenAI", "Recorded", "Reply"]


@dataclass(frozen=True)
class Recorded:
    """One request as the server received it; header names are lower-case."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    """A scripted answer for the next request: any field left as None keeps the normal behaviour."""

    status: int | None = None
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    reset_after: int | None = None


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that closes its connection mid-stream or between requests (a cancelled stream, a closed SDK
        # client) is a case the tests make on purpose; anything else is printed as the standard library does.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeOpenAI:
    """Start with ``with FakeOpenAI() as fake`` (or :meth:`start`/:meth:`stop`); ``fake.url`` has no ``/v1``."""

    def __init__(self, *, reply: str = "This is the fake upstream's answer.", model: str = "gpt-4o") -> None:
        self.reply = reply
        self.model = model
        self.requests: list[Recorded] = []
        self._scripted: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake upstream is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeOpenAI:
        handler = type("Handler", (_Handler,), {"fake": self})
        server = _Server(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------------ test helpers
    def push(self, *replies: Reply) -> None:
        """Script the answers to the next requests, in order."""
        with self._lock:
            self._scripted.extend(replies)

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self._scripted.clear()

    def last(self, path: str | None = None) -> Recorded:
        """The latest request (to ``path``, when given)."""
        with self._lock:
            found = [r for r in self.requests if path is None or r.path == path]
        if not found:
            raise LookupError(f"no request to {path or 'any path'} was received")
        return found[-1]

    def reply_chunks(self) -> list[str]:
        """The pieces a streamed answer is sent in: one per word, spaces kept."""
        words = self.reply.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]

    def _record(self, request: Recorded) -> Reply | None:
        with self._lock:
            self.requests.append(request)
            return self._scripted.popleft() if self._scripted else None

    # ------------------------------------------------------------------------------------------ answers
    def chat_completion(self, body: Mapping[str, Any]) -> dict[str, Any]:
        prompt = _words(body.get("messages"))
        completion = len(self.reply.split())
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self.reply, "refusal": None},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        }

    def chat_chunks(self, body: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        base = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model", self.model),
        }
        yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        for piece in self.reply_chunks():
            yield {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}

    def response(
        self, body: Mapping[str, Any], *, status: str = "completed", text: str | None = None
    ) -> dict[str, Any]:
        prompt = _words(body.get("input"))
        completion = len(self.reply.split())
        return {
            "id": "resp_fake",
            "object": "response",
            "created_at": int(time.time()),
            "status": status,
            "model": body.get("model", self.model),
            "output": [
                {
                    "type": "message",
                    "id": "msg_fake",
                    "status": "completed",
                    "role": "assistant",
                    "content": [
                        {"type": "output_text", "text": self.reply if text is None else text, "annotations": []}
                    ],
                }
            ],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": {
                "input_tokens": prompt,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": completion,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": prompt + completion,
            },
        }

    def response_events(self, body: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        yield {
            "type": "response.created",
            "sequence_number": 0,
            "response": self.response(body, status="in_progress", text=""),
        }
        n = 1
        for piece in self.reply_chunks():
            yield {
                "type": "response.output_text.delta",
                "sequence_number": n,
                "item_id": "msg_fake",
                "output_index": 0,
                "content_index": 0,
                "delta": piece,
                "logprobs": [],
            }
            n += 1
        yield {"type": "response.completed", "sequence_number": n, "response": self.response(body)}


def _words(value: Any) -> int:
    """A rough size of what was sent (the fake has no tokenizer): words in every string inside ``value``."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, Mapping):
        return sum(_words(v) for v in value.values())
    if isinstance(value, list):
        return sum(_words(v) for v in value)
    return 0


_ANSWERED = Reply(body=b"")  # a scripted reply that was the whole answer


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAI
    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle keep-alive connection is closed after this many seconds

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        return

    def do_GET(self) -> None:
        reply = self._receive(b"")
        if reply is _ANSWERED:
            return
        if self.path == "/v1/models":
            self._json(
                200, {"object": "list", "data": [{"id": self.fake.model, "object": "model", "owned_by": "fake"}]}
            )
        else:
            self._not_found()

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        reply = self._receive(raw)
        if reply is _ANSWERED:
            return
        if self.path not in ("/v1/chat/completions", "/v1/responses"):
            self._not_found()
            return
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
        except ValueError as exc:
            self._error(400, f"could not parse the JSON body: {exc}", "invalid_request_error")
            return
        chat = self.path == "/v1/chat/completions"
        if body.get("stream") is True:
            events = self.fake.chat_chunks(body) if chat else self.fake.response_events(body)
            self._sse(events, named=not chat, reset_after=reply.reset_after if reply is not None else None)
        else:
            self._json(200, self.fake.chat_completion(body) if chat else self.fake.response(body))

    def _receive(self, raw: bytes) -> Reply | None:
        """Record the request and apply the next scripted reply: ``_ANSWERED`` when it was the whole answer."""
        headers = {k.lower(): v for k, v in self.headers.items()}
        scripted = self.fake._record(Recorded(self.command, self.path, headers, raw))
        if scripted is None:
            return None
        if scripted.delay_s:
            time.sleep(scripted.delay_s)
        if scripted.body is None and scripted.status is None:
            return scripted
        body = scripted.body if scripted.body is not None else b""
        self.send_response(scripted.status or 200)
        for k, v in {"content-type": "application/json", **scripted.headers}.items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return _ANSWERED

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, kind: str, code: str | None = None) -> None:
        self._json(status, {"error": {"message": message, "type": kind, "param": None, "code": code}})

    def _not_found(self) -> None:
        self._error(
            404, f"no route {self.command} {self.path} on the fake upstream", "invalid_request_error", "not_found"
        )

    def _sse(self, events: Iterator[dict[str, Any]], *, named: bool, reset_after: int | None) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for n, event in enumerate(events):
            if reset_after is not None and n >= reset_after:
                self._reset()
                return
            prefix = f"event: {event['type']}\n" if named else ""
            self._chunk(f"{prefix}data: {json.dumps(event)}\n\n".encode())
        if not named:
            self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0), as a crashed upstream would. The pause lets the client
        read what was sent before (a reset may discard data the client has not read yet)."""
        self.wfile.flush()
        time.sleep(0.2)
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()
