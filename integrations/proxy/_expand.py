"""``GET /v1/promptzip/expand/{id}``: the original of what a compression cut, for the credential that sent it.

Originals live in an :class:`~promptzip._expand.ExpandStore` over the proxy's cache, the one every Zipper of the
app is built over (``Compressions.cache``: SQLite, Redis, memory), so a replica that shares the cache answers for
the others. A request's *expand scope* is its credential's result-cache scope (:func:`expand_scope`: a keyed hash of
its API key, ``anonymous`` without one, or ``shared`` when ``result_cache_scope = "shared"``), inside its tenant's
when it has one. An id stored under one scope is not found under another: the answer is the same 404 as for an id
never stored, so nothing about another credential's requests leaks.

The whole ``/v1/promptzip/`` path is the proxy's own and never reaches the upstream:

* ``GET /v1/promptzip/expand/pz-<16 hex>`` → ``200 {"id", "text"}`` (``cache-control: no-store``), or a 404
  ``expand_not_found`` JSON error in the OpenAI style;
* a malformed id → 400 ``invalid_expand_id``; another method → 405; any other path under it → 404.

The compression side stores an original with ``Expansions.put(text, expand_scope(options))`` (or passes
``expand_scope(options)`` to whatever stores it in the Zipper's cache), in a worker thread: a cache write may block.
The reports of what was dropped (``report_dropped``: :func:`~._compression.dropped_report` for a request,
:func:`~._compression.batch_dropped_report` for a batch or a batch file) are stored the same way, under the
request's partition, and read here like any other text.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from promptzip._errors import ExpandNotFound, InputError
from promptzip._expand import ExpandStore, check_id
from promptzip.integrations.proxy._compression import Compressions
from promptzip.integrations.proxy._errors import RequestError, error_response
from promptzip.integrations.proxy._options import partition_for
from promptzip.integrations.proxy._requests import Options
from promptzip.integrations.proxy._settings import ProxySettings

__all__ = ["OWN_PREFIX", "OWN_ROUTE", "Expansions", "expand_scope"]

OWN_PREFIX = "/v1/promptzip/"  # the proxy's own paths: never forwarded
OWN_ROUTE = OWN_PREFIX + "{rest:path}"
_EXPAND = "expand/"


def expand_scope(options: Options) -> str:
    """The expand scope of a request: its partition (:attr:`Options.partition`), its credential's cache scope
    inside its tenant's."""
    return options.partition


class Expansions:
    """The proxy's expand store and endpoint. The cache is the compressions' (set when the app starts), read at each
    use, so this is built with the app and works from its lifespan on."""

    def __init__(self, settings: ProxySettings, compressions: Compressions) -> None:
        self.settings = settings
        self.compressions = compressions

    @property
    def store(self) -> ExpandStore:
        """An ExpandStore over the proxy's cache (cheap: build one per use)."""
        return ExpandStore(self.compressions.cache)

    def scope_of(self, headers: Mapping[str, str]) -> str:
        """The expand scope of a request with these headers, computed as for a compression (same credential, same
        tenant, same secret); an unknown tenant named by ``tenant_header`` is a 400, as there."""
        return partition_for(headers, self.settings, self.compressions.secret)

    def put(self, text: str, scope: str) -> str:
        """Store ``text`` for requests of ``scope`` (:func:`expand_scope`) and return its expand id. Blocks on the
        cache: call it from a worker thread. Never fails on the cache (see :mod:`promptzip._expand`)."""
        return self.store.put(text, scope=scope)

    def get(self, id: str, scope: str) -> str:
        """The text stored under ``id`` for ``scope``; :class:`~promptzip.ExpandNotFound` when there is none."""
        return self.store.get(id, scope=scope)

    async def endpoint(self, request: Request) -> Response:
        """Everything under ``/v1/promptzip/``; only ``GET expand/{id}`` finds something."""
        rest: str = request.path_params.get("rest", "")
        try:
            if not rest.startswith(_EXPAND):
                raise RequestError(
                    f"no such promptzip endpoint; the proxy serves GET {OWN_PREFIX}expand/{{id}}",
                    status=404,
                    code="not_found",
                )
            if request.method != "GET":
                raise RequestError(f"{OWN_PREFIX}expand/{{id}} answers GET only", status=405, code="method_not_allowed")
            try:
                id = check_id(rest[len(_EXPAND) :])
            except InputError as exc:
                raise RequestError(str(exc), param="id", code="invalid_expand_id") from None
            scope = self.scope_of(request.headers)
            try:
                text = await self.compressions.io(self.get, id, scope)  # a cache read may block: not on the loop
            except ExpandNotFound as exc:
                raise RequestError(str(exc), status=404, param="id", code="expand_not_found") from None
        except RequestError as exc:
            headers = {"allow": "GET"} if exc.status == 405 else None
            return error_response(exc, headers=headers)
        return JSONResponse({"id": id, "text": text}, headers={"cache-control": "private, no-store"})
