"""Refuse requests whose body framing is ambiguous, before anything reads them (request smuggling).

When a request carries both ``Content-Length`` and ``Transfer-Encoding``, or two lengths, servers in a chain may
disagree on where its body ends; the bytes one of them takes for the body's tail another reads as a new request.
h11 (the parser serve() runs, httptools or not) lets ``Transfer-Encoding`` win and then serves whatever follows
the chunked body on the same connection, so such a request would let a client slip a second, unchecked request
past whatever sits in front of the proxy. RFC 9112 §6.1 allows the server to refuse it, and then it must close
the connection: the answer is a 400 with ``connection: close``, which makes uvicorn drop any bytes left unread.

Some of these (two different lengths, a coding other than ``chunked``) h11 already refuses itself, with its own
plain-text 400; the checks here keep the proxy safe under any HTTP parser.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from promptzip.integrations.proxy._errors import RequestError, error_response

__all__ = ["FramingGuard", "framing_problem"]


def framing_problem(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """Why a request's framing headers are ambiguous, or ``None`` when they are not."""
    lengths = [v for k, v in headers if k.lower() == b"content-length"]
    codings = [v for k, v in headers if k.lower() == b"transfer-encoding"]
    if len(lengths) > 1 or any(b"," in v for v in lengths):
        return "the request has more than one content-length"
    if len(codings) > 1 or any(v.strip().lower() != b"chunked" for v in codings):
        return "the only transfer-encoding the proxy accepts is a single 'chunked'"
    if lengths and codings:
        return "the request has both content-length and transfer-encoding; send one"
    return None


class FramingGuard:
    """Pure ASGI middleware: answers 400 and closes the connection when :func:`framing_problem` finds one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        problem = framing_problem(scope.get("headers", ())) if scope["type"] == "http" else None
        if problem is None:
            await self.app(scope, receive, send)
            return
        refusal = RequestError(problem, code="invalid_framing")
        await error_response(refusal, headers={"connection": "close"})(scope, receive, send)
