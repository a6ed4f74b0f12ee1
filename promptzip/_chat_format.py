"""The chat-completions message shape: which roles a chat may hold, how it is checked, where its texts are, and
what it costs in tokens by OpenAI's convention (each message its texts, ``role``, ``name`` and structured fields as
JSON, plus 3 tokens of framing; every reply primed with 3 tokens).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from promptzip._errors import InputError
from promptzip._inputs import check_text

__all__ = ["PER_MESSAGE", "REPLY_PRIMING", "ROLES", "chat_text", "message_tokens", "validate_messages"]

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
PER_MESSAGE = 3
REPLY_PRIMING = 3
_STRUCTURED = ("tool_calls", "function_call", "audio", "refusal")


def validate_messages(messages: object) -> list[Mapping[str, Any]]:
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise InputError("messages must be a list of {'role': ..., 'content': ...} objects")
    if not messages:
        raise InputError("messages is empty")
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise InputError(f"messages[{i}] must be an object, not {type(m).__name__}")
        role = m.get("role")
        if not isinstance(role, str) or role not in ROLES:  # a list role is unhashable
            raise InputError(f"messages[{i}] has an unknown role {role!r}; use one of {', '.join(sorted(ROLES))}")
        content = m.get("content")
        if content is None:
            if not any(m.get(k) for k in _STRUCTURED):
                raise InputError(f"messages[{i}] has no content")
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
                    raise InputError(f"messages[{i}].content[{j}] must be an object with a 'type'")
                if part["type"] == "text":
                    _check_str(part.get("text"), f"messages[{i}].content[{j}].text")
        else:
            _check_str(content, f"messages[{i}].content")
        _check_json(m, f"messages[{i}]")
    return list(messages)


def _check_str(value: object, where: str) -> None:
    # Not bytes, which check_text would decode: a message goes out as given, and its bytes would be neither counted
    # nor valid in an API request.
    if not isinstance(value, str):
        raise InputError(f"{where} must be str, not {type(value).__name__}")
    check_text(value, where, allow_empty=True, allow_nul=True)


def _check_json(m: Mapping[str, Any], where: str) -> None:
    """A message is counted and recognised by its JSON form (its structured fields, such as ``tool_calls``, exactly
    as JSON; the rest with anything else as its str): keys that are not str, which JSON cannot sort, nesting deeper
    than the encoder follows, and a message that contains itself are errors here, not deep inside a compression."""
    if all(type(k) is str and type(v) is str for k, v in m.items()):  # the common {"role": ..., "content": ...}
        for k, v in m.items():  # a name (content was checked): hashed and counted as UTF-8, so it must be Unicode
            if not k.isascii():
                check_text(k, f"{where} key {k!r}", allow_empty=True, allow_nul=True)
            if k != "content" and not v.isascii():
                check_text(v, f"{where}.{k}", allow_empty=True, allow_nul=True)
        return
    parts = [(f"{where}.{k}", m[k], None) for k in _STRUCTURED if m.get(k)] + [(where, m, str)]
    for name, value, default in parts:
        try:
            text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=default)
        except RecursionError:
            raise InputError(f"{name} is nested too deeply to be read as JSON") from None
        except TypeError as exc:
            raise InputError(f"{name} cannot be read as JSON: {exc} (keys must be str, values JSON data)") from exc
        except ValueError as exc:  # "Circular reference detected"
            raise InputError(f"{name} cannot be read as JSON: {exc}") from exc
        if not text.isascii():  # hashed and counted as UTF-8: an unpaired surrogate anywhere is not text
            check_text(text, f"{name} (as JSON)", allow_nul=True)


def _texts(m: Mapping[str, Any]) -> list[tuple[Any, str]]:
    """(location, text) of each text piece of a message: None for a str content, the part index otherwise."""
    content = m.get("content")
    if isinstance(content, str):
        return [(None, content)]
    if isinstance(content, list):
        return [(j, str(p.get("text", ""))) for j, p in enumerate(content) if p.get("type") == "text"]
    return []


def _framing_text(m: Mapping[str, Any]) -> str:
    extra = [str(m.get("role", "")), str(m.get("name") or "")]
    extra += [json.dumps(m[k], ensure_ascii=False, sort_keys=True) for k in _STRUCTURED if m.get(k)]
    return " ".join(e for e in extra if e)


def message_tokens(messages: Sequence[Mapping[str, Any]], count: Any) -> int:
    """Tokens of a chat in OpenAI's convention, with ``count`` the target tokenizer's counter."""
    total = REPLY_PRIMING
    for m in messages:
        total += PER_MESSAGE + count(_framing_text(m)) + sum(count(t) for _, t in _texts(m))
    return total


def chat_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The texts of a chat in order (string contents and text parts), joined by blank lines."""
    pieces: list[str] = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            pieces.append(content)
        elif isinstance(content, list):
            pieces.extend(p["text"] for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str))
    return "\n\n".join(p for p in pieces if p)
