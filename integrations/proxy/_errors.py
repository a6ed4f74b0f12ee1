"""OpenAI-style JSON errors: ``{"error": {"message", "type", "param", "code"}}``, translated at one boundary.

The proxy's own exceptions extend the core tree::

    PromptZipError
    ├── InputError
    │   └── RequestError          4xx: the request cannot be handled as sent (carries status, param and code)
    │       ├── PayloadTooLarge   413: the body passed max_body_bytes while read, or max_forward_bytes while
    │       │                     forwarded unread (found as it arrives, before it is buffered or sent whole)
    │       ├── BodyTimeout       408: a body forwarded unread stalled for longer than timeouts.write
    │       └── Overloaded        503 + retry-after: every compression slot is taken (the compression module)
    ├── DeadlineExceeded          504 (fail-closed): the compression ran past compression_deadline
    └── UpstreamError             502: unreachable or not speaking HTTP; 504: too slow (carries status_code)

:func:`error_response` maps any exception to a status and a body. Messages never include header values, so an
``Authorization`` header can never be echoed back.
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

__all__ = ["BodyTimeout", "PayloadTooLarge", "RequestError", "error_body", "error_response", "status_of"]


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
    """A client stopped sending a body the proxy was forwarding: the upstream request it held open is abandoned."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"the client sent nothing of the request body for {seconds:g} s (timeouts.write); the proxy gave up "
            "forwarding it",
            status=408,
            code="body_timeout",
        )
        self.seconds = seconds


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


def error_body(message: str, *, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(exc: BaseException, *, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error response for ``exc`` (internal errors get a generic message, never a traceback)."""
    status, kind, code = status_of(exc)
    message = str(exc) if isinstance(exc, PromptZipError) else "internal proxy error"
    param = exc.param if isinstance(exc, RequestError) else None
    return JSONResponse(error_body(message, type=kind, param=param, code=code), status_code=status, headers=headers)
