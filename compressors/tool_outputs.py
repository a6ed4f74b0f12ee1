"""Tool outputs cut down by their structure: JSON arrays, logs, HTML pages, source code.

Agent traces are mostly tool output. A :class:`Reducer` turns one such text into a shorter one of the same kind
that tries to fit a token target, keeping what the current request (``query``) needs: the relevant items of a JSON
array, the errors of a log, the headings and relevant blocks of a page, the signatures and relevant bodies of a
module. Reducers are pure functions of their arguments (no model, no cache, deterministic); the caller stores the
original under ``expand_id`` and every output that omits anything names that id, in one marker format::

    [promptzip: 37 of 50 items omitted; fields id, name, price; id 3–50; price 3.5–99.0; expand pz-3f2a9c0d1e2b4a5c]
    [promptzip: 412 lines omitted; expand pz-3f2a9c0d1e2b4a5c]
    [promptzip: 23 lines omitted]

An output with several markers (a log, a module) names the id in its first marker only: the id is the whole
original's, and repeating it (~10 tokens) on every one of 50 bodies would cost more than many of them hold.

:func:`reduce_structured` tries the reducers of the ``reducers`` registry in a fixed order (``json``, ``html``,
``code``, ``log``, then plug-ins by name) and returns the first answer. A plug-in adds a kind the way the built-ins
do, from its ``promptzip.plugins`` hook::

    def register(registries):
        registries.reducers.register("csv", CsvReducer)   # a factory of objects with `kind` and `reduce`

Relevance comes from the caller (``relevance(texts, query)``, e.g. a dense scorer) or, when it gives none, from a
small BM25 over lowercased words in which numbers and identifiers (and their ``snake_case``/``camelCase`` parts)
count as words: tool output is full of ids, and a request that names one must find it.
"""

from __future__ import annotations

import importlib
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from promptzip._errors import ConfigError, InputError

__all__ = [
    "ORDER",
    "Count",
    "LinePlan",
    "LineUnit",
    "Reduced",
    "Reducer",
    "Relevance",
    "detect_kind",
    "fit_prefix",
    "greedy",
    "lexical_relevance",
    "marker",
    "matched_terms",
    "omitted",
    "query_terms",
    "rank",
    "reduce_structured",
    "register_reducers",
    "relevance_scores",
    "split_lines",
]

Relevance = Callable[[Sequence[str], str], Sequence[float]]
"""``(texts, query) -> one score per text``, higher is more relevant."""
Count = Callable[[str], int]
"""Tokens of a text in the target model's tokenizer (``Tokenizer.count``)."""

ORDER = ("json", "html", "code", "log")
"""The built-in kinds, in the order :func:`reduce_structured` tries them: the strictest test first (a JSON text
may look like a log, an HTML page like code), the loosest (a log) last."""


@dataclass(frozen=True, slots=True)
class Reduced:
    """A tool output cut down by its structure."""

    text: str  # the reduced output
    kind: str  # "json" | "log" | "html" | "code" (or a plug-in's kind)
    tokens: int  # count(text)
    units_in: int  # items / lines / blocks / definitions in the input
    units_kept: int  # of them kept whole


class Reducer(Protocol):
    """Cuts one kind of text by its structure. ``kind`` names it; a reducer may also have a cheap
    ``detect(text) -> bool`` that :func:`detect_kind` uses (optional: without it the kind is never detected)."""

    @property
    def kind(self) -> str: ...

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
        """The reduced text, or None when ``text`` is not of this kind, already fits ``target_tokens``, or is too
        small or flat to reduce by structure. Must not raise on any text."""
        ...


def marker(what: str, expand_id: str | None) -> str:
    """The one marker format: ``[promptzip: WHAT; expand ID]`` (``[promptzip: WHAT]`` without an id)."""
    return f"[promptzip: {what}; expand {expand_id}]" if expand_id else f"[promptzip: {what}]"


def omitted(lines: int) -> str:
    return f"{lines} line{'' if lines == 1 else 's'} omitted"


# -- dispatch --------------------------------------------------------------------------------------------------------
def _names(kinds: Sequence[str] | None) -> list[str]:
    from promptzip._registry import registries

    known = registries.reducers.names()
    names = [k for k in ORDER if k in known] + [k for k in known if k not in ORDER]
    if kinds is None:
        return names
    wanted = {k.lower() for k in kinds}
    unknown = sorted(wanted - set(known))
    if unknown:
        raise ConfigError(f"unknown reducer kind(s) {', '.join(unknown)}; known: {', '.join(names)}")
    return [n for n in names if n in wanted]


def _reducer(name: str) -> Reducer:
    from promptzip._registry import registries

    made: Reducer = registries.reducers.create(name)
    return made


def reduce_structured(
    text: str,
    *,
    query: str | None,
    target_tokens: int,
    count: Count,
    relevance: Relevance | None = None,
    expand_id: str,
    kinds: Sequence[str] | None = None,
) -> Reduced | None:
    """Cut ``text`` to ``target_tokens`` by its structure with the first reducer (json, html, code, log, plug-ins;
    only ``kinds`` if given) that answers with something shorter than ``text``. None when ``text`` already fits or
    no reducer applies. Never raises on any ``text``; a bad ``target_tokens`` or unknown kind is an error."""
    if not isinstance(text, str):
        raise InputError(f"text must be str, not {type(text).__name__}")
    if isinstance(target_tokens, bool) or not isinstance(target_tokens, int) or target_tokens < 0:
        raise InputError(f"target_tokens must be a non-negative int, not {target_tokens!r}")
    names = _names(kinds)
    if not text.strip():
        return None
    tokens_in = count(text)
    if tokens_in <= target_tokens:
        return None

    def counted(s: str) -> int:  # the input is counted once, however many reducers ask
        return tokens_in if s is text else count(s)

    for name in names:
        out = _reducer(name).reduce(
            text, query=query, target_tokens=target_tokens, count=counted, relevance=relevance, expand_id=expand_id
        )
        if out is not None and out.tokens < tokens_in:
            return out
    return None


def detect_kind(text: str) -> str | None:
    """The kind of ``text`` (``"json"``, ``"html"``, ``"code"``, ``"log"``, a plug-in's), or None; cheap: no
    reduction is run, only each reducer's ``detect`` in :func:`reduce_structured`'s order."""
    if not isinstance(text, str) or not text.strip():
        return None
    for name in _names(None):
        reducer = _reducer(name)
        detect: Callable[[str], bool] | None = getattr(reducer, "detect", None)
        if detect is not None and detect(text):
            return reducer.kind
    return None


_BUILTINS = {  # kind: (module, class, help)
    "json": ("tool_json", "JsonReducer", "JSON arrays: relevant items + a summary of the rest"),
    "html": ("tool_html", "HtmlReducer", "HTML: text content, headings, relevant blocks"),
    "code": ("tool_code", "CodeReducer", "code: signatures + relevant bodies, never re-indented"),
    "log": ("tool_logs", "LogReducer", "logs: errors, warnings and context; repeats folded"),
}


def register_reducers(registries: Any) -> None:
    """Register the built-in reducers; each module is imported on first use."""

    def factory(module: str, name: str) -> Callable[..., Any]:
        def make(**kw: Any) -> Any:
            return getattr(importlib.import_module(f"promptzip.compressors.{module}"), name)(**kw)

        return make

    for kind, (module, name, help) in _BUILTINS.items():
        registries.reducers.register(kind, factory(module, name), help=help)


# -- relevance -------------------------------------------------------------------------------------------------------
_WORD = re.compile(r"\w+")
_PART = re.compile(r"[^\W_]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])[A-Z][a-z]+")
_STOP = frozenset(
    "a an and are as at be by can do does for from has have how i in is it its me my not of on or show that the "
    "their there this to was what when where which who why will with you".split()
)


def _terms(text: str) -> list[str]:
    low = text.lower()
    # whole words and identifiers, their snake_case parts, and the later parts of camelCase names
    return _WORD.findall(low) + _PART.findall(low) + [p.lower() for p in _CAMEL.findall(text)]


def query_terms(query: str) -> set[str]:
    """The words of ``query`` that lexical relevance matches (identifiers and their parts, no stop words)."""
    return {t for t in _terms(query) if t not in _STOP}


def matched_terms(text: str, wanted: set[str]) -> set[str]:
    """Which of ``wanted`` (:func:`query_terms`) ``text`` holds."""
    return wanted.intersection(_terms(text))


def lexical_relevance(texts: Sequence[str], query: str) -> list[float]:
    """BM25 (k1 = 1.2, b = 0.75) of each text for ``query``'s words, with the idf taken over ``texts``."""
    wanted = query_terms(query)
    if not wanted or not texts:
        return [0.0] * len(texts)
    lengths: list[int] = []
    tfs: list[Counter[str]] = []
    for text in texts:
        terms = _terms(text)
        lengths.append(len(terms))
        tfs.append(Counter(t for t in terms if t in wanted))
    n = len(texts)
    avg = max(sum(lengths) / n, 1.0)
    df = Counter(t for tf in tfs for t in tf)
    idf = {t: math.log(1.0 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in df}
    scores = []
    for tf, length in zip(tfs, lengths, strict=True):
        norm = 1.2 * (0.25 + 0.75 * length / avg)
        scores.append(sum(idf[t] * f * 2.2 / (f + norm) for t, f in tf.items()))
    return scores


def relevance_scores(texts: Sequence[str], query: str | None, relevance: Relevance | None) -> list[float]:
    """One finite score per text: zeros without a query, the caller's ``relevance`` or the lexical fallback."""
    if not query or not query.strip() or not texts:
        return [0.0] * len(texts)
    scores = list((relevance or lexical_relevance)(texts, query))
    if len(scores) != len(texts):
        raise ConfigError(f"relevance returned {len(scores)} scores for {len(texts)} texts")
    return [float(s) if math.isfinite(s) else 0.0 for s in scores]


# -- choosing within a budget ------------------------------------------------------------------------------------------
def rank(scores: Sequence[float], tiers: Sequence[int] | None = None) -> list[int]:
    """Indices by (tier ascending, score descending, position): a deterministic order of preference."""
    return sorted(range(len(scores)), key=lambda i: (tiers[i] if tiers is not None else 0, -scores[i], i))


def greedy(
    order: Sequence[int],
    cost: Callable[[int], int],
    budget: int,
    *,
    take: Callable[[int], None] | None = None,
    patience: int = 64,
) -> list[int]:
    """Take units in ``order`` while their estimated ``cost`` fits ``budget``; costs are asked lazily, and the
    search stops after ``patience`` units in a row that do not fit (a 5 MB array is not counted item by item)."""
    picked: list[int] = []
    left = budget
    misses = 0
    for i in order:
        if left <= 0:
            break
        c = cost(i)
        if c <= left:
            picked.append(i)
            left -= c
            misses = 0
            if take is not None:
                take(i)
        else:
            misses += 1
            if misses >= patience:
                break
    return picked


def fit_prefix(
    picked: Sequence[int], render: Callable[[Sequence[int]], str], count: Count, target: int
) -> tuple[str, int, int]:
    """``(text, k, tokens)`` for the longest prefix ``picked[:k]`` whose rendering fits ``target`` (estimates are
    only estimates: the rendering is counted, and a binary search drops the least preferred units until it fits).
    When not even ``picked[:0]`` fits, that minimal rendering is returned anyway: the caller owns the budget."""
    text = render(picked)
    tokens = count(text)
    if tokens <= target:
        return text, len(picked), tokens
    lo, hi = 0, len(picked) - 1
    best: tuple[str, int, int] | None = None
    while lo <= hi:
        mid = (lo + hi) // 2
        t = render(picked[:mid])
        n = count(t)
        if n <= target:
            best, lo = (t, mid, n), mid + 1
        else:
            hi = mid - 1
    if best is not None:
        return best
    text = render(picked[:0])
    return text, 0, count(text)


# -- line plans: which lines stay, one marker per omitted stretch ---------------------------------------------------
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


def split_lines(text: str) -> list[str]:
    """Lines with their endings (``\\n``, ``\\r\\n``, ``\\r``: Python's own): ``"".join`` gives ``text`` back."""
    return _LINE.findall(text)


def indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t\f"))]


def _eol(line: str) -> str:
    return line[len(line.rstrip("\r\n")) :]


@dataclass(frozen=True, slots=True)
class LineUnit:
    """Lines ``first..last`` (0-based, inclusive) kept or cut together."""

    first: int
    last: int
    text: str  # what relevance is scored on
    tier: int  # lower tiers are preferred


@dataclass
class LinePlan:
    """Which lines of a text always stay (``must``), which go or stay together (``units``), and where a marker
    replacing an omitted stretch goes: at the indentation ``start`` gives the stretch's first unit, as
    ``{indent}{comment} [promptzip: N lines omitted]``. Lines of no unit (blank lines, comments between
    statements) go with the line after them. ``silent`` lines (the middle of a docstring whose first and closing
    lines stay) get no marker of their own: their count joins the next marker, or one placed right after the
    ``closes`` line that ends them. The first marker of a rendering names the expand id."""

    lines: list[str]
    comment: str  # how a marker line starts: "...  #" or "//"
    must: list[bool]
    start: list[str | None]
    silent: list[str | None]  # the indentation of the marker that counts them
    closes: list[bool]
    units: list[LineUnit] = field(default_factory=list)
    defs: list[tuple[int, int]] = field(default_factory=list)  # definitions' line ranges (units_in, units_kept)

    @classmethod
    def empty(cls, lines: list[str], comment: str) -> LinePlan:
        n = len(lines)
        return cls(lines, comment, [False] * n, [None] * n, [None] * n, [False] * n)

    def unit(self, first: int, last: int, text: str, tier: int, indent: str | None = None) -> None:
        if first <= last:
            self.units.append(LineUnit(first, last, text, tier))
            self.start[first] = indent_of(self.lines[first]) if indent is None else indent

    def keep(self, units: Sequence[LineUnit]) -> list[bool]:
        keep = self.must[:]
        covered = self.must[:]
        for u in self.units:
            covered[u.first : u.last + 1] = [True] * (u.last + 1 - u.first)
        for u in units:
            keep[u.first : u.last + 1] = [True] * (u.last + 1 - u.first)
        follow = True
        for i in reversed(range(len(keep))):
            if not covered[i]:
                keep[i] = follow
            follow = keep[i]
        return keep

    def render(self, units: Sequence[LineUnit], expand_id: str) -> str:
        keep, lines, out = self.keep(units), self.lines, []
        pending, pending_indent, i, n = 0, "", 0, len(self.lines)
        named = [False]  # the first marker names the expand id; the others say only what they cut

        def note(indent: str, size: int, eol: str) -> str:
            ref = None if named[0] else expand_id
            named[0] = True
            return f"{indent}{self.comment} {marker(omitted(size), ref)}{eol}"

        while i < n:
            if keep[i]:
                out.append(lines[i])
                if pending and self.closes[i] and (i + 1 >= n or keep[i + 1]):
                    eol = _eol(lines[i])
                    out.append(("" if eol else "\n") + note(pending_indent, pending, eol))
                    pending = 0
                i += 1
                continue
            j, indent = i, None
            while j < n and not keep[j]:
                indent = indent if indent is not None else self.start[j]
                j += 1
            silent = [self.silent[k] for k in range(i, j)]
            if all(s is not None for s in silent):
                pending, pending_indent = pending + j - i, silent[0] or ""
            else:
                out.append(note(indent if indent is not None else "", j - i + pending, _eol(lines[j - 1])))
                pending = 0
            i = j
        return "".join(out)
