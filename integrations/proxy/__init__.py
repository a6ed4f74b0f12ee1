"""An OpenAI- and Anthropic-compatible proxy that compresses chat requests and raw prompts on their way to one fixed
upstream.

>>> from promptzip.integrations.proxy import ProxySettings, create_app
>>> app = create_app(ProxySettings(upstream="https://api.openai.com/v1", budget=3000))  # an ASGI app

Serve it with ``promptzip proxy --upstream URL`` (or :func:`serve`, or any ASGI server). Clients point their
OpenAI SDK's ``base_url`` at ``http://127.0.0.1:8787/v1``. Per request, headers steer compression:
``x-promptzip-budget`` (tokens), ``x-promptzip-rate`` (kept fraction), ``x-promptzip-preset``,
``x-promptzip-scope`` (``all``: the context of every message, found by request understanding; ``history``: earlier
turns only), and ``x-promptzip-disable``; the answer carries
``x-promptzip-status`` (``compressed``, ``passthrough`` or ``fail-open``), ``x-promptzip-tokens-in``/``-out``,
``x-promptzip-preset``, ``x-promptzip-method``, ``x-promptzip-scope`` and ``x-promptzip-regions``/
``-regions-compressed`` (context regions found / shortened). Needs the ``proxy`` extra.

No client can stall or read another: a request may only name presets the operator allows, each compression runs
under ``compression_deadline`` (then fails open or closed), at most ``compression_queue`` compressions run or wait
(then 503 + ``retry-after``), taken in turns by client so one client's many chats cannot fill the queue against
the others (``fair_queue``), cache hits never wait for a compression thread, tenants exist only by configuration
(API-key digests, :func:`key_digest`), and the whole-request cache is scoped per credential by a keyed hash.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from promptzip.integrations.proxy._app import ZipperFactory, create_app, serve
    from promptzip.integrations.proxy._compression import Overloaded
    from promptzip.integrations.proxy._errors import (
        BodyTimeout,
        BodyTooSlow,
        HeaderTimeout,
        PayloadTooLarge,
        RequestError,
    )
    from promptzip.integrations.proxy._metrics import Metrics
    from promptzip.integrations.proxy._options import key_digest
    from promptzip.integrations.proxy._settings import (
        CHAT_COMPLETIONS,
        COMPLETIONS,
        DEFAULT_RATE,
        DIALECT_PATHS,
        MESSAGES,
        RESPONSES,
        ProxySettings,
        RouteSettings,
        TenantSettings,
        Timeouts,
        load_settings,
    )

__all__ = [
    "CHAT_COMPLETIONS",
    "COMPLETIONS",
    "DEFAULT_RATE",
    "DIALECT_PATHS",
    "MESSAGES",
    "RESPONSES",
    "BodyTimeout",
    "BodyTooSlow",
    "HeaderTimeout",
    "Metrics",
    "Overloaded",
    "PayloadTooLarge",
    "ProxySettings",
    "RequestError",
    "RouteSettings",
    "TenantSettings",
    "Timeouts",
    "ZipperFactory",
    "create_app",
    "key_digest",
    "load_settings",
    "serve",
]

# Names load on first use, so that ``promptzip.cli`` can import ``_cli`` (argparse only) without starlette.
_HOMES = {
    "ZipperFactory": "_app",
    "create_app": "_app",
    "serve": "_app",
    "BodyTimeout": "_errors",
    "BodyTooSlow": "_errors",
    "HeaderTimeout": "_errors",
    "PayloadTooLarge": "_errors",
    "RequestError": "_errors",
    "Metrics": "_metrics",
    "Overloaded": "_compression",
    "key_digest": "_options",
    "TenantSettings": "_settings",
    "CHAT_COMPLETIONS": "_settings",
    "COMPLETIONS": "_settings",
    "DEFAULT_RATE": "_settings",
    "DIALECT_PATHS": "_settings",
    "MESSAGES": "_settings",
    "RESPONSES": "_settings",
    "ProxySettings": "_settings",
    "RouteSettings": "_settings",
    "Timeouts": "_settings",
    "load_settings": "_settings",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{home}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
