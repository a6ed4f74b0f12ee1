"""Word-level pruning from per-word keep scores, shared by every token scorer (classifier, self-information).

A text is cut into *units*: whitespace-separated runs, with leading and trailing punctuation split off
(``"(Paris),"`` → ``(``, ``Paris``, ``),``) so a scorer can drop a comma without the word before it. Scorers return
one score per unit (:class:`~promptzip.TokenScores`); :func:`prune_scores` keeps the best units at a rate, a token
target or a probability threshold, and cuts the output **from the original text by offsets** — it never
detokenizes, so case, Unicode and the spelling inside kept words survive, and no two words are merged:

* two kept units that were neighbours keep the original text between them;
* where units were removed between them, they are joined by one space, by a line break when the removed stretch
  held one (line structure, speaker turns and Markdown survive), or by nothing when the next unit is punctuation
  that was attached to the removed word (``tower Paris,`` → ``tower,``).

Force-keep rules (applied before the budget, so they are never traded away): numbers and anything with a digit,
IDs (``AB-1234``, ``#93``, ``@user``, all-caps codes), URLs, e-mail addresses, code identifiers (``snake_case``,
``camelCase``, ``dotted.names``, ``call(``), speaker labels at line starts (``Alice:``, ``Dr. Smith:``) and the
caller's own tokens. Forced units are kept even when they alone exceed the target.

Utility of a pruned text is the sum of its kept units' scores (scores are keep-probabilities in [0, 1]).

Token scorers and their cache live in :mod:`promptzip.compressors.token_scores`; the compressors that put pruning
into the pipeline in :mod:`promptzip.compressors.token_prune`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from promptzip._errors import ConfigError
from promptzip._tokenizers import Tokenizer
from promptzip._types import Span, TokenScores
from promptzip.compressors._runs import FUNCTION_WORDS, run_select, sentence_segments

__all__ = [
    "BoolArray",
    "FloatArray",
    "IntArray",
    "Pruned",
    "assemble_units",
    "fact_density",
    "forced_mask",
    "greedy_select",
    "group_tokens",
    "mark_spans",
    "phrase_groups",
    "prune_scores",
    "tidy_mask",
    "unit_costs",
    "word_units",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_RUN = re.compile(r"\S+")
_LEAD = "([{\"'“‘«¿¡<"
_TRAIL = ")]}\"'”’».,;:!?…>"
_ABBREVIATION = re.compile(r"(?:[^\W\d_]\.){2,}")
_PUNCT_ONLY = re.compile(r"[^\w]+")
# Every alternative can only start at the beginning of a word (look-behinds), so a 200k-character "word" costs
# linear time, never quadratic backtracking.
_FORCED = re.compile(
    r"(?:https?|ftp)://\S+|(?<!\S)www\.\S+"  # URLs
    r"|(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+"  # e-mail addresses
    r"|[#@$]\w+"  # #93, @user, $HOME
    r"|(?<!\w)\w*\d\w*"  # numbers, and any word with a digit (AB-1234, 3rd, v2)
    r"|(?<![\w.])\w+(?:[._]\w+)+"  # snake_case, dotted.names
    r"|\b[a-z]+[A-Z]\w*"  # camelCase
    r"|\b[A-Z]{2,}\b"  # all-caps codes and acronyms
    r"|(?<!\w)\w+(?=\()"  # call(
)


# Facts a reader cannot infer from the rest of a text: URLs, e-mail addresses, amounts, dates, times, phone numbers
# and IDs (a run of digits with its separators, or a word joined to digits). A list number ("1.") or a capitalised
# heading is not one.
_FACT = re.compile(
    r"(?:https?|ftp)://\S+|(?<!\S)www\.\S+"
    r"|(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
    r"|(?<![\w$€£])[$€£]?\d[\d,.:/-]*\d"
    r"|(?<!\w)[A-Za-z]+[-_]?\d[\w-]*"
)


def fact_density(texts: Sequence[str]) -> np.ndarray:
    """How many distinct facts each text states (``log(1 + n)``; :data:`_FACT`: URLs, e-mails, amounts, dates,
    phone numbers, IDs): an invoice line scores high, boilerplate and headings low. Query-less selection mixes it
    into centrality (``ExtractiveCompressor.fact_weight``), so the one line that differs is not dropped for it."""
    return np.asarray([math.log1p(len({m.group() for m in _FACT.finditer(t)})) for t in texts], dtype=np.float64)


_SPEAKER = re.compile(r"^[ \t]*[^\W\d_][\w.'’-]*(?:[ \t]+[^\W\d_][\w.'’-]*){0,2}:(?=\s|$)", re.MULTILINE)


def word_units(text: str) -> tuple[IntArray, IntArray]:
    """Start and end offsets of the units of ``text`` (see the module docstring); whitespace is in no unit."""
    starts: list[int] = []
    ends: list[int] = []
    for m in _RUN.finditer(text):
        a, b = m.span()
        run = m.group()
        lead = len(run) - len(run.lstrip(_LEAD))
        trail = len(run) - len(run.rstrip(_TRAIL))
        if lead + trail >= len(run):  # punctuation only: one unit
            starts.append(a)
            ends.append(b)
            continue
        if trail and run[-1] == "." and _ABBREVIATION.fullmatch(run, lead, len(run) - trail + 1):
            trail -= 1  # "U.S." keeps its final period
        if lead:
            starts.append(a)
            ends.append(a + lead)
        starts.append(a + lead)
        ends.append(b - trail)
        if trail:
            starts.append(b - trail)
            ends.append(b)
    return np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)


def mark_spans(starts: IntArray, ends: IntArray, spans: Iterable[tuple[int, int]]) -> BoolArray:
    """Units that overlap any of ``spans`` (vectorized: one searchsorted per side, a cumulative sum)."""
    pairs = np.asarray(list(spans), dtype=np.int64).reshape(-1, 2)
    n = len(starts)
    if not n or not len(pairs):
        return np.zeros(n, dtype=bool)
    lo = np.searchsorted(ends, pairs[:, 0], side="right")
    hi = np.searchsorted(starts, pairs[:, 1], side="left")
    ok = hi > lo
    marks = np.zeros(n + 1, dtype=np.int64)
    np.add.at(marks, lo[ok], 1)
    np.add.at(marks, hi[ok], -1)
    return np.cumsum(marks[:n]) > 0


def forced_mask(
    text: str,
    starts: IntArray,
    ends: IntArray,
    *,
    force_tokens: Sequence[str] = (),
    extra: Iterable[tuple[int, int]] = (),
) -> BoolArray:
    """Units that must survive pruning: the built-in rules, ``force_tokens`` (whole words, or any occurrence for
    tokens that are not words, such as ``"?"``) and the ``extra`` character spans (Markdown structure, say)."""
    spans: list[tuple[int, int]] = [m.span() for m in _FORCED.finditer(text)]
    spans.extend(m.span() for m in _SPEAKER.finditer(text) if all(w[0].isupper() for w in m.group().split()))
    spans.extend(extra)
    words = [t for t in force_tokens if t and t.strip()]
    if words:
        alternatives = "|".join(
            rf"(?<!\w){re.escape(t.strip())}(?!\w)" if re.search(r"\w", t) else re.escape(t.strip())
            for t in sorted(words, key=len, reverse=True)
        )
        spans.extend(m.span() for m in re.finditer(alternatives, text))
    return mark_spans(starts, ends, spans)


def group_tokens(
    starts: IntArray,
    ends: IntArray,
    token_starts: IntArray,
    token_ends: IntArray,
    values: FloatArray,
    *,
    how: str = "mean",
) -> FloatArray:
    """Aggregate per-token ``values`` onto units by character offsets, for any tokenizer.

    A token belongs to the first unit it overlaps (a leading space in the token is skipped); a unit that no
    token starts in (a comma merged into the word token before it) takes the value of the token covering it.
    ``how``: ``"mean"`` (keep-probabilities) or ``"sum"`` (self-information: the bits of the unit).
    """
    n = len(starts)
    out = np.zeros(n, dtype=np.float64)
    if not n:
        return out
    values = np.asarray(values, dtype=np.float64)
    token_starts = np.asarray(token_starts, dtype=np.int64)
    token_ends = np.asarray(token_ends, dtype=np.int64)
    real = token_ends > token_starts
    token_starts, token_ends, values = token_starts[real], token_ends[real], values[real]
    unit = np.searchsorted(ends, token_starts, side="right")
    inside = unit < n
    inside[inside] &= starts[unit[inside]] < token_ends[inside]
    unit, vals = unit[inside], values[inside]
    sums = np.bincount(unit, weights=vals, minlength=n)
    counts = np.bincount(unit, minlength=n)
    has = counts > 0
    out[has] = sums[has] / counts[has] if how == "mean" else sums[has]
    if (~has).any() and len(token_starts):
        # units without a token of their own: the token that covers their first character
        order = np.argsort(token_starts, kind="stable")
        ts, te, tv = token_starts[order], token_ends[order], values[order]
        j = np.searchsorted(ts, starts[~has], side="right") - 1
        covered = (j >= 0) & (te[np.maximum(j, 0)] > starts[~has])
        fill = np.where(covered, tv[np.maximum(j, 0)], 0.0)
        out[~has] = fill if how == "mean" else fill * 0.5
    return out


def phrase_groups(text: str, starts: IntArray, ends: IntArray, *, max_words: int = 4) -> IntArray:
    """A phrase id per unit: phrases end at punctuation, line breaks and function words, and hold at most
    ``max_words`` units (a light, dependency-free stand-in for Selective Context's noun phrases)."""
    n = len(starts)
    ids = np.zeros(n, dtype=np.int64)
    phrase = 0
    size = 0
    for i in range(n):
        word = text[starts[i] : ends[i]]
        gap = text[ends[i - 1] : starts[i]] if i else ""
        boundary = (
            i == 0
            or size >= max_words
            or "\n" in gap
            or bool(_PUNCT_ONLY.fullmatch(word))
            or bool(_PUNCT_ONLY.fullmatch(text[starts[i - 1] : ends[i - 1]]))
            or word.lower() in FUNCTION_WORDS
        )
        if boundary and i:
            phrase += 1
            size = 0
        ids[i] = phrase
        size += 1
    return ids


# --------------------------------------------------------------------------------------------------- pruning


@dataclass(frozen=True, slots=True, eq=False)
class Pruned:
    """A pruned text: ``kept`` are character spans of the scored text (shifted by ``offset``); ``mask`` marks the
    kept units; ``tokens`` is exact when a tokenizer was given (else the number of kept units)."""

    text: str
    kept: tuple[Span, ...]
    mask: BoolArray
    tokens: int
    utility: float
    forced: int


def assemble_units(
    text: str, starts: IntArray, ends: IntArray, mask: BoolArray, offset: int
) -> tuple[str, tuple[Span, ...]]:
    idx = np.flatnonzero(mask)
    if not len(idx):
        return "", ()
    # runs of consecutive kept units are copied verbatim; runs are joined by a separator
    breaks = np.flatnonzero(np.diff(idx) > 1)
    run_first = np.concatenate(([idx[0]], idx[breaks + 1]))
    run_last = np.concatenate((idx[breaks], [idx[-1]]))
    parts: list[str] = []
    spans: list[Span] = []
    for k, (f, last) in enumerate(zip(run_first.tolist(), run_last.tolist(), strict=True)):
        a, b = int(starts[f]), int(ends[last])
        if k:
            prev = int(run_last[k - 1])
            gap = text[int(ends[prev]) : a]
            if "\n" in gap:
                parts.append("\n\n" if re.search(r"\n[ \t\r\f\v]*\n", gap) else "\n")
            elif a > 0 and not text[a - 1].isspace() and _PUNCT_ONLY.fullmatch(text[a : int(ends[f])]):
                parts.append("")
            else:
                parts.append(" ")
        parts.append(text[a:b])
        spans.append(Span(a + offset, b + offset))
    return "".join(parts), tuple(spans)


def prune_scores(
    scores: TokenScores,
    *,
    rate: float | None = None,
    target_tokens: int | None = None,
    threshold: float | None = None,
    tokenizer: Tokenizer | None = None,
    within: BoolArray | None = None,
    forced: BoolArray | None = None,
    force_tokens: Sequence[str] = (),
    offset: int = 0,
    min_run: int = 1,
    min_words: int = 1,
) -> Pruned:
    """Keep the best-scoring units of ``scores.text`` by exactly one of:

    * ``rate``: the kept fraction of the text's tokens (of the units ``within``, when given);
    * ``target_tokens``: at most this many tokens (exact in ``tokenizer``; forced units may exceed it);
    * ``threshold``: every unit whose keep-probability is at least this (LLMLingua #150).

    Units are taken by descending score (ties: earlier first) until the next does not fit. ``within`` limits the
    candidates (a variant's sentences); ``forced`` overrides the built-in force-keep rules. ``min_run`` > 1 keeps
    runs of at least that many words per sentence, and a sentence that keeps anything keeps ``min_words`` words
    (:func:`~promptzip.compressors._runs.run_select`), so the output reads as phrases rather than word salad.
    """
    if min_run < 1 or min_words < 1:
        raise ConfigError(f"min_run and min_words must be ≥ 1, got {min_run} and {min_words}")
    if sum(x is not None for x in (rate, target_tokens, threshold)) != 1:
        raise ConfigError("give exactly one of rate=, target_tokens= or threshold=")
    if rate is not None and not (0.0 < rate <= 1.0):
        raise ConfigError(f"rate is the kept fraction and must be in (0, 1], got {rate}")
    if target_tokens is not None and target_tokens < 0:
        raise ConfigError(f"target_tokens must be ≥ 0, got {target_tokens}")
    text = scores.text
    starts = np.asarray(scores.starts, dtype=np.int64)
    ends = np.asarray(scores.ends, dtype=np.int64)
    values = np.asarray(scores.scores, dtype=np.float64)
    n = len(starts)
    candidates = np.ones(n, dtype=bool) if within is None else np.asarray(within, dtype=bool)
    force = forced_mask(text, starts, ends, force_tokens=force_tokens) if forced is None else forced
    force = force & candidates
    segments = sentence_segments(text, starts, ends, candidates) if min_run > 1 or min_words > 1 else None
    if threshold is not None and segments is None:
        mask = candidates & ((values >= threshold) | force)
        return _finish(text, starts, ends, values, mask, force, tokenizer, offset)
    costs = unit_costs(text, starts, ends, tokenizer)
    if threshold is not None:  # as much as the threshold would keep, in runs
        target = int(costs[candidates & ((values >= threshold) | force)].sum())
    elif target_tokens is None:
        assert rate is not None
        total = (
            int(costs[candidates].sum())
            if tokenizer is None
            else _exact_total(text, starts, ends, candidates, tokenizer)
        )
        target = math.floor(rate * total)
    else:
        target = target_tokens

    def select(budget: int) -> BoolArray:
        if segments is None:
            return greedy_select(values, costs, candidates, force, budget)
        return run_select(
            text, starts, ends, values, costs, segments, force, budget, min_run=min_run, min_words=min_words
        )

    mask = select(target)
    result = _finish(text, starts, ends, values, mask, force, tokenizer, offset)
    # the joined text may tokenize a little longer than the sum of its units: tighten until it fits
    budget = target
    for _ in range(12):
        if tokenizer is None or result.tokens <= target or not (mask & ~force).any():
            break
        budget -= max(1, result.tokens - target)
        mask = select(budget)
        result = _finish(text, starts, ends, values, mask, force, tokenizer, offset)
    return result


def _exact_total(text: str, starts: IntArray, ends: IntArray, candidates: BoolArray, tokenizer: Tokenizer) -> int:
    joined, _ = assemble_units(text, starts, ends, candidates, 0)
    return tokenizer.count(joined)


def unit_costs(text: str, starts: IntArray, ends: IntArray, tokenizer: Tokenizer | None) -> IntArray:
    """Tokens of each unit on its own (with a leading space), counting each distinct unit once."""
    if tokenizer is None:
        return np.ones(len(starts), dtype=np.int64)
    words = [text[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
    distinct = list(dict.fromkeys(words))
    counts = dict(zip(distinct, tokenizer.count_many([" " + w for w in distinct]), strict=True))
    return np.fromiter((counts[w] for w in words), dtype=np.int64, count=len(words))


def greedy_select(
    values: FloatArray, costs: IntArray, candidates: BoolArray, force: BoolArray, target: int
) -> BoolArray:
    mask = force.copy()
    room = target - int(costs[force].sum())
    open_ = np.flatnonzero(candidates & ~force)
    if room <= 0 or not len(open_):
        return mask
    order = open_[np.argsort(-values[open_], kind="stable")]
    fits = np.cumsum(costs[order]) <= room
    stop = int(np.argmin(fits)) if not fits.all() else len(order)
    mask[order[:stop]] = True
    return mask


def tidy_mask(text: str, starts: IntArray, ends: IntArray, mask: BoolArray, force: BoolArray) -> BoolArray:
    """Punctuation split off a word goes with it: a trailing ``,`` or ``)`` only when the word before it is kept,
    a leading ``(`` only when the word after it is kept (no ``Alice:)`` junk)."""
    n = len(starts)
    if n < 2:
        return mask
    glued = np.flatnonzero(starts[1:] == ends[:-1])  # unit glued+1 touches unit glued
    if not len(glued):
        return mask
    mask = mask.copy()
    for i in glued.tolist():
        left, right = text[starts[i] : ends[i]], text[starts[i + 1] : ends[i + 1]]
        orphan = mask[i + 1] and not mask[i] and not force[i + 1] and _PUNCT_ONLY.fullmatch(right)
        if orphan and (not left or left[-1] not in _LEAD):
            mask[i + 1] = False
        if mask[i] and not mask[i + 1] and not force[i] and _PUNCT_ONLY.fullmatch(left) and left[-1] in _LEAD:
            mask[i] = False
    return mask


def _finish(
    text: str,
    starts: IntArray,
    ends: IntArray,
    values: FloatArray,
    mask: BoolArray,
    force: BoolArray,
    tokenizer: Tokenizer | None,
    offset: int,
) -> Pruned:
    mask = tidy_mask(text, starts, ends, mask, force)
    out, spans = assemble_units(text, starts, ends, mask, offset)
    tokens = tokenizer.count(out) if tokenizer is not None else int(mask.sum())
    return Pruned(out, spans, mask, tokens, float(values[mask].sum()), int(force.sum()))
