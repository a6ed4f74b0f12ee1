"""Request side of the proxy: control headers, body and chat validation, forwarded headers, and the cached
outcome of a compression (what is sent upstream, with its token counts and the context regions found)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.requests import Request

from promptzip._cache import decode_json
from promptzip._errors import PromptZipError
from promptzip._pricing import CachePricing
from promptzip._types import Budget
from promptzip.integrations._bodies import (
    MAX_DEPTH,
    RequestError,
    check_body,
    check_chat,
    check_str,
    json_error,
    strict_json,
    type_name,
)
from promptzip.integrations.proxy._paths import route_path, v1_segments
from promptzip.integrations.proxy._settings import SCOPES

_TRUE, _FALSE = frozenset({"1", "true", "yes", "on"}), frozenset({"0", "false", "no", "off", ""})

__all__ = [
    "MAX_DEPTH",
    "Options",
    "Outcome",
    "check_body",
    "check_chat",
    "check_path",
    "check_str",
    "declared_length",
    "decode_outcome",
    "encode",
    "encode_outcome",
    "flag",
    "int_header",
    "parse_json",
    "rate_header",
    "request_headers",
    "response_drop",
    "scope_header",
    "skip_reason",
    "status_headers",
    "type_name",
]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)
REQUEST_DROP = HOP_BY_HOP | {"host", "content-length"}
# The ASGI server writes its own Date (uvicorn does unless date_header=False, whatever the app sends), so the
# upstream's would make two. The server's is kept: it is on every answer, the proxy's own errors and /healthz
# included, with no setting to get right; for an LLM answer, which is not cached, the two differ by the upstream's
# latency only. The upstream's Server names its software and version, which are none of the client's business.
RESPONSE_DROP = HOP_BY_HOP | {"date", "server"}
CONTROL_PREFIX = "x-promptzip-"
MAX_BUDGET = 10_000_000


@dataclass(frozen=True, slots=True)
class Options:
    budget: Budget
    preset: str
    target: str
    tenant: str | None
    min_tokens: int
    fail_mode: str
    scope: str
    cache_scope: str = "shared"  # the whole-request cache's partition: a keyed hash of the credential, or "shared"
    deadline: float | None = None  # seconds a compression may take, from the request's arrival
    # Cache-stable history (promptzip._conversation): "stable" or "reselect", and the client's
    # x-promptzip-conversation id ("" when it sent none). Conversation state and the originals of cut tool outputs
    # live in the request's partition, _expand.expand_scope: the tenant and the credential's cache scope.
    history: str = "stable"
    conversation: str = ""
    pricing: CachePricing | None = None  # the route's cache prices; None: the target's (promptzip.pricing_for)
    # Whose turn in the compression queue and for upstream connections (._fair): "tenant:" and its name, else "key:"
    # and a keyed hash of the credential, else "" (no credential); and inside it, a keyed hash of the end user the
    # body names (._options.with_end_user), else "".
    client: str = ""
    user: str = ""

    @property
    def partition(self) -> str:
        """Where this request's conversation state and cut originals live: its credential's cache scope, inside its
        tenant's when it has one (tenant names hold no ``/``, so no two partitions are spelled alike unless equal)."""
        return partition_of(self.tenant, self.cache_scope)


def partition_of(tenant: str | None, cache_scope: str) -> str:
    return cache_scope if tenant is None else f"{tenant}/{cache_scope}"


@dataclass(slots=True)
class Outcome:
    messages: list[dict[str, Any]] | None  # None: forward the original body
    tokens_in: int
    tokens_out: int
    reason: str
    method: str
    seconds: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    regions: int = 0  # context regions found in the chat (0 when it was not compressed: too small, ...)
    regions_compressed: int = 0  # of those, how many came out shorter
    reused_messages: int = 0  # leading messages sent as an earlier request of the conversation sent them
    dropped: str = ""  # the expand id of the report of what was dropped (report_dropped), "" when none


def status_headers(status: str, reason: str | None = None) -> dict[str, str]:
    return {"x-promptzip-status": status, **({"x-promptzip-reason": reason} if reason else {})}


def request_headers(raw: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    named = {t.strip().lower() for k, v in raw if k.lower() == b"connection" for t in v.decode("latin-1").split(",")}
    out = [
        (k, v)
        for k, v in raw
        if (name := k.decode("latin-1").lower()) not in REQUEST_DROP
        and name not in named
        and not name.startswith(CONTROL_PREFIX)
    ]
    if not any(k.lower() == b"accept-encoding" for k, _ in out):
        out.append((b"accept-encoding", b"identity"))  # else httpx would ask for gzip the client never asked for
    return out


def response_drop(headers: httpx.Headers) -> frozenset[bytes]:
    named = {t.strip().lower() for v in headers.get_list("connection") for t in v.split(",")}
    return frozenset(n.encode("latin-1") for n in RESPONSE_DROP | named)


def declared_length(request: Request) -> int | None:
    """The request's ``content-length``, or ``None`` when it sent none (a chunked body, or no body)."""
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    digits = declared.strip()
    if not digits.isascii() or not digits.isdigit():
        raise RequestError("content-length is not a number", param="content-length")
    return int(digits)


def skip_reason(headers: Mapping[str, str]) -> str | None:
    """Why a compressed route's request is forwarded without reading its body (``x-promptzip-disable``, or a body
    in a content-encoding the proxy does not decode), or ``None``."""
    if flag(headers.get("x-promptzip-disable"), "x-promptzip-disable"):
        return "disabled"
    if headers.get("content-encoding", "identity").strip().lower() not in ("identity", ""):
        return "encoded-body"
    return None


def check_path(request: Request) -> str:
    """The request's path decoded (what routes match), or 400 ``invalid_path``: see :mod:`._paths`."""
    return route_path(v1_segments(request.scope))


def flag(value: str | None, name: str) -> bool:
    if value is None:
        return False
    value = value.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise RequestError(f"{name} must be 1/0, true/false, yes/no or on/off", param=name, code="invalid_header")


def int_header(value: str, name: str) -> int:
    value = value.strip()
    if not value.isascii() or not value.isdigit() or not 0 < int(value) <= MAX_BUDGET:
        raise RequestError(
            f"{name} must be a whole number of tokens in [1, {MAX_BUDGET}]", param=name, code="invalid_header"
        )
    return int(value)


def rate_header(value: str, name: str) -> float:
    try:
        rate = float(value.strip()) if value.strip().isascii() else float("nan")
    except ValueError:
        rate = float("nan")
    if not 0.0 < rate <= 1.0:  # also false for NaN
        raise RequestError(f"{name} must be the kept fraction, in (0, 1]", param=name, code="invalid_header")
    return rate


HISTORIES = ("stable", "reselect")
MAX_CONVERSATION_ID = 200


def history_header(value: str, name: str) -> str:
    history = value.strip().lower()
    if history not in HISTORIES:
        raise RequestError(f"{name} must be one of {', '.join(HISTORIES)}", param=name, code="invalid_header")
    return history


def conversation_header(value: str, name: str) -> str:
    """A client's conversation id: printable ASCII, at most 200 characters."""
    if not value or len(value) > MAX_CONVERSATION_ID or not value.isascii() or not value.isprintable():
        raise RequestError(
            f"{name} must be 1-{MAX_CONVERSATION_ID} printable ASCII characters", param=name, code="invalid_header"
        )
    return value


def scope_header(value: str, name: str) -> str:
    scope = value.strip().lower()
    if scope not in SCOPES:
        raise RequestError(f"{name} must be one of {', '.join(SCOPES)}", param=name, code="invalid_header")
    return scope


def parse_json(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(f"the body is not valid UTF-8 (byte {exc.start})", code="invalid_utf8") from None
    try:
        return strict_json(text)
    except (ValueError, RecursionError) as exc:
        raise RequestError(f"the body is not valid JSON: {json_error(exc)}", code="invalid_json") from None


def encode(payload: dict[str, Any]) -> bytes:
    try:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError("the body contains an unpaired surrogate (invalid Unicode)", code="invalid_utf8") from None


def encode_outcome(o: Outcome) -> dict[str, Any]:
    return {
        "messages": o.messages,
        "tokens_in": o.tokens_in,
        "tokens_out": o.tokens_out,
        "reason": o.reason,
        "method": o.method,
        "regions": o.regions,
        "regions_compressed": o.regions_compressed,
        "reused_messages": o.reused_messages,
        "dropped": o.dropped,
    }


def decode_outcome(raw: bytes | None) -> Outcome | None:
    if raw is None:
        return None
    try:
        d = decode_json(raw)
        messages = d["messages"]
        if messages is not None and not isinstance(messages, list):
            return None
        return Outcome(
            messages,
            int(d["tokens_in"]),
            int(d["tokens_out"]),
            str(d["reason"]),
            str(d["method"]),
            regions=int(d.get("regions", 0)),  # absent from entries written before regions were counted
            regions_compressed=int(d.get("regions_compressed", 0)),
            reused_messages=int(d.get("reused_messages", 0)),
            dropped=str(d.get("dropped", "")),
        )
    except (PromptZipError, AttributeError, KeyError, TypeError, ValueError):
        return None  # a corrupt or foreign entry is a miss
