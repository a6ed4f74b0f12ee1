"""OpenAI Batch API input files: a batch is created from an uploaded JSONL file (``POST /v1/files`` with ``purpose``
``batch``), one request a line, ``{"custom_id": str, "method": "POST", "url": "/v1/chat/completions", "body": {...}}``.
A line whose ``url`` is a compressed route has its ``body`` compressed exactly as the same body sent alone to that
route would be; every other line, every key but ``body``, the order, blank lines and line endings are left as they
came, and a file in which nothing changed is sent as it came, byte for byte. The proxy's upload route
(:mod:`promptzip.integrations.proxy._openai_batches`) and the wrapped clients' ``files.create``
(:mod:`promptzip.integrations._clients`) read files here, so both refuse the same files with the same messages.

Decisions worth knowing:

* **Lines are split on ``\\n`` only**, on the bytes: a JSON text never holds a raw newline, but it may hold U+2028
  or a form feed, which ``str.splitlines`` would also split on. A line's ``\\r`` (a file written with CRLF) stays.
  Lines are numbered from 1 as an editor numbers them, blank lines included; a blank line (only whitespace) is left
  as it is and is not a request (the upstream decides whether it may be there).
* **Refused as a whole.** A file that is not UTF-8, a line that is not a JSON object, or a compressed route's line
  whose ``body`` is not an object is a :class:`RequestError` (400) naming the line (``line 3 (custom_id 'q-3')``).
  A line of another ``url`` (``/v1/embeddings``, say) is not read beyond being an object.
* **A changed line is re-encoded** as compact JSON (the proxy's encoding of a body) with its keys in their order.
* **A wrapped client reads the whole file** before the upload: bytes, a binary file object (read to its end and sent
  as ``(name, bytes)``, the name and so the content type httpx would have given it), a path (as the SDK reads one)
  or a ``(filename, content[, mime[, headers]])`` tuple (the filename, mime and headers kept). A text-mode file, or
  anything else the SDK does not take, is passed on as given, for the SDK to refuse.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptzip._errors import PromptZipError
from promptzip.integrations._bodies import RequestError, json_error, strict_json, type_name
from promptzip.integrations._calls import Compression, call_context
from promptzip.integrations._dialects import ChatCompletions, Completions, Dialect, OpenAIResponses

__all__ = ["BATCH_PURPOSE", "Line", "changed_line", "each_line", "read_batch_file", "rewritten"]

BATCH_PURPOSE = "batch"
_SHOWN_ID = 64  # a longer custom_id is not echoed in an error
_PARAM = "file"


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a batch file: its number (from 1), its bytes without the ``\\n`` (a ``\\r`` kept), and the request
    it holds (``None`` for a blank line)."""

    number: int
    raw: bytes
    request: Mapping[str, Any] | None

    @property
    def url(self) -> str | None:
        url = self.request.get("url") if self.request is not None else None
        return url if isinstance(url, str) else None

    @property
    def custom_id(self) -> Any:
        """The request's ``custom_id`` as given (any JSON value: the upstream decides), ``None`` without one."""
        return self.request.get("custom_id") if self.request is not None else None

    @property
    def where(self) -> str:
        """How an error names the line: its number, and its ``custom_id`` when that is a short string."""
        custom_id = self.custom_id
        shown = isinstance(custom_id, str) and 0 < len(custom_id) <= _SHOWN_ID and custom_id.isprintable()
        return f"line {self.number}" + (f" (custom_id {custom_id!r})" if shown else "")

    def body(self) -> Mapping[str, Any]:
        """The request's ``body``, which a compressed route's line must have as an object."""
        body = self.request.get("body") if self.request is not None else None
        if not isinstance(body, Mapping):
            raise RequestError(
                f"{self.where}: body must be an object (a {self.url} request), not {type_name(body)}",
                param=_PARAM,
                code="invalid_type",
            )
        return body


def read_batch_file(data: bytes) -> list[Line]:
    """Every line of a batch file (module docstring); a :class:`RequestError` (400) names the first bad line."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        number = data.count(b"\n", 0, exc.start) + 1
        raise RequestError(
            f"line {number}: the batch file is not valid UTF-8 (byte {exc.start})", param=_PARAM, code="invalid_utf8"
        ) from None
    lines: list[Line] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            lines.append(Line(number, raw, None))
            continue
        try:
            request = strict_json(raw)
        except (ValueError, RecursionError) as exc:
            raise RequestError(
                f"line {number}: not valid JSON: {json_error(exc)}", param=_PARAM, code="invalid_json"
            ) from None
        if not isinstance(request, dict):
            raise RequestError(
                f"line {number}: a request must be a JSON object, not {type_name(request)}",
                param=_PARAM,
                code="invalid_type",
            )
        lines.append(Line(number, raw, request))
    return lines


def named(exc: RequestError, line: Line) -> RequestError:
    """``exc``, raised for one line's ``body``, as the file's error: the same status and code, the line named."""
    return RequestError(f"{line.where}: body: {exc}", status=exc.status, param=_PARAM, code=exc.code)


def changed_line(line: Line, body: Mapping[str, Any]) -> bytes:
    """The line sent for ``line`` with its ``body`` replaced: compact JSON, every other key as it was, in order."""
    try:
        text = json.dumps({**(line.request or {}), "body": body}, ensure_ascii=False, separators=(",", ":"))
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError(
            f"{line.where}: contains an unpaired surrogate (invalid Unicode)", param=_PARAM, code="invalid_utf8"
        ) from None
    return encoded + (b"\r" if line.raw.endswith(b"\r") else b"")


def rewritten(data: bytes, lines: list[Line], bodies: Mapping[int, Mapping[str, Any]]) -> bytes:
    """``data`` with the lines numbered in ``bodies`` given those bodies; ``data`` itself when there are none."""
    if not bodies:
        return data
    return b"\n".join(changed_line(line, bodies[line.number]) if line.number in bodies else line.raw for line in lines)


# ------------------------------------------------------------------------------------------- wrapped clients
# The routes a wrapped client compresses a line for: the dialect that reads its body, and the keys holding the prompt.
_ROUTES: Mapping[str, tuple[Dialect, tuple[str, ...]]] = {
    "/v1/chat/completions": (ChatCompletions(), ("messages",)),
    "/v1/responses": (OpenAIResponses(), ("instructions", "input")),
    "/v1/completions": (Completions(), ("prompt", "echo")),
}


@dataclass(frozen=True, slots=True)
class _Upload:
    """A ``files.create`` file argument, read: its content, how the argument is rebuilt around new content, and
    whether reading it used it up (a file object), so that it must be rebuilt even when nothing changed."""

    content: bytes
    rebuild: Callable[[bytes], object]
    consumed: bool


def _content(value: object) -> tuple[bytes, str, bool] | None:
    """File content as the SDK takes it (bytes, a binary file object, a path): its bytes, the name httpx would give
    the file, and whether reading used it up; ``None`` for anything else."""
    if isinstance(value, bytes):
        return value, "upload", False
    if isinstance(value, os.PathLike):
        path = Path(value)
        return path.read_bytes(), path.name, False
    if isinstance(value, io.IOBase) and not isinstance(value, io.TextIOBase):
        data = value.read()
        return (data, Path(str(getattr(value, "name", "upload"))).name, True) if isinstance(data, bytes) else None
    return None


def _upload(file: object) -> _Upload | None:
    """The file argument read, or ``None`` where the SDK would refuse it (left for the SDK to say so)."""
    if isinstance(file, tuple) and len(file) >= 2:
        found = _content(file[1])
        if found is None:
            return None
        return _Upload(found[0], lambda new: (file[0], new, *file[2:]), found[2])
    found = _content(file)
    if found is None:
        return None
    data, name, consumed = found
    if isinstance(file, bytes):
        return _Upload(data, lambda new: new, consumed)
    # A path or a file object becomes (name, bytes): the SDK reads a path the same way, and a file object read to
    # its end cannot be sent again; the name is the one httpx would have used, so the content type is too.
    return _Upload(data, lambda new: (name, new), consumed)


def each_line(compression: Compression, kwargs: Mapping[str, Any], /, **options: Any) -> dict[str, Any]:
    """A wrapped client's ``files.create``: a ``batch`` file has each compressed route's line's ``body`` compressed
    as ``chat.completions.create``, ``responses.create`` or ``completions.create`` would send it, each with the
    conversation and prices its own ``model`` and ``prompt_cache_key`` name; another purpose, and a file with
    nothing to change, are sent as given. An error names the line: a refused body's :class:`RequestError` in its
    message, any other promptzip error (a budget a line cannot meet, say) in a note, its type unchanged."""
    if kwargs.get("purpose") != BATCH_PURPOSE:
        return dict(kwargs)
    upload = _upload(kwargs["file"])
    if upload is None:
        return dict(kwargs)
    lines = read_batch_file(upload.content)
    bodies: dict[int, Mapping[str, Any]] = {}
    for line in lines:
        route = _ROUTES.get(line.url or "")
        if route is None:
            continue
        dialect, keys = route
        body = line.body()
        own = {**options, **call_context(body)}  # the upload has no model: each line's own
        try:
            new = compression.call(dialect, body, keys, **own)
        except RequestError as exc:
            raise named(exc, line) from exc
        except PromptZipError as exc:
            exc.add_note(f"in {line.where} of the batch file")
            raise
        if any(body.get(k) is not v for k, v in new.items()):
            bodies[line.number] = new
    content = rewritten(upload.content, lines, bodies)
    if content is upload.content and not upload.consumed:
        return dict(kwargs)  # nothing changed, and the argument can still be read: sent as given
    return {**kwargs, "file": upload.rebuild(content)}
