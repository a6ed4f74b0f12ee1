"""Per-request options of a compressed route: the control headers read against the route's and server's settings.

Who a request is for is decided here, from configuration only:

* **Presets.** A request may name a preset (``x-promptzip-preset``) only among those the operator allows:
  ``allowed_presets`` when set, else the server's and the routes' own presets. A client cannot pick a slower
  stack than the operator chose (``max`` can take minutes per chat on a CPU).
* **Tenants.** A tenant exists only in ``tenants`` (name → SHA-256 digests of its API keys). A request belongs to
  the tenant whose key digest matches its credential; ``tenant_header``, when the operator turns it on (for a
  gateway in front that sets it and strips the clients' own), may name a configured tenant. An unknown name is a
  400, so clients cannot invent namespaces (each would cost memory) or read one they were not given.
* **Result-cache scope.** The whole-request cache is scoped per credential: the key holds a keyed hash
  (HMAC-SHA-256 with ``cache_key_secret``) of the request's API key, never the key itself, so one client never
  gets a hit (or its timing) for another client's conversation. ``result_cache_scope = "shared"`` shares entries
  across credentials of the same tenant: more hits, but any client can learn whether a chat was sent before.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Final

from promptzip._pricing import CachePricing, listed_pricing
from promptzip._types import Budget
from promptzip.integrations.proxy._errors import RequestError
from promptzip.integrations.proxy._requests import (
    Options,
    conversation_header,
    history_header,
    int_header,
    partition_of,
    rate_header,
    scope_header,
)
from promptzip.integrations.proxy._settings import ProxySettings, RouteSettings

__all__ = [
    "CREDENTIAL_HEADERS",
    "allowed_presets",
    "client_of",
    "credential_of",
    "end_user_of_body",
    "key_digest",
    "parse_options",
    "partition_for",
    "with_cache_key",
    "with_end_user",
    "with_model_pricing",
]

_OBJECT = re.compile(rb"[ \t\r\n]*\{")  # a JSON object's start
_PRESET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
# Where OpenAI, Anthropic and Azure clients put their API key, in that order.
CREDENTIAL_HEADERS: Final = ("authorization", "x-api-key", "api-key")
_BEARER = re.compile(r"^\s*bearer\s+", re.IGNORECASE)


def allowed_presets(settings: ProxySettings) -> frozenset[str]:
    """The presets a request may name: ``allowed_presets`` when configured, else the server's and routes' own."""
    if settings.allowed_presets is not None:
        return frozenset(settings.allowed_presets)
    return frozenset({settings.preset, *(r.preset for r in settings.routes.values() if r.preset)})


def credential_of(headers: Mapping[str, str]) -> str | None:
    """The request's API key (``Bearer`` stripped), or ``None`` when it carries none."""
    for name in CREDENTIAL_HEADERS:
        value = headers.get(name)
        # A header with no key in it (an empty "Bearer ", which arrives as "Bearer") names no one: the next header is
        # read, else every client that sends one would share a partition, expand ids and cached prefixes included.
        key = _BEARER.sub("", value).strip() if value else ""
        if key and key.lower() != "bearer":
            return key
    return None


def key_digest(key: str) -> str:
    """How an API key is written in ``tenants``: ``sha256:`` and the hex digest of its UTF-8 bytes."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_options(headers: Mapping[str, str], route: RouteSettings, settings: ProxySettings, secret: bytes) -> Options:
    """The options of one request; a bad control header is a :class:`RequestError` (400) naming it."""
    s = settings
    budget_h, rate_h = headers.get("x-promptzip-budget"), headers.get("x-promptzip-rate")
    if budget_h is not None and rate_h is not None:
        raise RequestError("give x-promptzip-budget or x-promptzip-rate, not both", param="x-promptzip-budget")
    if budget_h is not None:
        budget = Budget(tokens=int_header(budget_h, "x-promptzip-budget"))
    elif rate_h is not None:
        budget = Budget(rate=rate_header(rate_h, "x-promptzip-rate"))
    else:
        budget = s.default_budget(route)
    preset = headers.get("x-promptzip-preset")
    if preset is None:
        preset = route.preset or s.preset
    else:
        preset = preset.strip()
        if not _PRESET.match(preset) or preset not in allowed_presets(s):
            raise RequestError(
                "x-promptzip-preset names no preset this proxy offers",
                param="x-promptzip-preset",
                code="unknown_preset",
            )
    scope_h = headers.get("x-promptzip-scope")
    scope = scope_header(scope_h, "x-promptzip-scope") if scope_h is not None else route.scope or s.scope
    credential = credential_of(headers)
    history_h = headers.get("x-promptzip-history")
    conversation_h = headers.get("x-promptzip-conversation")
    tenant = _tenant(headers, settings, credential)
    keyed = _keyed(credential, secret)
    return Options(
        budget=budget,
        preset=preset,
        target=route.target or s.target,
        tenant=tenant,
        min_tokens=route.min_tokens if route.min_tokens is not None else s.min_tokens,
        fail_mode=route.fail_mode or s.fail_mode,
        scope=scope,
        cache_scope=_cache_scope(settings, keyed),
        deadline=route.compression_deadline or s.compression_deadline,
        history=history_header(history_h, "x-promptzip-history") if history_h is not None else "stable",
        conversation=conversation_header(conversation_h, "x-promptzip-conversation") if conversation_h else "",
        pricing=_pricing(route, settings),
        client=_client(tenant, keyed),
    )


def client_of(headers: Mapping[str, str], settings: ProxySettings, secret: bytes) -> str:
    """Whose turn a request takes (``Options.client``: its tenant, else a keyed hash of its credential, else ``""``),
    for a request on any route; a ``tenant_header`` naming no tenant counts as the credential alone (a compressed
    route answers it 400 when it reads the options)."""
    credential = credential_of(headers)
    try:
        tenant = _tenant(headers, settings, credential)
    except RequestError:
        tenant = None
    return _client(tenant, _keyed(credential, secret))


def _client(tenant: str | None, keyed: str | None) -> str:
    return f"tenant:{tenant}" if tenant is not None else f"key:{keyed}" if keyed is not None else ""


def partition_for(headers: Mapping[str, str], settings: ProxySettings, secret: bytes) -> str:
    """Where a request with these headers keeps its conversation state and cut originals (``Options.partition``),
    computed as :func:`parse_options` computes it: same credential, same tenant, same secret; an unknown tenant
    named by ``tenant_header`` is a 400, as there."""
    credential = credential_of(headers)
    tenant = _tenant(headers, settings, credential)
    return partition_of(tenant, _cache_scope(settings, _keyed(credential, secret)))


def with_cache_key(options: Options, payload: object) -> Options:
    """``options`` with the body's ``prompt_cache_key`` (OpenAI's name for the cache a conversation shares) as the
    conversation id, when no ``x-promptzip-conversation`` header named one; a key that is not a short printable
    string is the upstream's business, not a conversation id."""
    key = payload.get("prompt_cache_key") if isinstance(payload, Mapping) else None
    if options.conversation or not isinstance(key, str) or not key:
        return options
    try:
        return replace(options, conversation=conversation_header(key, "prompt_cache_key"))
    except RequestError:
        return options


def with_end_user(options: Options, payload: object, secret: bytes) -> Options:
    """``options`` with the end user the body names (OpenAI's ``safety_identifier``, else its older ``user``, else
    Anthropic's ``metadata.user_id``), as a keyed hash: an app that serves many people with one key names them so,
    and they take turns inside the key's turns (._fair), which naming many users never makes more than the key's own.
    A body that names none, or a name that is not a string, leaves ``options`` as they are."""
    user = end_user(payload, secret)
    return options if user is None else replace(options, user=user)


def end_user(payload: object, secret: bytes) -> str | None:
    """The keyed hash of the end user the parsed body ``payload`` names (:func:`with_end_user`), or ``None``."""
    if not isinstance(payload, Mapping):
        return None
    metadata = payload.get("metadata")
    named = (
        payload.get("safety_identifier"),
        payload.get("user"),
        metadata.get("user_id") if isinstance(metadata, Mapping) else None,
    )
    user = next((n for n in named if isinstance(n, str) and n), None)
    return None if user is None else _keyed(user, secret) or ""


def end_user_of_body(body: bytes, secret: bytes) -> str:
    """:func:`end_user` of a body sent as given (``x-promptzip-disable``), which is not otherwise parsed: ``""`` when
    it is not JSON, so its upstream connection goes by its key alone, as before, and the upstream answers it."""
    if _OBJECT.match(body) is None:  # not the copy lstrip() would make of a large body
        return ""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return ""
    return end_user(payload, secret) or ""


def with_model_pricing(options: Options, payload: object) -> Options:
    """``options`` priced by the body's ``model`` (``claude-sonnet-4-5``: Anthropic's cache prices, read at
    breakpoints) where no ``pricing`` is configured for the route and the model has published prices
    (:func:`~promptzip._pricing.listed_pricing`); else as they are (the target's prices)."""
    model = payload.get("model") if isinstance(payload, Mapping) else None
    if options.pricing is not None or not isinstance(model, str):
        return options
    found = listed_pricing(model)
    return options if found is None else replace(options, pricing=found)


def _pricing(route: RouteSettings, settings: ProxySettings) -> CachePricing | None:
    configured = route.pricing or settings.pricing
    return configured.cache_pricing() if configured is not None else None


def _tenant(headers: Mapping[str, str], settings: ProxySettings, credential: str | None) -> str | None:
    if settings.tenant_header is not None:
        named = headers.get(settings.tenant_header)
        if named is not None:
            if named not in settings.tenants:
                raise RequestError(
                    f"{settings.tenant_header} names no tenant this proxy is configured with",
                    param=settings.tenant_header,
                    code="unknown_tenant",
                )
            return named
    if credential is None or not settings.tenants:
        return None
    digest = key_digest(credential)
    for name, tenant in settings.tenants.items():
        if any(hmac.compare_digest(digest, k) for k in tenant.keys):
            return name
    return None


def _keyed(credential: str | None, secret: bytes) -> str | None:
    """A keyed hash of the credential (never the key itself), or ``None`` when the request carries none."""
    if credential is None:
        return None
    # surrogatepass: an end user named with an unpaired surrogate (valid JSON, not valid Unicode) still has a name;
    # the body itself is refused or forwarded as given later, by the route, never answered 500 here
    return hmac.new(secret, credential.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def _cache_scope(settings: ProxySettings, keyed: str | None) -> str:
    if settings.result_cache_scope == "shared":
        return "shared"
    return "anonymous" if keyed is None else keyed
