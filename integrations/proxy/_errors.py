"""OpenAI-style JSON errors: ``{"error": {"message", "type", "param", "code"}}``, translated at one boundary.

The proxy's own exceptions extend the core tree::

    PromptZipError
    ├── InputError
    │   └── RequestError          4xx: the request cannot be handled as sent (carries status, param and code)
    │       ├── PayloadTooLarge   413: the body passed max_body_bytes while read, or max_forward_bytes while
    │       │                     forwarded unread (found as it arrives, before it is buffered or sent whole)
    │       ├── BodyTimeout       408 + connection: close: the client sent no chunk of a body, read whole or
    │       │   │                 forwarded, for longer than timeouts.write
    │       │   └── BodyTooSlow   ... or took longer over the whole body than timeouts.body (and min_body_rate) allow
    │       ├── HeaderTimeout     408 + connection: close: a request's headers were not complete within
    │       │                     timeouts.headers (answered by the connection itself, :mod:`._connections`)
    │       └── Overloaded        503 + retry-after: every compression slot is taken (compression_queue), the memory
    │                             for request bodies is (max_buffered_bytes), or every client connection
    │                             (max_client_connections; + connection: close)
    ├── DeadlineExceeded          504 (fail-closed): the compression ran past compression_deadline
    └── UpstreamError             502: unreachable or not speaking HTTP; 504: too slow (carries status_code)

:func:`error_response` maps any exception to a status and a body, and :func:`error_headers` to the headers its
answer carries in every API's style. Messages never include header values, so an ``Authorization`` header can never
be echoed back.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from promptzip._errors import (
    BudgetError,
    ConfigError,
    DeadlineExceeded,
    InputError,
    PromptZipError,
    UpstreamError,
)
from promptzip.integrations._bodies import RequestError

__all__ = [
    "CONNECTION_LIMITS",
    "BodyTimeout",
    "BodyTooSlow",
    "HeaderTimeout",
    "Overloaded",
    "PayloadTooLarge",
    "RequestError",
    "body_limit",
    "error_body",
    "error_headers",
    "error_response",
    "status_of",
]


class PayloadTooLarge(RequestError):
    """``setting`` names the limit passed, so an operator knows which one to raise."""

    def __init__(self, limit: int, setting: str = "max_body_bytes") -> None:
        super().__init__(
            f"the request body is larger than the proxy's limit of {limit} bytes ({setting})",
            status=413,
            code="body_too_large",
        )
        self.limit = limit
        self.setting = setting


class BodyTimeout(RequestError):
    """A client stopped sending a request body: the proxy stops waiting for it (and abandons the upstream request a
    body forwarded as it arrives held open). Its answer closes the connection (:func:`error_headers`). ``setting``
    names the bound it passed (the ``limit`` label of ``bodies_refused_total``)."""

    setting = "timeouts.write"

    def __init__(self, seconds: float, message: str | None = None) -> None:
        super().__init__(
            message
            or f"the client sent nothing of the request body for {seconds:g} s (timeouts.write); the proxy stopped "
            "waiting for it",
            status=408,
            code="body_timeout",
        )
        self.seconds = seconds


class BodyTooSlow(BodyTimeout):
    """A client kept sending a request body, but too slowly: it did not arrive within ``timeouts.body`` seconds
    plus one second per ``min_body_rate`` bytes received (``rate``; ``None`` when no allowance applied)."""

    setting = "timeouts.body"

    def __init__(self, seconds: float, received: int, rate: int | None) -> None:
        allowance = f" and 1 s per {rate} bytes received (min_body_rate)" if rate is not None else ""
        super().__init__(
            seconds,
            f"the client took longer to send the request body than the proxy allows: {seconds:g} s (timeouts.body)"
            f"{allowance}; {received} bytes arrived. The proxy stopped waiting for it",
        )
        self.received = received
        self.rate = rate


class HeaderTimeout(RequestError):
    """A client connected, or finished a request, and did not send the next request's headers in full within
    ``timeouts.headers`` seconds (a slowloris): the connection answers 408 itself and is closed."""

    setting = "timeouts.headers"

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"the request's headers did not arrive within {seconds:g} s (timeouts.headers); the proxy closed the "
            "connection",
            status=408,
            code="header_timeout",
        )
        self.seconds = seconds


class Overloaded(RequestError):
    """The proxy holds as much as it may: 503, and ``retry_after`` seconds is a fair time to try again. ``setting``
    names the bound that is full: ``compression_queue`` (every compression slot is taken), ``max_buffered_bytes``
    (the memory for request bodies), ``max_client_connections`` or ``max_connections_per_client`` (the connections
    open, all or from the client's address; this one is closed)."""

    def __init__(
        self,
        retry_after: int,
        message: str = "the proxy is compressing as many chats as it may; retry later",
        *,
        setting: str = "compression_queue",
    ) -> None:
        super().__init__(message, status=503, code="overloaded")
        self.retry_after = retry_after
        self.setting = setting


# Checked in order, the first class that matches wins: (status, type, code).
_TABLE: tuple[tuple[type[BaseException], int, str, str], ...] = (
    (BudgetError, 422, "invalid_request_error", "budget_not_met"),
    (DeadlineExceeded, 504, "server_error", "deadline_exceeded"),
    (InputError, 422, "invalid_request_error", "cannot_compress"),
    (ConfigError, 500, "server_error", "proxy_misconfigured"),
    (UpstreamError, 502, "upstream_error", "upstream_failed"),
    (PromptZipError, 500, "server_error", "compression_failed"),
    (BaseException, 500, "server_error", "internal_error"),
)


def status_of(exc: BaseException) -> tuple[int, str, str]:
    """(HTTP status, error type, code) for an exception."""
    if isinstance(exc, RequestError):
        kind = "invalid_request_error" if exc.status < 500 else "server_error"
        return exc.status, kind, exc.code
    if isinstance(exc, UpstreamError) and exc.status_code is not None:
        code = "upstream_timeout" if exc.status_code == 504 else "upstream_failed"
        return exc.status_code, "upstream_error", code
    return next((status, kind, code) for cls, status, kind, code in _TABLE if isinstance(exc, cls))


# The bounds on client connections: a connection refused at one is closed after its answer (._connections).
CONNECTION_LIMITS = frozenset({"max_client_connections", "max_connections_per_client"})


def error_headers(exc: BaseException) -> dict[str, str]:
    """The headers the answer to ``exc`` carries whatever the route and its API's style: ``connection: close`` after
    a stalled body (what the client might still send is not worth waiting for, and the server would wait for it to
    read the next request), ``retry-after`` when the proxy is overloaded. Any other body left unread the server
    drains, so a client that reads no answer before it has sent its whole body still gets this one. A connection
    refused at ``max_client_connections`` is closed too: it was never counted as one of the open ones."""
    if isinstance(exc, BodyTimeout | HeaderTimeout):
        return {"connection": "close"}
    if isinstance(exc, Overloaded):
        close = {"connection": "close"} if exc.setting in CONNECTION_LIMITS else {}
        return {"retry-after": str(exc.retry_after), **close}
    return {}


def body_limit(exc: BaseException) -> str | None:
    """The setting whose limit refused a request's body (the ``limit`` label of ``bodies_refused_total``), or
    ``None`` when ``exc`` is no such refusal."""
    if isinstance(exc, PayloadTooLarge | BodyTimeout):
        return exc.setting
    if isinstance(exc, Overloaded) and exc.setting == "max_buffered_bytes":
        return exc.setting
    return None


def error_body(message: str, *, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(exc: BaseException, *, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error response for ``exc`` (internal errors get a generic message, never a traceback)."""
    status, kind, code = status_of(exc)
    message = str(exc) if isinstance(exc, PromptZipError) else "internal proxy error"
    param = exc.param if isinstance(exc, RequestError) else None
    return JSONResponse(error_body(message, type=kind, param=param, code=code), status_code=status, headers=headers)
