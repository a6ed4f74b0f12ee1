"""OpenAI Batch API input files through the proxy: ``POST /v1/files`` (:data:`~._settings.FILES`), a
``multipart/form-data`` upload whose ``purpose`` field is ``batch`` and whose ``file`` field is a JSONL file of
requests (:mod:`promptzip.integrations._openai_batches`).

Each line whose ``url`` is a compressed route (``/v1/chat/completions``, ``/v1/responses``, ``/v1/completions``:
the route a request on that path takes, :meth:`~._settings.ProxySettings.batch_line_route`, so a route turned off
stays off) has its ``body`` compressed exactly as that body sent alone to that route with the upload's headers would
be: the same dialect, options (budget, preset, scope, history, tenant, the credential's cache scope, the route's own
defaults), pricing by the body's ``model``, ``prompt_cache_key`` as the conversation, ``min_tokens`` threshold and
whole-request cache. Every other line, key, blank line and line ending is sent as it came, and so is every other
field of the form, in its order; a file with nothing compressed is forwarded byte for byte, and a changed one in a
form with a fresh boundary (:mod:`._multipart`). ``POST /v1/batches`` (which names the uploaded file), retrieving
files and the Uploads API (``/v1/uploads``: a file sent in parts, which this route never sees whole) are passed
through like any other ``/v1/*`` request: a batch file uploaded in parts is not compressed.

Decisions worth knowing:

* **Read before any work.** A batch file that is not UTF-8 JSONL, a line that is not an object, or a compressed
  route's line whose ``body`` is not an object or is refused by its dialect is a 400 in OpenAI's style naming the
  line (``line 4 (custom_id 'q-3'): ...``), before anything is compressed. Another ``purpose`` (``assistants``,
  ``fine-tune``, ...), a body that is not ``multipart/form-data``, ``x-promptzip-disable`` and an encoded body are
  forwarded as they came; so is a form this strict reader cannot frame, or one with two ``purpose`` or ``file``
  fields (``x-promptzip-reason: unreadable-form``): every upload went through unread before batch files were
  compressed, and one the upstream takes must not start failing here.
* **Too large to read, forwarded unread.** An upload whose declared length is over ``max_body_bytes``, or that
  passes it while it is read, is sent upstream as it arrives, the part read first (:mod:`._bodies`, bounded by
  ``max_forward_bytes``), with ``x-promptzip-reason: body-too-large``: OpenAI takes files far larger than the proxy
  may hold in memory, so such a batch file reaches the upstream uncompressed rather than refused.
* **As the Message Batches route** (:mod:`._batches`): lines are compressed one at a time through the same
  ``Compressions.outcome`` (at most one compression slot, the event loop yielded between lines, a client that hangs
  up stops the work, the whole bounded by ``max_body_bytes``), each with its route's ``compression_deadline`` and
  ``fail_mode``: open sends a failed line as it came, closed fails the upload, naming the line in
  ``x-promptzip-batch-line``; with every compression slot taken the upload is answered 503 + ``retry-after``.
* **Headers** are the batch route's (:func:`~._batches.batch_headers`), summed over the file's requests:
  ``x-promptzip-batch-requests`` counts its non-blank lines and ``-batch-requests-compressed`` those compressed; a
  line of another ``url`` counts with the reason ``no-compressed-route``. Metrics count each compressed route's
  line as its route counts a request. With ``report_dropped``, ``x-promptzip-dropped`` names one report for the
  file as for a batch (:meth:`~._batches.Batches.dropped`), its entries naming ``custom_id`` and ``line`` (the
  line's number in the file) instead of ``index``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from promptzip.integrations._openai_batches import BATCH_PURPOSE, Line, named, read_batch_file, rewritten
from promptzip.integrations.proxy._batches import Batches, Done, batch_headers
from promptzip.integrations.proxy._bodies import Streamed, read_or_stream
from promptzip.integrations.proxy._budget import Reservation
from promptzip.integrations.proxy._compression import Compressions
from promptzip.integrations.proxy._dialects import DIALECTS, Chat, Dialect
from promptzip.integrations.proxy._errors import RequestError
from promptzip.integrations.proxy._metrics import Metrics
from promptzip.integrations.proxy._multipart import parse_form
from promptzip.integrations.proxy._options import parse_options
from promptzip.integrations.proxy._requests import Options, skip_reason, status_headers

__all__ = ["BatchFiles"]

logger = logging.getLogger("promptzip.proxy")
_NONE_COMPRESSED = {"x-promptzip-batch-requests-compressed": "0"}
_OTHER_URL = "no-compressed-route"  # a line whose url is not a compressed route


class Forward(Protocol):
    """Sends a body upstream as the request's own (``content_type``: the body's, when it is not the request's)."""

    def __call__(
        self,
        request: Request,
        body: bytes | Streamed,
        extra: Mapping[str, str],
        /,
        *,
        content_type: str | None = None,
    ) -> Awaitable[Response]: ...


@dataclass(frozen=True, slots=True)
class _Job:
    """A compressed route's line, read: its body, the options and dialect of its route, and its chat (or why it is
    forwarded as it came)."""

    body: Mapping[str, Any]
    options: Options
    dialect: Dialect
    chat: Chat | str


class BatchFiles:
    """The upload route: reads a ``batch`` file, compresses its lines one by one through ``batches``, forwards the
    form (module docstring)."""

    def __init__(self, batches: Batches, compressions: Compressions, metrics: Metrics, *, forward: Forward) -> None:
        self._batches = batches
        self._compressions = compressions
        self._metrics = metrics
        self._forward = forward

    async def create(self, request: Request, held: Reservation) -> Response:
        """Answer ``POST /v1/files``: 4xx for a bad form or batch file, else what the upstream answers to it.
        ``held`` covers what is read of the upload (:mod:`._budget`)."""
        settings = self._compressions.settings
        body = await read_or_stream(request, settings.max_body_bytes, settings, held)
        skipped = skip_reason(request.headers)
        if skipped is not None:  # unread: whether it is a batch file is not known
            return await self._forward(request, body, status_headers("passthrough", skipped))
        if isinstance(body, Streamed):  # more than the proxy may hold: the upstream takes larger files
            return await self._forward(request, body, status_headers("passthrough", "body-too-large"))
        try:
            form = parse_form(request.headers.get("content-type", ""), body)
            purpose, file = (None, None) if form is None else (form.field("purpose"), form.field("file"))
        except RequestError as exc:
            # A form this reader cannot frame (or with two purposes or files) may still be one the upstream takes:
            # it went through unread before batch files were compressed, so it still does, and the upstream decides.
            logger.debug("proxy: an upload forwarded unread: %s", exc)
            return await self._forward(request, body, status_headers("passthrough", "unreadable-form"))
        if form is None:  # not an upload the upstream takes: it says so
            return await self._forward(request, body, status_headers("passthrough", "not-multipart"))
        if purpose is None or form.parts[purpose].content != BATCH_PURPOSE.encode() or file is None:
            return await self._forward(request, body, status_headers("passthrough", "not-a-batch-file"))
        data = form.parts[file].content
        off_loop = partial(self._compressions.off_loop, len(data))  # a large file is read and written on a thread
        lines = await off_loop(read_batch_file, data)
        requests = [line for line in lines if line.request is not None]
        jobs = await off_loop(self._jobs, request, requests)  # every line checked before any work
        if not jobs:
            headers = {**status_headers("passthrough", _OTHER_URL if requests else "no-requests"), **_NONE_COMPRESSED}
            return await self._forward(request, body, {**headers, "x-promptzip-batch-requests": str(len(requests))})
        done: list[Done] = []
        bodies: dict[int, dict[str, Any]] = {}
        for line in requests:
            job = jobs.get(line.number)
            if job is None or isinstance(job.chat, str):  # another url, or a body the dialect leaves as it came
                if job is not None:
                    self._metrics.compressions.inc("passthrough")
                done.append(Done(reason=_OTHER_URL if job is None else str(job.chat)))
                continue
            if await request.is_disconnected():  # nobody waits for the rest
                raise RequestError("the client disconnected", code="client_disconnected")
            at = {"x-promptzip-batch-line": str(line.number)}
            one = await self._batches.one(job.body, job.chat, job.options, job.dialect, at)
            if isinstance(one, Response):  # overloaded, or failed closed: the whole upload's answer
                return one
            done.append(one)
            if one.outcome is not None and one.outcome.messages is not None:
                bodies[line.number] = job.dialect.write(dict(job.body), job.chat, one.outcome.messages)
            await asyncio.sleep(0)  # other requests' work runs between two of this file's lines
        options = next(iter(jobs.values())).options  # the partition (credential, tenant) is every route's
        where = [{"custom_id": line.custom_id, "line": line.number} for line in requests]
        headers = {**batch_headers(done, options), **await self._batches.dropped(done, where, options)}
        content = await off_loop(rewritten, data, lines, bodies)
        if content is data:
            return await self._forward(request, body, headers)
        content_type, new_body = await off_loop(form.encoded, {file: content})
        return await self._forward(request, new_body, headers, content_type=content_type)

    def _jobs(self, request: Request, requests: list[Line]) -> dict[int, _Job]:
        """The compressed routes' lines by number, each read as its route reads a body; errors name the line."""
        settings = self._compressions.settings
        options: dict[str, Options] = {}  # per url: the upload's headers under that route's defaults
        jobs: dict[int, _Job] = {}
        for line in requests:
            url = line.url
            found = settings.batch_line_route(url) if url is not None else None
            if url is None or found is None:
                continue
            route, dialect_name = found
            body = line.body()
            if url not in options:
                options[url] = parse_options(request.headers, route, settings, self._compressions.secret)
            dialect = DIALECTS[dialect_name]
            try:
                chat = dialect.read(body, history=options[url].history)
            except RequestError as exc:
                raise named(exc, line) from None
            jobs[line.number] = _Job(body, options[url], dialect, chat)
        return jobs
