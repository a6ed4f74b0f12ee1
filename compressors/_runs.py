"""Run-level selection: pruning that keeps readable runs of words instead of scattered single words.

Word-by-word pruning (LLMLingua-2 style) reads as noise (``them if wish that receive source code or get it if``)
and can leave a sentence as one number. :func:`run_select` keeps *windows* of at least ``min_run`` consecutive
words of a segment (a sentence), best mean keep-score first, so every kept run is at least that long (or is the
whole segment when it is shorter); a segment that keeps anything keeps at least ``min_words`` words (or all of its
words). Forced units stay forced: each is kept inside the best window around it, never alone.
Punctuation glued to a window's edge words (``(``, ``),``, a final ``.``) goes with them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from promptzip._split import sentence_spans

__all__ = ["FUNCTION_WORDS", "run_select", "sentence_segments", "word_count"]

# the aliases of promptzip.compressors.pruning, which imports this module
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_PUNCT_ONLY = re.compile(r"[^\w]+")
FUNCTION_WORDS = frozenset(
    "a an the and or but nor of in on at to for from by with as is are was were be been being that which who whom"
    " whose this these those it its into onto than then so if".split()
)


def _words(text: str, starts: IntArray, ends: IntArray) -> BoolArray:
    return np.fromiter(
        (not _PUNCT_ONLY.fullmatch(text[a:b]) for a, b in zip(starts.tolist(), ends.tolist(), strict=True)),
        dtype=bool,
        count=len(starts),
    )


def word_count(text: str, starts: IntArray, ends: IntArray, mask: BoolArray) -> int:
    """Kept units that are words (not punctuation)."""
    return int((_words(text, starts, ends) & mask).sum())


def sentence_segments(text: str, starts: IntArray, ends: IntArray, candidates: BoolArray) -> list[tuple[int, int]]:
    """Unit index ranges ``[lo, hi)``: the sentences of ``text``, cut further wherever ``candidates`` is false, so
    a kept run never reaches across a sentence boundary or out of the candidates."""
    out: list[tuple[int, int]] = []
    for a, b in sentence_spans(text, max_chars=max(1, len(text))):
        lo, hi = int(np.searchsorted(starts, a, "left")), int(np.searchsorted(starts, b, "left"))
        inside = np.flatnonzero(candidates[lo:hi]) + lo
        if not len(inside):
            continue
        cuts = np.flatnonzero(np.diff(inside) > 1)
        firsts = np.concatenate(([inside[0]], inside[cuts + 1]))
        lasts = np.concatenate((inside[cuts], [inside[-1]]))
        out.extend((int(f), int(last) + 1) for f, last in zip(firsts, lasts, strict=True))
    return out


class _Segment:
    """The word positions of one segment and its windows (unit ranges, inclusive, glued punctuation added)."""

    def __init__(self, text: str, starts: IntArray, ends: IntArray, lo: int, hi: int, words: BoolArray) -> None:
        self.lo, self.hi = lo, hi
        self.word_idx = lo + np.flatnonzero(words[lo:hi])
        self.text, self.starts, self.ends = text, starts, ends

    def span(self, first_word: int, last_word: int) -> tuple[int, int]:
        # a run does not end on "the", "of", "that": it takes the words up to the next content word (two at most)
        for _ in range(2):
            if last_word + 1 >= len(self.word_idx) or not self._function_word(int(self.word_idx[last_word])):
                break
            last_word += 1
        a, b = int(self.word_idx[first_word]), int(self.word_idx[last_word])
        while a > self.lo and self.ends[a - 1] == self.starts[a] and not self._is_word(a - 1):
            a -= 1
        while b + 1 < self.hi and self.starts[b + 1] == self.ends[b] and not self._is_word(b + 1):
            b += 1
        return a, b

    def _function_word(self, i: int) -> bool:
        return self.text[int(self.starts[i]) : int(self.ends[i])].lower() in FUNCTION_WORDS

    def _is_word(self, i: int) -> bool:
        return not _PUNCT_ONLY.fullmatch(self.text[int(self.starts[i]) : int(self.ends[i])])


def run_select(
    text: str,
    starts: IntArray,
    ends: IntArray,
    values: FloatArray,
    costs: IntArray,
    segments: Sequence[tuple[int, int]],
    force: BoolArray,
    target: int,
    *,
    min_run: int = 3,
    min_words: int = 4,
) -> BoolArray:
    """A keep-mask over units: windows of ``min_run`` words from ``segments`` (unit index ranges ``[lo, hi)``),
    best mean score first, within ``target`` cost (forced units and their windows may exceed it)."""
    words = _words(text, starts, ends)
    mask = np.zeros(len(starts), dtype=bool)
    segs = [s for s in (_Segment(text, starts, ends, lo, hi, words) for lo, hi in segments) if len(s.word_idx)]
    windows: list[tuple[float, int, int, int]] = []  # (-mean score, first unit, last unit, segment)
    for k, seg in enumerate(segs):
        n = len(seg.word_idx)
        size = min(min_run, n)
        sums = np.concatenate(([0.0], np.cumsum(values[seg.word_idx])))
        for j in range(n - size + 1):
            a, b = seg.span(j, j + size - 1)
            windows.append((-(sums[j + size] - sums[j]) / size, a, b, k))
        for i in np.flatnonzero(force[seg.lo : seg.hi]).tolist():
            _keep_forced(seg, seg.lo + i, values, mask, max(size, min(min_words, n)))
    room = target - int(costs[mask].sum())
    for _, a, b, _k in sorted(windows):
        new = ~mask[a : b + 1]
        cost = int(costs[a : b + 1][new].sum())
        if new.any() and cost <= room:
            mask[a : b + 1] = True
            room -= cost
    for seg in segs:
        _fill_to_floor(seg, values, mask, min(min_words, len(seg.word_idx)))
    return mask


def _keep_forced(seg: _Segment, unit: int, values: FloatArray, mask: BoolArray, size: int) -> None:
    """Keep the best window of ``size`` words that holds the forced ``unit`` (punctuation: its nearest word)."""
    pos = int(np.searchsorted(seg.word_idx, unit))
    pos = min(pos, len(seg.word_idx) - 1)
    vals = values[seg.word_idx]
    best, best_j = -np.inf, 0
    for j in range(max(0, pos - size + 1), min(pos, len(seg.word_idx) - size) + 1):
        score = float(vals[j : j + size].sum())
        if score > best:
            best, best_j = score, j
    a, b = seg.span(best_j, best_j + size - 1)
    mask[min(a, unit) : max(b, unit) + 1] = True


def _fill_to_floor(seg: _Segment, values: FloatArray, mask: BoolArray, floor: int) -> None:
    """A segment that keeps some words keeps at least ``floor``: grow its runs by their best neighbouring word."""
    kept = mask[seg.word_idx]
    while 0 < int(kept.sum()) < floor:
        left = np.concatenate(([False], kept[:-1]))  # the word before is kept
        right = np.concatenate((kept[1:], [False]))
        grow = np.flatnonzero(~kept & (left | right))
        j = int(grow[np.argmax(values[seg.word_idx[grow]])])
        a, b = seg.span(j, j)
        # take what lies between the run and the new word too (a comma, a dash), so the run stays one piece
        a = min(a, int(seg.word_idx[j - 1]) + 1) if left[j] else a
        b = max(b, int(seg.word_idx[j + 1]) - 1) if right[j] else b
        mask[a : b + 1] = True
        kept[j] = True
