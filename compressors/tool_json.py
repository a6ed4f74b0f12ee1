"""JSON tool outputs: keep the array items relevant to the request, summarize the dropped ones in one string.

The array cut is the top-level one, or the largest array of similar items (all objects, all strings or all
numbers, at least ``min_items``) nested anywhere, e.g. ``{"results": [...], "total": 50}``. The items most relevant
to the query (scored on each item's compact serialization) are kept in their original order, and ONE string is
appended to that array saying what was dropped: how many, their fields, and the range (min–max) of every field
whose values are all numbers or all ISO dates/times::

    "[promptzip: 37 of 50 items omitted; fields id, name, price, created; id 3–50; price 3.5–99.0;
      created 2024-01-02–2024-03-01; expand pz-…]"

When the most relevant item does not fit whole, it is kept with each of its long text fields cut to its sentences
most relevant to the query, in order, and ``[…5 of 7 sentences omitted]`` at the end, then whole items as room is
left (a search result whose snippet holds the answer is worth more than shorter, less relevant results, which a
greedy fill would take instead); its other fields are as they were.

Everything outside that array is kept; the output is valid JSON with the original keys in their order, serialized
in the input's style, numbers as the input wrote them (:mod:`promptzip.compressors._json_text`), so strict JSON in is
strict JSON out; leading and trailing whitespace kept. JSON Lines (one object per line) is an array too: kept lines stay
byte for byte and the summary is one more line, a JSON string. Malformed JSON, or an object with a duplicate key
(re-serializing would silently drop one), is not this reducer's: it returns None.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from promptzip.compressors._json_text import Style, json_lines, parse, parse_json
from promptzip.compressors.tool_outputs import (
    Count,
    Reduced,
    Relevance,
    fit_prefix,
    greedy,
    marker,
    rank,
    relevance_scores,
)

__all__ = ["JsonReducer", "parse_json", "summary"]

_ISO = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?")
_MAX_FIELDS = 30  # field names listed in a summary
_MAX_RANGES = 12  # fields whose ranges a summary gives
_LONG_TEXT = 200  # characters: a field this long is cut to sentences when its item does not fit whole


def _homogeneous(items: list[Any]) -> bool:
    """Whether ``items`` are alike: all objects, all strings, all booleans or all numbers, nulls among any of them
    (a missing record is still one of the list)."""
    present = [x for x in items if x is not None]
    if not present:
        return True
    first = present[0]
    if isinstance(first, dict):
        return all(isinstance(x, dict) for x in present)
    if isinstance(first, str):
        return all(isinstance(x, str) for x in present)
    if isinstance(first, bool):
        return all(isinstance(x, bool) for x in present)
    return all(_number(x) for x in present)


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _largest_array(root: Any, min_items: int, style: Style) -> tuple[Any, Any, list[Any]] | None:
    """``(parent, key, array)`` of the largest array of similar items (parent None for the root itself), else of
    the largest array of at least ``min_items`` items of any kind (cutting items of a mixed list keeps it valid
    JSON too). Arrays inside a candidate's items are not searched: the outer one holds them all."""
    for alike in (_homogeneous, lambda items: True):
        found: list[tuple[Any, Any, list[Any]]] = []
        stack: list[tuple[Any, Any, Any]] = [(None, None, root)]
        while stack:
            parent, key, value = stack.pop()
            if isinstance(value, list):
                if len(value) >= min_items and alike(value):
                    found.append((parent, key, value))
                    continue
                stack.extend((value, i, v) for i, v in reversed(list(enumerate(value))))
            elif isinstance(value, dict):
                stack.extend((value, k, v) for k, v in reversed(list(value.items())))
        if len(found) == 1:
            return found[0]
        if found:
            return max(found, key=lambda f: len(style.dumps(f[2])))  # first of the largest on a tie
    return None


def _fmt(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _range(values: list[Any]) -> str | None:
    """``min–max`` of values that are all numbers or all ISO dates/times, else None."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    if all(_number(v) for v in values):
        finite = [v for v in values if isinstance(v, int) or math.isfinite(v)]  # isfinite(10**400) overflows
        if not finite:
            return None
        lo, hi = min(finite), max(finite)
    elif all(isinstance(v, str) and _ISO.fullmatch(v) for v in values):
        lo, hi = min(values, key=_date_key(values)), max(values, key=_date_key(values))
    else:
        return None
    return _fmt(lo) if lo == hi else f"{_fmt(lo)}–{_fmt(hi)}"


def _date_key(values: list[str]) -> Callable[[str], Any]:
    """Compare as datetimes when all parse alike (all naive or all aware), else as strings (ISO sorts so)."""
    try:
        parsed = [datetime.fromisoformat(v) for v in values]
    except ValueError:
        return str
    if len({p.tzinfo is None for p in parsed}) > 1:
        return str
    return datetime.fromisoformat


def summary(dropped: Sequence[Any], total: int, expand_id: str, *, detail: int = 2) -> str:
    """The marker for ``dropped`` items of ``total``: count; with ``detail`` ≥ 1 the fields of dropped objects;
    with ``detail`` ≥ 2 the ranges of their number and date fields (``values`` for an array of scalars)."""
    parts = [f"{len(dropped)} of {total} items omitted"]
    objects = [d for d in dropped if isinstance(d, dict)]
    fields = list(dict.fromkeys(k for d in objects for k in d))
    if detail >= 1 and fields:
        listed = ", ".join(str(f) for f in fields[:_MAX_FIELDS])
        more = f" (+{len(fields) - _MAX_FIELDS} more)" if len(fields) > _MAX_FIELDS else ""
        parts.append(f"fields {listed}{more}")
    if detail >= 2:
        columns = [(f, [d.get(f) for d in objects]) for f in fields] if objects else [("values", list(dropped))]
        ranges = []
        for name, values in columns:
            r = _range(values)
            if r is not None:
                ranges.append(f"{name} {r}")
            if len(ranges) >= _MAX_RANGES:
                break
        parts.extend(ranges)
    return marker("; ".join(parts), expand_id)


def _body(text: str) -> str:
    """``text`` without the blanks around it and a byte-order mark before it (an editor's or a Windows tool's:
    JSON parsers skip it), which the output keeps where it was."""
    s = text.strip()
    return s[1:].lstrip() if s.startswith("\ufeff") else s


@dataclass(frozen=True, slots=True)
class JsonReducer:
    """JSON arrays of similar items: relevant items kept in order, the rest summarized in one string element."""

    kind: str = "json"
    min_items: int = 4

    def detect(self, text: str) -> bool:
        s = _body(text)
        if not s or s[0] not in "{[" or s[-1] not in "}]":
            return False
        return parse_json(s)[0] or json_lines(text) is not None

    def reduce(
        self,
        text: str,
        *,
        query: str | None,
        target_tokens: int,
        count: Count,
        relevance: Relevance | None,
        expand_id: str,
    ) -> Reduced | None:
        s = _body(text)
        if not s or s[0] not in "{[":
            return None
        ok, root, literal = parse(s)
        if not ok:
            lines = json_lines(text) if s[0] == "{" else None
            if lines is None or len(lines) < self.min_items or count(text) <= target_tokens:
                return None
            return _reduce_lines(text, lines, query, target_tokens, count, relevance, expand_id)
        style = Style.of(text, literal)
        try:
            found = _largest_array(root, self.min_items, style)
            if found is None or count(text) <= target_tokens:
                return None
            return _reduce_array(text, root, found, style, query, target_tokens, count, relevance, expand_id)
        except RecursionError:  # nesting deeper than the serializer goes: not reducible here
            return None


def _reduce_array(
    text: str,
    root: Any,
    found: tuple[Any, Any, list[Any]],
    style: Style,
    query: str | None,
    target: int,
    count: Count,
    relevance: Relevance | None,
    expand_id: str,
) -> Reduced:
    parent, key, items = found
    body = _body(text)
    lead, trail = text[: text.index(body)], text[text.index(body) + len(body) :]
    scoring = Style(None, (", ", ": "), False, style.literal)  # json.dumps's defaults, numbers as written
    texts = [scoring.dumps(item) for item in items]

    def render(kept: Sequence[int], detail: int) -> str:
        keep = set(kept)
        new: list[Any] = [items[i] for i in kept]
        if len(keep) < len(items):
            new.append(summary([x for i, x in enumerate(items) if i not in keep], len(items), expand_id, detail=detail))
        if parent is None:
            return lead + style.dumps(new) + trail
        parent[key] = new
        try:
            return lead + style.dumps(root) + trail
        finally:
            parent[key] = items

    order = rank(relevance_scores(texts, query, relevance))
    out, kept, tokens = _choose(order, texts, render, target, count)
    if query and items and order[0] not in kept:
        # The most relevant item does not fit whole: a short form of it (its sentences most relevant to the query)
        # is worth more than less relevant items that happen to be short, which the greedy fill would take instead.
        shortened = _shortened_item(items, texts, order, render, query, target, count, relevance)
        if shortened is not None:
            out, tokens, k = shortened
            return Reduced(out, "json", tokens, len(items), k)
    return Reduced(out, "json", tokens, len(items), len(kept))


def _shortened_item(
    items: list[Any],
    texts: Sequence[str],
    order: Sequence[int],
    render: Callable[[Sequence[int], int], str],
    query: str,
    target: int,
    count: Count,
    relevance: Relevance | None,
) -> tuple[str, int, int] | None:
    """``(text, tokens, items kept)`` with the most relevant item (``order[0]``) in a short form: its long text fields
    cut to their sentences most relevant to the query (each cut field says how many it left out), then whole items
    in ``order`` in what room is left. A search result's snippet, say, of which the sentence that answers is worth
    more than other results. None when no sentence of it fits, or it has no long text field."""
    best = order[0]
    item = items[best]
    fields = (
        [k for k, v in item.items() if isinstance(v, str) and len(v) >= _LONG_TEXT] if isinstance(item, dict) else []
    )
    if not fields:
        return None
    from promptzip._split import sentence_spans

    units = [(f, a, b) for f in fields for a, b in sentence_spans(item[f])]
    ranked = rank(relevance_scores([item[f][a:b] for f, a, b in units], query, relevance))

    def shortened(sentences: Sequence[int], others: Sequence[int], detail: int) -> str:
        chosen = sorted(sentences)
        new = dict(item)
        for f in fields:
            mine = [units[u] for u in chosen if units[u][0] == f]
            total = sum(1 for u in units if u[0] == f)
            if len(mine) < total:
                text = " ".join(item[f][a:b] for _, a, b in mine)
                new[f] = f"{text} […{total - len(mine)} of {total} sentences omitted]".lstrip()
        items[best] = new
        try:
            return render(sorted([best, *others]), detail)
        finally:
            items[best] = item

    for detail in (1, 0):  # the summary of the rest gives up its field names before the item its last sentence
        text, k, tokens = fit_prefix(ranked, partial(shortened, others=(), detail=detail), count, target)
        if k and tokens <= target:
            break
    else:
        return None
    sentences = ranked[:k]
    others = greedy(order[1:], lambda i: count(texts[i]) + 1, target - tokens)
    if others:
        more, j, n = fit_prefix(others, lambda os: shortened(sentences, os, detail), count, target)
        if j and n <= target:
            return more, n, 1 + j
    return text, tokens, 1


def _choose(
    order: Sequence[int],
    texts: Sequence[str],
    render: Callable[[Sequence[int], int], str],
    target: int,
    count: Count,
) -> tuple[str, list[int], int]:
    """``(text, kept, tokens)``: the most relevant items that fit (``order``), rendered in their original order;
    when even no item fits, the summary loses its ranges, then its fields. ``fit_prefix`` trims ``picked`` from its
    least relevant end."""
    detail = next((d for d in (2, 1) if count(render((), d)) <= target), 0)
    skeleton = count(render((), detail))
    picked = greedy(order, lambda i: count(texts[i]) + 1, target - skeleton)
    text, k, tokens = fit_prefix(picked, lambda ks: render(sorted(ks), detail), count, target)
    return text, picked[:k], tokens


def _reduce_lines(
    text: str,
    objects: list[tuple[int, dict[str, Any]]],
    query: str | None,
    target: int,
    count: Count,
    relevance: Relevance | None,
    expand_id: str,
) -> Reduced:
    lines = text.split("\n")
    texts = [lines[i] for i, _ in objects]
    eol = "\r\n" if texts[0].endswith("\r") else "\n"
    end = eol if text.endswith("\n") else ""

    def render(kept: Sequence[int], detail: int) -> str:
        keep = set(kept)
        out = [texts[i].rstrip("\r") for i in kept]
        if len(keep) < len(objects):
            dropped = [obj for i, (_, obj) in enumerate(objects) if i not in keep]
            out.append(json.dumps(summary(dropped, len(objects), expand_id, detail=detail), ensure_ascii=False))
        return eol.join(out) + end

    out, kept, tokens = _choose(rank(relevance_scores(texts, query, relevance)), texts, render, target, count)
    return Reduced(out, "json", tokens, len(objects), len(kept))
