"""Anthropic Message Batches through the proxy: ``POST /v1/messages/batches`` (a compressed Anthropic Messages route
and ``/batches``; :meth:`~promptzip.integrations.proxy._settings.ProxySettings.batch_route`).

A batch is ``{"requests": [{"custom_id": ..., "params": {<a Messages body>}}, ...]}``. Each request's ``params`` is
compressed exactly as a ``POST /v1/messages`` with the same body and the batch's headers would be: the same
dialect, options (budget, preset, scope, history, tenant, the credential's cache scope), pricing by the params'
``model``, ``cache_control`` handling, ``min_tokens`` threshold and whole-request cache. The batch is then
forwarded with the rewritten ``params``; every other value (``custom_id``, other keys, the order) is sent as it
came, and a batch with nothing compressed is forwarded byte for byte. Retrieving, listing, cancelling and the
results (``GET``/``DELETE`` under ``/batches``) are passed through like any other ``/v1/*`` request.

Decisions worth knowing:

* **Refused before any work.** The whole batch is read first: a body that is not JSON, ``requests`` that is not an
  array, a request without an object ``params``, or ``params`` the Messages dialect refuses is a 4xx in Anthropic's
  style naming the request (``requests[3] (custom_id 'q-3'): ...``), before anything is compressed. An empty
  ``requests`` is forwarded as it came (the upstream decides). ``x-promptzip-disable`` and an encoded body pass the
  batch through unread, as on the Messages route.
* **One request at a time.** The requests are compressed one after the other through the same
  ``Compressions.outcome`` as single requests, so a batch holds at most one compression slot and one thread at any
  moment: other clients' chats keep their place in the queue beside it, and a batch of 10,000 requests takes longer
  rather than taking the proxy. The event loop is yielded between requests (small ones are counted right there, as
  on the Messages route), and a client that hangs up stops the work. What one batch can cost in all is bounded by
  ``max_body_bytes``, like any request; a proxy that takes big batches wants a client timeout to match.
* **Deadlines and overload, per request.** Each request's compression has the route's ``compression_deadline``,
  counted from when its turn comes (a batch is not waited on by a person). A request that fails is forwarded as it
  came with ``fail_mode = "open"`` (the batch then says ``fail-open``), and fails the whole batch with
  ``"closed"`` (the request named in ``x-promptzip-batch-index``). When every compression slot is taken the batch
  is answered 503 + ``retry-after``, like a chat: what it compressed so far is in the result cache, so the retry
  finds it there.
* **Headers.** ``x-promptzip-status`` is ``fail-open`` when a request failed open, else ``compressed`` when one was
  compressed, else ``passthrough`` with the requests' ``x-promptzip-reason`` (``mixed`` when they differ);
  ``x-promptzip-tokens-in``/``-out``, ``-regions``, ``-regions-compressed`` and ``-reused-messages`` are summed
  over the requests, and ``x-promptzip-batch-requests``/``-batch-requests-compressed`` count them. Metrics count
  each request as the Messages route counts one.
* **What was dropped, one report a batch.** With ``report_dropped``, a batch in which some request's compression
  dropped something answers ``x-promptzip-dropped``: an expand id (``GET /v1/promptzip/expand/{id}``, the batch's
  credential only, like a single request's) whose text is ``{"requests": [{"custom_id", "index", "id", "report"},
  ...]}``, one entry per such request in batch order, ``report`` being exactly the report the same request sent
  alone names (budget, tokens, decision, dropped spans) and ``id`` its own expand id (``report`` is ``null`` when
  the cache no longer holds it). Requests that dropped nothing are not listed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from promptzip._errors import DeadlineExceeded
from promptzip.integrations._batches import Entry, batch_entries, named
from promptzip.integrations.proxy._bodies import read_body
from promptzip.integrations.proxy._budget import Reservation
from promptzip.integrations.proxy._compression import Compressions, Overloaded, batch_dropped_report
from promptzip.integrations.proxy._dialects import Chat, Dialect
from promptzip.integrations.proxy._errors import RequestError, error_headers, status_of
from promptzip.integrations.proxy._logs import describe
from promptzip.integrations.proxy._metrics import Metrics
from promptzip.integrations.proxy._options import parse_options, with_cache_key, with_model_pricing
from promptzip.integrations.proxy._requests import (
    Options,
    Outcome,
    check_body,
    encode,
    parse_json,
    skip_reason,
    status_headers,
)
from promptzip.integrations.proxy._settings import RouteSettings

__all__ = ["Batches", "Done", "batch_headers"]

logger = logging.getLogger("promptzip.proxy")

_NONE_COMPRESSED = {"x-promptzip-batch-requests-compressed": "0"}
Forward = Callable[[Request, bytes, Mapping[str, str]], Awaitable[Response]]
CountSmall = Callable[[list[dict[str, Any]], Options], Outcome | None]


@dataclass(frozen=True, slots=True)
class Done:
    """One request of a batch, handled: its outcome, or the reason it was not compressed, or the error it failed
    open with."""

    outcome: Outcome | None = None
    reason: str = ""
    error: Exception | None = None


def batch_headers(done: list[Done], options: Options) -> dict[str, str]:
    """The batch's answer headers, summed over its requests (module docstring); the OpenAI batch file route's too."""
    outcomes = [d.outcome for d in done if d.outcome is not None]
    errors = [d.error for d in done if d.error is not None]
    compressed = sum(o.messages is not None for o in outcomes)
    if errors:
        status = {"x-promptzip-status": "fail-open", "x-promptzip-error": status_of(errors[0])[2]}
    elif compressed:
        status = status_headers("compressed")
    else:
        reasons = {d.outcome.reason if d.outcome is not None else d.reason for d in done}
        status = status_headers("passthrough", reasons.pop() if len(reasons) == 1 else "mixed")
    deadline = any(isinstance(e, DeadlineExceeded) for e in errors)
    return {
        **status,
        "x-promptzip-tokens-in": str(sum(o.tokens_in for o in outcomes)),
        "x-promptzip-tokens-out": str(sum(o.tokens_out for o in outcomes)),
        "x-promptzip-preset": options.preset,
        "x-promptzip-scope": options.scope,
        "x-promptzip-history": options.history,
        **({"x-promptzip-method": outcomes[0].method} if outcomes else {}),
        "x-promptzip-regions": str(sum(o.regions for o in outcomes)),
        "x-promptzip-regions-compressed": str(sum(o.regions_compressed for o in outcomes)),
        "x-promptzip-reused-messages": str(sum(o.reused_messages for o in outcomes)),
        "x-promptzip-batch-requests": str(len(done)),
        "x-promptzip-batch-requests-compressed": str(compressed),
        **({"x-promptzip-deadline": f"{options.deadline:g}"} if deadline else {}),
    }


class Batches:
    """The batch route: reads a batch, compresses its requests one by one, forwards it (module docstring).
    ``forward`` sends a body upstream as the request's own; ``count_small`` is the Messages route's count of a
    small chat on the event loop."""

    def __init__(
        self, compressions: Compressions, metrics: Metrics, *, forward: Forward, count_small: CountSmall
    ) -> None:
        self._compressions = compressions
        self._metrics = metrics
        self._forward = forward
        self._count_small = count_small

    async def create(self, request: Request, route: RouteSettings, dialect: Dialect, held: Reservation) -> Response:
        """Answer ``POST .../batches``: 4xx for a bad batch, else what the upstream answers to the batch sent.
        ``held`` covers the batch's body while it is read (:mod:`._budget`)."""
        settings = self._compressions.settings
        body = await read_body(request, settings.max_body_bytes, settings, held)
        skipped = skip_reason(request.headers)
        if skipped is not None:  # unread: how many requests it holds is not known
            self._metrics.compressions.inc("passthrough")
            return await self._forward(request, body, {**status_headers("passthrough", skipped), **_NONE_COMPRESSED})
        off_loop = partial(self._compressions.off_loop, len(body))  # a large body is read and written on a thread
        payload = await off_loop(lambda: check_body(parse_json(body)))
        entries = batch_entries(payload.get("requests"))
        options = parse_options(request.headers, route, settings, self._compressions.secret)
        # Every request checked before any work.
        chats = await off_loop(lambda: [_read(dialect, entry, options) for entry in entries])
        if not entries:
            headers = {**status_headers("passthrough", "no-requests"), **_NONE_COMPRESSED}
            return await self._forward(request, body, {**headers, "x-promptzip-batch-requests": "0"})
        done: list[Done] = []
        sent: list[Any] = []
        for entry, chat in zip(entries, chats, strict=True):
            if isinstance(chat, str):  # a valid body with nothing the dialect may change, as on the route
                self._metrics.compressions.inc("passthrough")
                done.append(Done(reason=chat))
                sent.append(entry.request)
                continue
            if await request.is_disconnected():  # nobody waits for the rest
                raise RequestError("the client disconnected", code="client_disconnected")
            at = {"x-promptzip-batch-index": str(entry.index)}
            one = await self.one(entry.params, chat, options, dialect, at)
            if isinstance(one, Response):  # overloaded, or failed closed: the whole batch's answer
                return one
            done.append(one)
            messages = one.outcome.messages if one.outcome is not None else None
            if messages is None:
                sent.append(entry.request)
            else:
                sent.append({**entry.request, "params": dialect.write(dict(entry.params), chat, messages)})
            await asyncio.sleep(0)  # other requests' work runs between two of this batch's
        changed = any(out is not entry.request for entry, out in zip(entries, sent, strict=True))
        new_body = await off_loop(encode, {**payload, "requests": sent}) if changed else body
        where = [{"custom_id": entry.custom_id, "index": entry.index} for entry in entries]
        headers = {**batch_headers(done, options), **await self.dropped(done, where, options)}
        return await self._forward(request, new_body, headers)

    async def one(
        self, params: Mapping[str, Any], chat: Chat, options: Options, dialect: Dialect, at: Mapping[str, str]
    ) -> Done | Response:
        """One request's compression, as its route runs it; a Response when it ends the batch (``at``: the header
        that names the request in that Response). The OpenAI batch file route compresses its lines here too."""
        own = with_model_pricing(with_cache_key(options, params), params)
        size = len(json.dumps(params, ensure_ascii=False))  # to tell small from large: characters, not bytes
        started = time.perf_counter()
        try:
            outcome = await self._outcome(chat, own, size)
        except Overloaded as exc:
            self._metrics.compressions.inc("overloaded")
            return dialect.error(exc, headers={**error_headers(exc), "x-promptzip-status": "error", **at})
        except Exception as exc:
            if options.fail_mode == "closed":
                return self._closed(exc, at, dialect)
            self._failed_open(exc, time.perf_counter() - started)
            return Done(error=exc)
        self._count(outcome)
        return Done(outcome)

    async def dropped(
        self, done: Sequence[Done], where: Sequence[Mapping[str, Any]], options: Options
    ) -> dict[str, str]:
        """``x-promptzip-dropped`` for a batch with ``report_dropped``: the expand id of one report that lists, for
        each request (``where``: its ``custom_id`` and position, beside its ``done``) whose compression dropped
        something, that request's own report (:func:`~._compression.batch_dropped_report`), stored for the batch's
        credential; no header when the setting is off or no request dropped anything. The OpenAI batch file route
        reports its lines here too."""
        if not self._compressions.settings.report_dropped:
            return {}
        reports = [
            (at, d.outcome.dropped)
            for d, at in zip(done, where, strict=True)
            if d.outcome is not None and d.outcome.dropped
        ]
        if not reports:
            return {}
        cache = self._compressions.cache
        id = await self._compressions.io(batch_dropped_report, reports, cache, options.partition)  # may block
        return {"x-promptzip-dropped": id}

    async def _outcome(self, chat: Chat, options: Options, size: int) -> Outcome:
        # As on the Messages route: a body shorter than min_tokens is counted here, without a thread hop.
        small = self._count_small(chat.messages, options) if size < options.min_tokens else None
        return small or await self._compressions.outcome(chat.messages, options, time.monotonic())

    def _count(self, outcome: Outcome) -> None:
        self._metrics.compression_seconds.observe(outcome.seconds)
        self._metrics.tokens_in.inc(amount=outcome.tokens_in)
        self._metrics.tokens_out.inc(amount=outcome.tokens_out)
        self._metrics.tokens_saved.inc(amount=max(0, outcome.tokens_in - outcome.tokens_out))
        self._metrics.compressions.inc("passthrough" if outcome.messages is None else "compressed")

    def _closed(self, exc: Exception, at: Mapping[str, str], dialect: Dialect) -> Response:
        _, _, code = status_of(exc)
        self._metrics.compressions.inc("error")
        where = ", ".join(f"{k.removeprefix('x-promptzip-')} {v}" for k, v in at.items())
        logger.warning("proxy: a batch request (%s) failed to compress (fail-closed): %s", where, describe(exc, code))
        headers = {"x-promptzip-status": "error", "x-promptzip-error": code, **at}
        return dialect.error(exc, headers=headers)

    def _failed_open(self, exc: Exception, seconds: float) -> None:
        _, _, code = status_of(exc)
        self._metrics.compressions.inc("fail-open")
        self._metrics.fail_open.inc()
        self._metrics.compression_seconds.observe(seconds)
        logger.warning("proxy: a batch request failed to compress, sending it as it came: %s", describe(exc, code))


def _read(dialect: Dialect, entry: Entry, options: Options) -> Chat | str:
    """One request's ``params`` read as the Messages route reads a body; its errors name the request."""
    try:
        return dialect.read(entry.params, history=options.history)
    except RequestError as exc:
        raise named(exc, entry) from None
