"""What a request body must be before a door reads it as chat: :class:`RequestError` (a request refused as sent,
with the HTTP status, parameter and code the proxy answers with) and the checks of a body, a chat and a string.
The proxy and the wrapped SDK clients check bodies the same way; nothing here needs a web framework."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from itertools import chain, compress, repeat
from typing import Any

from promptzip._errors import InputError
from promptzip._messages import ROLES

__all__ = [
    "MAX_DEPTH",
    "RequestError",
    "check_body",
    "check_chat",
    "check_str",
    "json_error",
    "strict_json",
    "type_name",
]

# Deeper bodies are refused up front: compression, the result cache and re-encoding all recurse over the chat.
MAX_DEPTH = 64
_CONTAINERS = (dict, list)
_SCALARS = frozenset({str, int, float, bool, type(None)})  # what json.loads gives besides containers
_LONG = 64  # a container this long has its values' types looked at first


class RequestError(InputError):
    """A request the proxy refuses (4xx)."""

    def __init__(
        self, message: str, *, status: int = 400, param: str | None = None, code: str = "invalid_request"
    ) -> None:
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code


def check_str(value: object, param: str) -> str:
    if not isinstance(value, str):
        raise RequestError(f"{param} must be a string, not {type_name(value)}", param=param, code="invalid_type")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError(f"{param} contains an unpaired surrogate (invalid Unicode)", param=param) from None
    return value


class NumberOutOfRange(ValueError):
    """A JSON number no float holds (:func:`strict_json`)."""


def strict_json(data: str | bytes) -> Any:
    """``json.loads`` of a body or a batch line as the providers read JSON: ``NaN``/``Infinity`` and a number too
    large for a float (``1e400``, which Python reads as infinity and would write on as ``Infinity``) are refused
    (``ValueError``), like any other invalid JSON."""
    return json.loads(data, parse_constant=_reject_constant, parse_float=_finite_float)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if value in (math.inf, -math.inf):
        raise NumberOutOfRange(f"the number {literal[:40]} is out of range")
    return value


def json_error(exc: ValueError | RecursionError) -> str:
    """What a client is told of a body ``json.loads`` refused (never Python's own words on its limits)."""
    if isinstance(exc, json.JSONDecodeError):
        return exc.msg
    return str(exc) if isinstance(exc, NumberOutOfRange) else "too deeply nested or out of range"


def type_name(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests arrays and objects deeper than ``limit``, read a level at a time, without recursion
    (the point is to refuse what would exhaust the stack). Each level's values are gathered and sorted by C loops
    (``chain``, ``map(isinstance)``, ``compress``), and a long array or object of plain scalars is passed over after
    one look at its values' types: a Python step per value made this the slowest step of reading a large body."""
    level = [value] if isinstance(value, dict | list) else []
    for _ in range(limit):
        if not level:
            return False
        values = list(chain.from_iterable(_inner(level)))
        level = list(compress(values, map(isinstance, values, repeat(_CONTAINERS))))
    return bool(level)


def _inner(level: list[Any]) -> Iterator[Iterable[Any]]:
    """The values of each container of ``level`` that may hold containers."""
    for container in level:
        values = container.values() if isinstance(container, dict) else container
        if len(values) < _LONG or not _SCALARS.issuperset(map(type, values)):
            yield values


def check_body(payload: Any) -> dict[str, Any]:
    """The body of any compressed route (chat, Anthropic messages, Responses): a JSON object, not nested too deep,
    whose ``model`` and ``stream``, when present, are a string and a boolean (``stream`` may be null, as OpenAI's API
    allows: not streamed)."""
    if not isinstance(payload, dict):
        raise RequestError(f"the body must be a JSON object, not {type_name(payload)}", code="invalid_type")
    if _deeper_than(payload, MAX_DEPTH):
        raise RequestError(
            f"the body nests arrays and objects deeper than {MAX_DEPTH} levels", code="too_deeply_nested"
        )
    for name, kind in (("model", str), ("stream", bool | None)):
        if name in payload and not isinstance(payload[name], kind):
            raise RequestError(
                f"{name} has the wrong type: {type_name(payload[name])}", param=name, code="invalid_type"
            )
    return payload


def check_chat(payload: Any) -> list[dict[str, Any]]:
    """The chat's messages, checked as far as compression needs (the upstream checks the rest)."""
    messages = check_body(payload).get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty array", param="messages", code="invalid_type")
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise RequestError(f"{where} must be an object, not {type_name(m)}", param=where, code="invalid_type")
        role = m.get("role")
        if not isinstance(role, str) or role not in ROLES:  # a list or object role is unhashable
            raise RequestError(
                f"{where}.role must be one of {', '.join(sorted(ROLES))}", param=f"{where}.role", code="invalid_role"
            )
        if m.get("name") is not None:  # null is no name, as OpenAI's API reads it
            check_str(m["name"], f"{where}.name")
        content = m.get("content")
        if content is None:
            if not any(m.get(k) for k in ("tool_calls", "function_call", "audio", "refusal")):
                raise RequestError(f"{where} has no content", param=f"{where}.content", code="invalid_type")
        elif isinstance(content, list):
            for j, part in enumerate(content):
                at = f"{where}.content[{j}]"
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise RequestError(f"{at} must be an object with a string 'type'", param=at, code="invalid_type")
                if part["type"] == "text":
                    check_str(part.get("text"), f"{at}.text")
        else:
            check_str(content, f"{where}.content")
    return messages
