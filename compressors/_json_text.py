"""JSON as it was written: parsed without losing how its numbers were written, and written back in the input's
style (indent unit, separators, ASCII escapes), so that what a reducer keeps is the input's own text.

Python's ``json`` writes ``1.50`` as ``1.5``, ``1E2`` as ``100.0``, ``-0`` as ``0`` and ``1e400`` as ``Infinity``
(not JSON): such numbers are parsed into ``int``/``float`` subclasses that remember their text, and only documents
holding one go through :func:`_write`, a small serializer laid out as ``json.dumps`` lays out; ordinary data takes
``json.dumps``. An object with a duplicate key is refused (re-serializing would silently drop one).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Style", "json_lines", "parse", "parse_json"]

_INDENT = re.compile(r"[ \t]*[\[{][ \t]*\r?\n([ \t]+)\S")


class _DuplicateKey(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateKey
    return obj


class _Int(int):
    """An integer Python writes back otherwise than it was written (``-0``): ``text`` is how it was written."""

    text: str

    def __new__(cls, text: str) -> _Int:
        self = super().__new__(cls, text)
        self.text = text
        return self


class _Float(float):
    """A float Python writes back otherwise than it was written (``1.50``, ``1E2``, more digits than a double holds,
    ``1e400`` which is inf): ``text`` is how it was written. Its value serves ranges and comparisons."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> _Float:
        self = super().__new__(cls, text)
        self.text = text
        return self


def parse_json(text: str) -> tuple[bool, Any]:
    """``(True, value)`` when ``text`` is one JSON value without duplicate keys, else ``(False, None)``."""
    ok, value, _ = parse(text)
    return ok, value


def parse(text: str) -> tuple[bool, Any, bool]:
    """``parse_json``'s answer and whether a number in it is an ``_Int`` or ``_Float``: only ``_write`` writes those
    back as they were (``json.dumps`` writes their value), and only they need it, so that rare case alone pays."""
    literal = False

    def as_int(t: str) -> int:
        nonlocal literal
        if t != "-0":  # JSON's integers have no sign but "-", no leading zeros: Python writes all others back alike
            return int(t)
        literal = True
        return _Int(t)

    def as_float(t: str) -> float:
        nonlocal literal
        value = float(t)
        if repr(value) == t:  # what json.dumps writes for a finite float
            return value
        literal = True
        return _Float(t)

    try:
        value = json.loads(text, object_pairs_hook=_pairs, parse_int=as_int, parse_float=as_float)
    except (ValueError, RecursionError):
        return False, None, False
    return True, value, literal


def json_lines(text: str) -> list[tuple[int, dict[str, Any]]] | None:
    """``(line index, object)`` for every non-blank line when each is a JSON object (JSON Lines), else None."""
    out = []
    for i, line in enumerate(text.split("\n")):
        s = line.strip().removeprefix("\ufeff") if i == 0 else line.strip()
        if not s:
            continue
        if not (s.startswith("{") and s.endswith("}")):
            return None
        ok, value = parse_json(s)
        if not ok or not isinstance(value, dict):
            return None
        out.append((i, value))
    return out


@dataclass(frozen=True, slots=True)
class Style:
    indent: str | None
    separators: tuple[str, str]
    ensure_ascii: bool
    literal: bool = False  # some number is an _Int or _Float, which json.dumps would write otherwise

    @classmethod
    def of(cls, text: str, literal: bool = False) -> Style:
        head = text[:20_000]
        key_sep = ": " if re.search(r'"[ \t]*:[ \t]', head) else ":"
        m = _INDENT.match(head)
        if m:
            return cls(m.group(1), (",", key_sep), _ascii(text), literal)
        item_sep = ", " if re.search(r'[\]}"\delun],[ \t]+["{\[\-\dtfn]', head) else ","
        return cls(None, (item_sep, key_sep), _ascii(text), literal)

    def dumps(self, value: Any) -> str:
        if self.literal:
            out: list[str] = []
            _write(value, self, "\n", out)
            return "".join(out)
        return json.dumps(value, indent=self.indent, separators=self.separators, ensure_ascii=self.ensure_ascii)


_SCALAR = {flag: json.JSONEncoder(ensure_ascii=flag).encode for flag in (True, False)}


def _write(value: Any, style: Style, newline: str, out: list[str]) -> None:
    """Append ``value`` as ``json.dumps`` writes it in ``style``, but ``_Int`` and ``_Float`` as they were written.
    ``newline`` is the line break and indentation of ``value``'s own line (used only with an indent)."""
    scalar = _SCALAR[style.ensure_ascii]
    if isinstance(value, _Int | _Float):
        out.append(value.text)
        return
    if not isinstance(value, dict | list) or not value:  # strings, plain numbers, true, false, null, [], {}
        out.append(scalar(value))
        return
    item_sep, key_sep = style.separators
    inner, end = (newline + style.indent, newline) if style.indent is not None else ("", "")
    if isinstance(value, dict):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            out.append(f"{item_sep}{inner}{scalar(key)}{key_sep}" if i else f"{inner}{scalar(key)}{key_sep}")
            _write(item, style, inner, out)
        out.append(end + "}")
    else:
        out.append("[")
        for i, item in enumerate(value):
            out.append(item_sep + inner if i else inner)
            _write(item, style, inner, out)
        out.append(end + "]")


def _ascii(text: str) -> bool:
    return text.isascii() and "\\u" in text
