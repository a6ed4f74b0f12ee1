"""What the proxy logs, and how ``promptzip proxy --log-level`` sets its loggers up.

No line ever holds request or response content, a header value, a path beyond its route label or a query string
(some providers put keys there). A request is one line on ``promptzip.proxy.access``, at info, as ``key=value``
pairs::

    request method=POST route=/v1/chat/completions status=200 pz_status=compressed reason=- error=- tokens_in=8012
    tokens_out=1990 compress_ms=41.3 total_ms=212.9 cache=miss

(one line; ``-`` where a field does not apply). Warnings name the kind of a problem (the exception's class, the
error code) and where it is (an offset, a length), never the exception's message, which may quote the user's text.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = ["access", "describe", "log_config", "note", "request_line", "request_notes"]

access = logging.getLogger("promptzip.proxy.access")

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_TOKEN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_HEADERS = {
    "x-promptzip-status": "pz_status",
    "x-promptzip-reason": "reason",
    "x-promptzip-error": "error",
    "x-promptzip-tokens-in": "tokens_in",
    "x-promptzip-tokens-out": "tokens_out",
    "x-promptzip-cache": "cache",
}
_notes: ContextVar[dict[str, float] | None] = ContextVar("promptzip_proxy_notes", default=None)


@contextmanager
def request_notes() -> Iterator[dict[str, float]]:
    """Figures noted (:func:`note`) while a request is handled, for its log line. A context variable rather than an
    argument, so that the handlers need not pass them along: the request's task and its child tasks see the dict."""
    notes: dict[str, float] = {}
    token = _notes.set(notes)
    try:
        yield notes
    finally:
        _notes.reset(token)


def note(name: str, value: float) -> None:
    """Note a figure for the current request's log line (nothing outside a request)."""
    notes = _notes.get()
    if notes is not None:
        notes[name] = value


def request_line(
    method: str, route: str, status: int, headers: Sequence[tuple[bytes, bytes]], notes: dict[str, float], total: float
) -> str:
    """The log line of one request, from the response's ``x-promptzip-*`` headers and the figures noted."""
    fields = dict.fromkeys(_HEADERS.values(), "-")
    for key, value in headers:  # the proxy's own headers follow the upstream's: the last one wins
        field = _HEADERS.get(key.decode("latin-1").lower())
        if field is not None:
            text = value.decode("latin-1")
            fields[field] = text if _TOKEN.match(text) else "?"  # an odd value from the upstream is not copied
    compress = notes.get("compress_s")
    return (
        f"request method={method if method in _METHODS else 'other'} route={route} status={status} "
        f"pz_status={fields['pz_status']} reason={fields['reason']} error={fields['error']} "
        f"tokens_in={fields['tokens_in']} tokens_out={fields['tokens_out']} "
        f"compress_ms={'-' if compress is None else f'{compress * 1000:.1f}'} total_ms={total * 1000:.1f} "
        f"cache={fields['cache']}"
    )


def describe(exc: BaseException, code: str, *, body_bytes: int | None = None) -> str:
    """An exception as a warning may name it: its class, the error code and where it happened."""
    parts = [f"kind={type(exc).__name__}", f"code={code}"]
    position = getattr(exc, "position", None)
    if isinstance(position, int):
        parts.append(f"position={position}")
    if body_bytes is not None:
        parts.append(f"body_bytes={body_bytes}")
    return " ".join(parts)


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging configuration, plus promptzip's loggers on uvicorn's stderr handler and format.

    uvicorn configures its own loggers only, so without this the proxy's info and debug lines went nowhere (Python's
    last-resort handler prints warnings only). ``promptzip.proxy`` (the ready line, request lines, warnings) logs
    at ``level``; the library's own ``promptzip`` loggers at warning or above, since their debug lines are meant
    for a developer, not a server's log.
    """
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    level = level.upper()
    library = logging.getLevelName(max(logging.WARNING, logging.getLevelName(level)))
    config["loggers"]["promptzip"] = {"handlers": ["default"], "level": library, "propagate": False}
    config["loggers"]["promptzip.proxy"] = {"level": level}
    return config
