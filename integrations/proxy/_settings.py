"""Proxy settings: one validated, immutable value object, from keyword arguments, a config file, or both.

A config file is JSON (``.json``) or TOML (``.toml``); unknown keys are errors. Example (TOML)::

    upstream = "https://api.openai.com/v1"   # the only place requests go; a request cannot change it
    cache = "redis://127.0.0.1:6379/0"       # shared by replicas; default: the user's SQLite cache
    preset = "fast"
    rate = 0.5                               # or: budget = 4000 (tokens); header > route > these defaults
    min_tokens = 1024                        # smaller chats are forwarded as they are
    fail_mode = "open"                       # compressor failure → forward the original ("closed": an error)
    scope = "all"                            # compress the context in every message ("history": earlier turns only)
    compression_deadline = 10.0              # seconds; past it the chat fails open (or closed)
    compression_queue = 16                   # compressions running or waiting; more are answered 503 + retry-after
    fair_queue = true                        # compressions and upstream connections in turns by client (tenant,
                                             # else credential), then by the end user the body names; false: by
                                             # arrival
    max_body_bytes = 10485760                # the largest body read whole (compressed routes); past it: 413
    max_buffered_bytes = 167772160           # bodies held in memory, all requests together; past it: 503
    thread_body_bytes = 65536                # larger bodies are parsed and re-encoded on a thread, not the loop
    min_body_rate = 16384                    # bytes/s: each such a body sends adds 1 s to timeouts.body
    min_send_rate = 512                      # bytes/s a client must take of an answer while its writes wait
    max_client_connections = 1024            # client connections open at once; past it: 503 and closed
    max_connections_per_client = 64          # of those, from one address (default: none; not behind a balancer)
    warmup = true                            # load the models before serving (promptzip proxy's default)
    allowed_presets = ["fast"]               # what x-promptzip-preset may name (default: the presets configured here)
    cache_key_secret = "..."                 # HMAC key of the per-credential result cache (same on every replica)

    [tenants.acme]                           # a tenant: the SHA-256 digests of its API keys (never the keys)
    keys = ["sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]

    [timeouts]
    connect = 5.0
    read = 600.0
    write = 60.0                             # also each chunk of a request body from the client; past it: 408
    body = 300.0                             # a whole request body (+ 1 s per min_body_rate bytes); past it: 408
    headers = 10.0                           # a request's headers, from connect or the last answer; past it: 408
    send = 60.0                              # a client that takes (almost) none of an answer this long: disconnected

    [routes."/v1/chat/completions"]          # per-route defaults (path → settings)
    budget = 3000

    [routes."/v1/messages"]                  # Anthropic Messages: compressed by default, as are /v1/responses and
    budget = 4000                            # /v1/completions (compress = false passes a route through untouched)

    [routes."/v1/messages".pricing]          # cache prices for cache-stable history (default: the target's)
    input = 3.0                              # $ per million input tokens
    cached = 0.3                             # ... read from the provider's cache
    write = 3.75                             # ... written to it
    min_prefix = 1024                        # the shortest prefix it caches

    [routes."/v1/gateway/chat"]              # any other path reads as chat completions unless it names a dialect:
    dialect = "anthropic"                    # chat, anthropic, responses or completions
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from promptzip._errors import ConfigError
from promptzip._pricing import CachePricing
from promptzip._types import Budget
from promptzip.integrations.proxy._send_progress import MIN_SEND_RATE

__all__ = [
    "BATCHES",
    "CHAT_COMPLETIONS",
    "COMPLETIONS",
    "DEFAULT_RATE",
    "DIALECT_PATHS",
    "FILES",
    "MESSAGES",
    "RESPONSES",
    "SCOPES",
    "DialectName",
    "PricingSettings",
    "ProxySettings",
    "RouteSettings",
    "Scope",
    "TenantSettings",
    "Timeouts",
    "load_settings",
]

CHAT_COMPLETIONS = "/v1/chat/completions"
MESSAGES = "/v1/messages"  # Anthropic Messages API
RESPONSES = "/v1/responses"  # OpenAI Responses API
COMPLETIONS = "/v1/completions"  # OpenAI's legacy Completions API: raw prompts, as vLLM, TGI and llama.cpp serve them
DialectName = Literal["chat", "anthropic", "responses", "completions"]
"""How a compressed route's body is read: OpenAI chat completions, Anthropic Messages, OpenAI Responses, or OpenAI's
legacy Completions (a ``prompt``)."""
DIALECT_PATHS: Mapping[str, DialectName] = MappingProxyType(
    {CHAT_COMPLETIONS: "chat", MESSAGES: "anthropic", RESPONSES: "responses", COMPLETIONS: "completions"}
)
"""The routes compressed by default, and the dialect of each (any other configured route reads as ``chat``)."""
BATCHES = "/batches"  # POST to an Anthropic Messages route + this creates a Message Batch of Messages requests
FILES = "/v1/files"  # OpenAI's file uploads: a "batch" file's lines are requests to the routes (batch_line_route)
# What an OpenAI batch line may be sent to, of what the proxy reads (Anthropic Messages has batches of its own).
_BATCH_LINE_DIALECTS = ("chat", "responses", "completions")
DEFAULT_RATE = 0.5
MiB = 1 << 20
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_HEADER = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")

FailMode = Literal["open", "closed"]
CacheScope = Literal["credential", "shared"]
Scope = Literal["all", "history"]
"""What a chat's compression may touch: the context found in every message (``all``: system messages and the last
user turn included, their instruction and question kept verbatim), or only earlier turns (``history``)."""
SCOPES: tuple[str, ...] = get_args(Scope)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def _check_budget_pair(budget: int | None, rate: float | None) -> None:
    if budget is not None and rate is not None:
        raise ValueError("give budget (tokens) or rate (kept fraction), not both")


class PricingSettings(_Frozen):
    """A target's cache prices, per million input tokens (:class:`promptzip.CachePricing`): what cache-stable
    history weighs reuse against re-selection with. ``None`` on a route and at the top: the route target's
    published prices (``promptzip.pricing_for``)."""

    input: float = Field(ge=0)
    cached: float = Field(ge=0)
    write: float | None = Field(default=None, ge=0)
    min_prefix: int = Field(default=1024, ge=0)
    step: int = Field(default=1, ge=1)
    breakpoints: bool = False

    def cache_pricing(self) -> CachePricing:
        return CachePricing(**self.model_dump())  # the same fields, one for one


class RouteSettings(_Frozen):
    """Defaults for one path; ``None`` inherits the top-level value. ``compress`` marks an endpoint whose POST body
    is compressed; other paths are passed through untouched. ``dialect`` says how its body reads (``None``: by the
    path, see ``DIALECT_PATHS``, else ``chat``)."""

    compress: bool = True
    dialect: DialectName | None = None
    budget: int | None = Field(default=None, gt=0)
    rate: float | None = Field(default=None, gt=0, le=1)
    preset: str | None = None
    target: str | None = None
    min_tokens: int | None = Field(default=None, ge=0)
    fail_mode: FailMode | None = None
    scope: Scope | None = None
    compression_deadline: float | None = Field(default=None, gt=0)
    pricing: PricingSettings | None = None

    @model_validator(mode="after")
    def _one_budget(self) -> RouteSettings:
        _check_budget_pair(self.budget, self.rate)
        return self

    @field_validator("preset", "target")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError(f"not a valid name: {value!r}")
        return value


class TenantSettings(_Frozen):
    """A tenant: the SHA-256 digests of its API keys, each written ``sha256:<64 hex digits>`` (see
    ``promptzip.integrations.proxy.key_digest``), so the config file never holds a key."""

    keys: tuple[str, ...] = ()

    @field_validator("keys")
    @classmethod
    def _digests(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for key in value:
            if not _DIGEST.match(key):
                raise ValueError("a tenant key is 'sha256:' and 64 lowercase hex digits (the key's digest, not it)")
        return value


class Timeouts(_Frozen):
    """Seconds. ``read`` bounds the wait for the upstream's headers and between body chunks (504 when it passes).
    ``write`` bounds sending each chunk of a body upstream, and the wait for each chunk of a request body from the
    client, read whole or forwarded as it arrives (:mod:`._bodies`): past it the client gets 408 ``body_timeout``
    and its connection is closed. ``body`` bounds a whole request body the same way, plus one second per
    ``min_body_rate`` bytes received; ``headers`` a request's headers, from connect or from the end of the previous
    answer; ``send`` how long a client may take none of an answer (less than ``min_send_rate`` bytes a second), its
    connection's writes waiting on it, before the connection is dropped (:mod:`._connections`)."""

    connect: float = Field(default=5.0, gt=0)
    read: float = Field(default=600.0, gt=0)
    write: float = Field(default=60.0, gt=0)
    pool: float = Field(default=10.0, gt=0)
    body: float = Field(default=300.0, gt=0)
    headers: float = Field(default=10.0, gt=0)
    send: float = Field(default=60.0, gt=0)


class ProxySettings(_Frozen):
    """Everything the proxy needs; see the module docstring for a config file.

    >>> ProxySettings(upstream="https://api.openai.com/v1", budget=3000).port
    8787
    """

    upstream: str
    host: str = "127.0.0.1"
    port: int = Field(default=8787, ge=0, le=65535)
    cache: str | None = None
    preset: str = "fast"
    target: str = "gpt-4o"
    budget: int | None = Field(default=None, gt=0)
    rate: float | None = Field(default=None, gt=0, le=1)
    min_tokens: int = Field(default=1024, ge=0)
    fail_mode: FailMode = "open"
    scope: Scope = "all"
    max_body_bytes: int = Field(default=10 * MiB, gt=0)  # what the proxy reads whole: compressed routes, batches
    # What the bodies held in memory may take, all requests together (._budget); at least max_body_bytes.
    max_buffered_bytes: int = Field(default=160 * MiB, gt=0)
    # What it forwards unread, as it arrives (other routes, an upload too large to read); None: the upstream decides.
    max_forward_bytes: int | None = Field(default=512 * MiB, gt=0)
    min_body_rate: int = Field(default=16 << 10, gt=0)  # bytes/s a body earns past timeouts.body (._bodies)
    min_send_rate: int = Field(default=MIN_SEND_RATE, gt=0)  # bytes/s a client must take of an answer (._send_progress)
    max_client_connections: int | None = Field(default=1024, gt=0)  # None: no cap (._connections)
    # None: no cap. Behind a load balancer every client has its address, so it is off by default (._connections).
    max_connections_per_client: int | None = Field(default=None, gt=0)
    timeouts: Timeouts = Timeouts()
    max_connections: int = Field(default=256, gt=0)
    upstream_pools: int = Field(default=8, gt=0, le=64)
    result_cache: bool = True
    # Each compressed answer names (x-promptzip-dropped) an expand id holding what the model did not get.
    report_dropped: bool = False
    result_cache_scope: CacheScope = "credential"
    cache_key_secret: SecretStr | None = None
    local_cache_bytes: int = Field(default=64 * MiB, ge=0)
    tenants: dict[str, TenantSettings] = Field(default_factory=dict)
    tenant_header: str | None = None
    allowed_presets: tuple[str, ...] | None = None
    max_zippers: int = Field(default=16, gt=0)
    compression_threads: int = Field(default=4, gt=0)
    compression_deadline: float = Field(default=10.0, gt=0)
    compression_queue: int = Field(default=16, gt=0)
    # Whose waiting compression runs next, whose is shed when the queue is full, and who gets a freed upstream
    # connection: by client, then by the end user its body names (._fair).
    fair_queue: bool = True
    compression_nice: int = Field(default=10, ge=0, le=19)
    io_threads: int = Field(default=16, gt=0)
    # Bodies past this many bytes are parsed, checked and re-encoded on a thread of their own, not on the event loop
    # that serves every client (._compression.Compressions.off_loop); a smaller one is not worth the hop.
    thread_body_bytes: int = Field(default=64 << 10, ge=0)
    trust_env: bool = False
    warmup: bool = False  # load the models before serving; ``promptzip proxy`` turns it on (``--no-warmup``)
    pricing: PricingSettings | None = None  # cache prices for cache-stable history (default: the target's)
    routes: dict[str, RouteSettings] = Field(default_factory=lambda: dict.fromkeys(DIALECT_PATHS, RouteSettings()))

    @field_validator("upstream")
    @classmethod
    def _upstream(cls, value: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream must be an http(s) URL such as https://api.openai.com/v1, got {value!r}")
        if parts.query or parts.fragment or "@" in parts.netloc:
            raise ValueError("upstream must not carry a query, a fragment or credentials")
        return value.rstrip("/")

    @field_validator("preset", "target")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"not a valid name: {value!r}")
        return value

    @field_validator("tenants")
    @classmethod
    def _tenant_names(cls, value: dict[str, TenantSettings]) -> dict[str, TenantSettings]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"a tenant name is 1-64 letters, digits, '_', '.', ':' or '-', got {name!r}")
        return value

    @field_validator("tenant_header")
    @classmethod
    def _header(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.lower()
        if not _HEADER.match(value):
            raise ValueError(f"not a valid header name: {value!r}")
        return value

    @field_validator("routes")
    @classmethod
    def _routes(cls, value: dict[str, RouteSettings]) -> dict[str, RouteSettings]:
        for path in value:
            if not path.startswith("/v1/") or "?" in path or "/../" in path + "/" or "/./" in path + "/":
                raise ValueError(f"a route is a plain path under /v1/, got {path!r}")
        return {**dict.fromkeys(DIALECT_PATHS, RouteSettings()), **value}

    @model_validator(mode="after")
    def _one_budget(self) -> ProxySettings:
        _check_budget_pair(self.budget, self.rate)
        return self

    @model_validator(mode="after")
    def _room_for_a_body(self) -> ProxySettings:
        if self.max_buffered_bytes < self.max_body_bytes:
            raise ValueError(
                f"max_buffered_bytes ({self.max_buffered_bytes}) must be at least max_body_bytes "
                f"({self.max_body_bytes}): the largest body the proxy reads must fit in the memory for all bodies"
            )
        return self

    def route(self, path: str) -> RouteSettings | None:
        """The settings of a compressed route, or ``None`` when ``path`` is passed through."""
        found = self.routes.get(path)
        return found if found is not None and found.compress else None

    def batch_route(self, path: str) -> RouteSettings | None:
        """The settings of the compressed Anthropic Messages route whose Message Batches ``path`` creates
        (``/v1/messages/batches`` for ``/v1/messages``), or ``None``: a batch's requests are compressed as that
        route compresses one body, and a route turned off (``compress = false``) passes its batches through too."""
        parent = path.removesuffix(BATCHES)
        route = self.route(parent) if parent != path else None
        if route is None or (route.dialect or DIALECT_PATHS.get(parent, "chat")) != "anthropic":
            return None
        return route

    def batch_line_route(self, url: str) -> tuple[RouteSettings, DialectName] | None:
        """The settings and dialect of the compressed route an OpenAI batch file's line names by its ``url``
        (``/v1/chat/completions``, ``/v1/responses``, ``/v1/completions``), or ``None``: its body is compressed as a
        request on that path would be, and a route turned off, or read as Anthropic Messages (not an OpenAI batch
        endpoint), leaves the line as it came."""
        route = self.route(url)
        if route is None:
            return None
        dialect = route.dialect or DIALECT_PATHS.get(url, "chat")
        return (route, dialect) if dialect in _BATCH_LINE_DIALECTS else None

    def default_budget(self, route: RouteSettings) -> Budget:
        """The route's budget, else the top-level one, else ``rate=DEFAULT_RATE``."""
        for budget, rate in ((route.budget, route.rate), (self.budget, self.rate)):
            if budget is not None:
                return Budget(tokens=budget)
            if rate is not None:
                return Budget(rate=rate)
        return Budget(rate=DEFAULT_RATE)


def load_settings(
    path: str | Path | None = None, *, defaults: Mapping[str, Any] | None = None, **overrides: Any
) -> ProxySettings:
    """Settings from a JSON or TOML file (optional) with ``overrides`` on top: ``None`` values are ignored, tables
    (``timeouts``, ``routes``) are merged key by key, and a ``budget`` replaces the file's ``rate`` (and back).
    ``defaults`` replace :class:`ProxySettings`' own defaults where neither the file nor an override gives a value
    (``promptzip proxy`` warms up by default, a ``ProxySettings`` built in code does not).

    Every problem (unreadable file, bad syntax, unknown key, bad value) is a :class:`ConfigError`.
    """
    data: dict[str, Any] = {}
    if path is not None:
        data = _read(Path(path))
    data = {**(defaults or {}), **data}
    given = {k: v for k, v in overrides.items() if v is not None}
    for one, other in (("budget", "rate"), ("rate", "budget")):
        if one in given:  # a budget given here replaces a rate from the file, and the other way round
            data.pop(other, None)
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    try:
        return ProxySettings.model_validate(data)
    except ValidationError as exc:
        where = f" in {path}" if path is not None else ""
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid proxy settings{where}: {problems}") from exc


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the proxy config {path}: {exc.strerror or exc}") from exc
    try:
        if path.suffix.lower() == ".toml":
            data: Any = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        raise ConfigError(f"the proxy config {path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"the proxy config {path} must hold an object (a table), not {type(data).__name__}")
    return data
