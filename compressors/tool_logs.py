"""Logs: keep errors, warnings and their context, fold repeated lines, mark what was cut.

1. **Fold.** A run of at least ``min_run`` consecutive lines that are equal once numbers, hex ids, UUIDs and
   timestamps are masked becomes its first line followed by ``  [promptzip: repeated N times]`` when the lines are
   identical, ``  [promptzip: N similar lines]`` when they differ in what was masked (N counts the whole run).
   A line of the run that holds a word of the query most of the run lacks (``id=137`` asked about among 400
   requests) is not folded: it stays a line of its own, and the lines around it fold as runs of their own.
2. **Keep, in this order of preference, within the target:** error lines (error, fatal, critical, panic,
   exception, traceback, failed, ``…Error``/``…Exception`` names) with their indented continuation (a traceback's
   frames, a Java stack); the first and the last line; 2 lines of context around each error; warnings; context
   around warnings; lines relevant to the query; then the rest, earliest first.
3. **Mark.** Each omitted stretch becomes one line ``[promptzip: 120 lines omitted]``. The first marker of the
   output (an omission or a fold) names the expand id, ``[promptzip: 120 lines omitted; expand pz-…]``: the id is
   the same for the whole output, and repeating it on every marker would cost ~10 tokens each.

Kept lines are the input's byte for byte (a folded one gains its marker at the end). A text is a log when at least
30 % of its non-blank lines carry a timestamp, a level word or a stack frame, or it holds a Python traceback.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from promptzip.compressors._json_text import parse_json
from promptzip.compressors.tool_outputs import (
    Count,
    Reduced,
    Relevance,
    fit_prefix,
    greedy,
    marker,
    matched_terms,
    omitted,
    query_terms,
    rank,
    relevance_scores,
)

__all__ = ["LogReducer", "fold_key", "looks_like_log"]

_TS = (
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2})?(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"
    r"|\b\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\b"
    r"|\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +\d{1,2} \d{2}:\d{2}:\d{2}\b"
)
_SIGNAL = re.compile(
    _TS + r"|\b(?:TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|ERR|FATAL|CRITICAL|CRIT|PANIC|SEVERE)\b"
    r"|\[(?:trace|debug|info|notice|warn|warning|error|fatal)\]|\blevel=\w+|^\s+at [\w$.<>]+\(|^\s+File \"",
)
_MASK = re.compile(
    _TS + r"|\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
    r"|\b0x[0-9a-fA-F]+\b|\b(?=[a-fA-F]*\d)[0-9a-fA-F]{8,}\b|\d+(?:\.\d+)*"
)
_ERROR = re.compile(
    r"(?<!\b0 )(?<!\bno )(?i:\b(?:errors?|err|fatal|critical|crit|panic|panicked|exception|traceback|failed"
    r"|failure|severe|emerg|alert|segfault|abort(?:ed)?)\b)|\w(?:Error|Exception)\b"
)
_WARN = re.compile(r"(?<!\b0 )(?<!\bno )(?i:\b(?:warn|warning|warnings|deprecated|deprecation)\b)")
_CONTINUED = re.compile(r"[ \t]+\S|Caused by:|\.\.\. \d+ more|During handling of|The above exception")
_MAX_CONTINUED = 60  # lines of one stack kept with its error
_CONTEXT = 2

# tiers of preference
_ERR, _EDGE, _ERR_CTX, _WARN_T, _WARN_CTX, _RELEVANT, _REST = range(7)


def fold_key(line: str) -> str:
    """The line with its numbers, hex ids, UUIDs and timestamps masked: equal keys fold."""
    return _MASK.sub("#", line)


def looks_like_log(text: str) -> bool:
    lines = [ln for ln in text.split("\n", 2000)[:2000] if ln.strip()]
    if len(lines) < 5:
        return False
    s = text.strip()
    if s[:1] in "{[" and s[-1:] in "}]" and parse_json(s)[0]:
        return False  # a JSON document is never cut line by line
    if "Traceback (most recent call last)" in text:
        return True
    return sum(1 for ln in lines if _SIGNAL.search(ln)) >= 0.3 * len(lines)


@dataclass(frozen=True, slots=True)
class _Entry:
    start: int  # first line
    size: int  # lines folded into it (1 when not folded)


def _fold(lines: Sequence[str], min_run: int, query: str | None) -> list[_Entry]:
    wanted = query_terms(query) if query else set()
    entries: list[_Entry] = []
    i = 0
    while i < len(lines):
        j = i + 1
        if lines[i].strip():
            key = fold_key(lines[i])
            while j < len(lines) and fold_key(lines[j]) == key:
                j += 1
        if j - i >= min_run:
            entries.extend(_runs(lines, i, j, min_run, wanted))
        else:
            entries.extend(_Entry(k, 1) for k in range(i, j))
        i = j
    return entries


def _runs(lines: Sequence[str], i: int, j: int, min_run: int, wanted: set[str]) -> list[_Entry]:
    """The run ``lines[i:j]`` as entries: folded, but for lines holding a query word that most of the run lacks
    (what the request asks about), which stay lines of their own between the folded stretches."""
    found = [matched_terms(lines[k], wanted) for k in range(i, j)] if wanted else []
    df = Counter(t for terms in found for t in terms)
    rare = {t for t, n in df.items() if 2 * n <= j - i}
    distinct = [i + n for n, terms in enumerate(found) if terms & rare]
    out: list[_Entry] = []
    at = i
    for k in [*distinct, j]:
        if k - at >= min_run:
            out.append(_Entry(at, k - at))
        else:
            out.extend(_Entry(m, 1) for m in range(at, k))
        if k < j:
            out.append(_Entry(k, 1))
        at = k + 1
    return out


def _tiers(firsts: Sequence[str], scores: Sequence[float]) -> list[int]:
    n = len(firsts)
    tiers = [_REST] * n
    errors = [bool(_ERROR.search(s)) for s in firsts]
    warns = [bool(_WARN.search(s)) for s in firsts]
    for i in range(n):
        if errors[i]:
            j = i + 1
            while j < n and j - i <= _MAX_CONTINUED and not errors[j] and _CONTINUED.match(firsts[j]):
                errors[j] = True  # a stack belongs to its error
                j += 1
    for i in range(n):
        if scores[i] > 0:
            tiers[i] = _RELEVANT
    for flags, tier, ctx in ((warns, _WARN_T, _WARN_CTX), (errors, _ERR, _ERR_CTX)):
        for i in range(n):
            if flags[i]:
                for j in range(max(0, i - _CONTEXT), min(n, i + _CONTEXT + 1)):
                    tiers[j] = min(tiers[j], ctx)
        for i in range(n):
            if flags[i]:
                tiers[i] = min(tiers[i], tier)
    for i in (0, n - 1):
        tiers[i] = min(tiers[i], _EDGE)
    return tiers


@dataclass(frozen=True, slots=True)
class LogReducer:
    """Logs: errors, warnings and their context kept, repeats folded, omitted stretches marked."""

    kind: str = "log"
    min_run: int = 3

    def detect(self, text: str) -> bool:
        return looks_like_log(text)

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
        if not looks_like_log(text) or count(text) <= target_tokens:
            return None
        lines = text.split("\n")
        end = ""
        if text.endswith("\n"):
            lines.pop()
            end = "\n"
        cr = "\r" if lines[0].endswith("\r") else ""
        entries = _fold(lines, self.min_run, query)
        firsts = [lines[e.start] for e in entries]
        scores = relevance_scores(firsts, query, relevance)
        order = rank(scores, _tiers(firsts, scores))

        identical = [
            e.size > 1 and all(lines[k] == lines[e.start] for k in range(e.start + 1, e.start + e.size))
            for e in entries
        ]

        def shown(i: int, ref: str | None) -> str:
            line, e = firsts[i], entries[i]
            if e.size == 1:
                return line
            body, tail = (line[:-1], "\r") if line.endswith("\r") else (line, "")
            what = f"repeated {e.size} times" if identical[i] else f"{e.size} similar lines"
            return f"{body}  {marker(what, ref)}{tail}"

        def gap(n: int, ref: str | None) -> str:
            return marker(omitted(n), ref) + cr

        def render(kept: Sequence[int]) -> str:
            out: list[str] = []
            at = 0
            ref: str | None = expand_id  # the first marker names the expand id, the others only what they cut
            for i in sorted(kept):
                if entries[i].start > at:
                    out.append(gap(entries[i].start - at, ref))
                    ref = None
                out.append(shown(i, ref))
                ref = ref if entries[i].size == 1 else None
                at = entries[i].start + entries[i].size
            if at < len(lines):
                out.append(gap(len(lines) - at, ref))
            return "\n".join(out) + end

        kept = [False] * len(entries)
        marker_cost = count(gap(len(lines), None))

        def cost(i: int) -> int:
            # one more stretch when both neighbours are cut, one fewer when both are kept
            left = i > 0 and not kept[i - 1]
            right = i < len(entries) - 1 and not kept[i + 1]
            return count(shown(i, None)) + 1 + (int(left) + int(right) - 1) * marker_cost

        def take(i: int) -> None:
            kept[i] = True

        picked = greedy(order, cost, target_tokens - marker_cost, take=take)
        out, k, tokens = fit_prefix(picked, render, count, target_tokens)
        return Reduced(out, "log", tokens, len(lines), k)
