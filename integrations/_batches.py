"""Anthropic Message Batches: a batch is a list of Messages requests, ``{"custom_id": str, "params": {<a Messages
create body>}}``, and each one's ``params`` is compressed exactly as the same body sent alone to ``messages.create``
(or ``POST /v1/messages``) would be. Everything else about a batch (``custom_id``, other keys, the order) is left as
it came. The proxy's batch route (:mod:`promptzip.integrations.proxy._batches`) and the wrapped clients'
``messages.batches.create`` (:mod:`promptzip.integrations._clients`) read batches here, so both refuse the same
batches with the same messages."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from promptzip._errors import PromptZipError
from promptzip.integrations._bodies import RequestError, type_name
from promptzip.integrations._calls import Compression, call_context

__all__ = ["Entry", "batch_entries", "each_request", "named"]

_SHOWN_ID = 64  # Anthropic's longest custom_id: a longer one is not echoed in an error


@dataclass(frozen=True, slots=True)
class Entry:
    """One request of a batch: where it is, the request as given, and its ``params``."""

    index: int
    request: Mapping[str, Any]
    params: Mapping[str, Any]

    @property
    def where(self) -> str:
        return _where(self.index, self.request)

    @property
    def custom_id(self) -> Any:
        """The request's ``custom_id`` as given (any JSON value: the upstream decides), ``None`` without one."""
        return self.request.get("custom_id")


def _where(index: int, request: Mapping[str, Any]) -> str:
    """How an error names a request: its index, and its ``custom_id`` when that is a short string."""
    custom_id = request.get("custom_id")
    shown = isinstance(custom_id, str) and 0 < len(custom_id) <= _SHOWN_ID and custom_id.isprintable()
    return f"requests[{index}]" + (f" (custom_id {custom_id!r})" if shown else "")


def batch_entries(requests: object) -> list[Entry]:
    """A batch's ``requests``: each an object whose ``params`` is an object. A :class:`RequestError` (400) names the
    first request that is not. An empty list is a batch like any other (the upstream decides)."""
    if not isinstance(requests, list):
        raise RequestError(
            f"requests must be an array of {{custom_id, params}} objects, not {type_name(requests)}",
            param="requests",
            code="invalid_type",
        )
    entries: list[Entry] = []
    for i, request in enumerate(requests):
        if not isinstance(request, Mapping):
            raise RequestError(
                f"requests[{i}] must be an object, not {type_name(request)}",
                param=f"requests[{i}]",
                code="invalid_type",
            )
        params = request.get("params")
        if not isinstance(params, Mapping):
            raise RequestError(
                f"{_where(i, request)}: params must be an object (a Messages request), not {type_name(params)}",
                param=f"requests[{i}].params",
                code="invalid_type",
            )
        entries.append(Entry(i, request, params))
    return entries


def named(exc: RequestError, entry: Entry) -> RequestError:
    """``exc``, raised for one request's ``params``, as the batch's error: the same status and code, with the request
    named in its message and its parameter."""
    param = f"requests[{entry.index}].params" + (f".{exc.param}" if exc.param else "")
    return RequestError(f"{entry.where}: {exc}", status=exc.status, param=param, code=exc.code)


def each_request(create: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """A wrapped client's ``batches.create``: ``create`` (how ``messages.create``'s keyword arguments are compressed)
    applied to each request's ``params``, one after the other, each with the conversation and prices its own
    ``model`` and ``prompt_cache_key`` name. A request whose prompt did not change keeps the caller's own object.
    An error names the request: a refused body's :class:`RequestError` in its message, any other promptzip error (a
    budget the request cannot meet, say) in a note, its type unchanged."""

    def rewrite(compression: Compression, kwargs: Mapping[str, Any], /, **options: Any) -> dict[str, Any]:
        given = kwargs["requests"]
        # An iterator of requests can be read once: it becomes the list that is then sent.
        if isinstance(given, Iterable) and not isinstance(given, str | bytes | bytearray | Mapping | list):
            given = list(given)
        out: list[Any] = []
        for entry in batch_entries(given):
            own = {**options, **call_context(entry.params)}  # the batch call has no model: each request's own
            try:
                params = create(compression, entry.params, **own)
            except RequestError as exc:
                raise named(exc, entry) from exc
            except PromptZipError as exc:
                exc.add_note(f"in {entry.where} of the batch")
                raise
            changed = {k: v for k, v in params.items() if entry.params.get(k) is not v}
            out.append(entry.request if not changed else {**entry.request, "params": {**entry.params, **changed}})
        return {**kwargs, "requests": out}

    return rewrite
