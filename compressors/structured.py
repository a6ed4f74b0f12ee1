"""Pruning structured text without breaking its structure.

* **JSON** (:func:`prune_json`): only string *values* are pruned; keys, numbers, booleans, nulls, nesting and
  order are untouched, and the output is valid JSON (re-serialized with the input's indentation style). Strings
  shorter than ``min_words`` units are kept whole (names, enums, IDs). Invalid JSON is an
  :class:`~promptzip.InputError` with its character position.
* **Markdown** (:func:`prune_markdown`): headings, table rows, code fences (whole blocks), block-quote and list
  markers, and horizontal rules are forced to stay (a list item keeps its marker and first word); prose around
  them is pruned, and line breaks survive (the pruner joins across a removed line break with a line break, across
  a blank line with a blank line), so the document keeps its shape.

Both take a :class:`~promptzip.compressors.token_prune.TokenPruneCompressor`, so they share its scorer and cache.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from promptzip._errors import InputError
from promptzip._tokenizers import Tokenizer
from promptzip.compressors.pruning import Pruned, forced_mask, prune_scores
from promptzip.compressors.token_prune import TokenPruneCompressor

__all__ = ["markdown_structure", "prune_json", "prune_markdown"]

_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}(?:[ \t].*)?$", re.MULTILINE)
_SETEXT = re.compile(r"^.+\n[ \t]{0,3}(?:=+|-+)[ \t]*$", re.MULTILINE)
_TABLE = re.compile(r"^[ \t]*\|.*\|[ \t]*$|^[ \t]*:?-{3,}:?(?:[ \t]*\|[ \t]*:?-{3,}:?)+[ \t]*$", re.MULTILINE)
# a list or quote marker and the first word after it, so an item never shrinks to a bare "-"
_MARKER = re.compile(r"^[ \t]*(?:>[ \t]?)*(?:[-*+]|\d{1,9}[.)])[ \t]+\S+|^[ \t]*>[ \t]*\S*", re.MULTILINE)
_RULE = re.compile(r"^[ \t]{0,3}(?:[-*_][ \t]*){3,}$", re.MULTILINE)
_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})[^\n]*$", re.MULTILINE)


def _fences(text: str) -> Iterator[tuple[int, int]]:
    opened: re.Match[str] | None = None
    for m in _FENCE.finditer(text):
        if opened is None:
            opened = m
        elif m.group(1)[0] == opened.group(1)[0] and len(m.group(1)) >= len(opened.group(1)):
            yield opened.start(), m.end()
            opened = None
    if opened is not None:  # an unclosed fence runs to the end
        yield opened.start(), len(text)


def markdown_structure(text: str) -> list[tuple[int, int]]:
    """Character spans of Markdown structure that pruning must keep."""
    spans = [m.span() for pattern in (_HEADING, _SETEXT, _TABLE, _MARKER, _RULE) for m in pattern.finditer(text)]
    spans.extend(_fences(text))
    return spans


def prune_markdown(
    pruner: TokenPruneCompressor,
    text: str,
    *,
    rate: float | None = None,
    target_tokens: int | None = None,
    threshold: float | None = None,
    tokenizer: Tokenizer | None = None,
) -> Pruned:
    """Prune Markdown prose, keeping its structure (module docstring)."""
    if not isinstance(text, str):
        raise InputError(f"text must be str, not {type(text).__name__}")
    (scores,) = pruner.token_scores([text])
    starts = np.asarray(scores.starts, dtype=np.int64)
    ends = np.asarray(scores.ends, dtype=np.int64)
    forced = forced_mask(text, starts, ends, force_tokens=pruner.force_tokens, extra=markdown_structure(text))
    return prune_scores(
        scores, rate=rate, target_tokens=target_tokens, threshold=threshold, tokenizer=tokenizer, forced=forced
    )


def _strings(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, (*path, i))


def _replace(node: Any, path: tuple[Any, ...], value: str) -> Any:
    if not path:
        return value
    node[path[0]] = _replace(node[path[0]], path[1:], value)
    return node


def prune_json(
    pruner: TokenPruneCompressor,
    text: str,
    *,
    rate: float,
    tokenizer: Tokenizer | None = None,
    min_words: int = 4,
) -> str:
    """Prune the string values of a JSON document at ``rate``; the result is valid JSON with the same keys."""
    if not isinstance(text, str):
        raise InputError(f"JSON input must be str, not {type(text).__name__}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"invalid JSON at line {exc.lineno} column {exc.colno} (position {exc.pos}): {exc.msg}", position=exc.pos
        ) from exc
    except RecursionError as exc:
        raise InputError("JSON nested too deeply") from exc
    values = [(path, s) for path, s in _strings(data) if len(s.split()) >= min_words]
    if values:
        scored = pruner.token_scores([s for _, s in values])
        for (path, _), scores in zip(values, scored, strict=True):
            pruned = prune_scores(scores, rate=rate, tokenizer=tokenizer, force_tokens=pruner.force_tokens)
            data = _replace(data, path, pruned.text)
    stripped = text.strip()
    indent = _indent(stripped)
    if indent is None:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":") if ", " not in stripped else None)
    return json.dumps(data, ensure_ascii=False, indent=indent)


def _indent(text: str) -> int | None:
    m = re.search(r"\n([ ]+)\S", text)
    if "\n" not in text:
        return None
    return len(m.group(1)) if m else 0
