"""A chunk's sentences and clauses, and the text of chosen sentences stitched back together from the chunk.

:func:`chunk_sentences` splits chunks into sentence chunks (remembered per chunk when given a memo);
:func:`clause_spans` cuts a sentence at its punctuation; :func:`stitch` joins chosen sentences with the original
text between adjacent ones and returns the parts a token count adds up from; :class:`Joiner` does the same for one
chunk with each sentence's parts made once, remembering the stitched sets it was asked for.

Sentences that are not adjacent are joined by a space, or by a line break where the text is lines (the kept
sentence before ends its line and this one starts its own: rows, log lines, list items), so kept rows stay rows.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

from promptzip._split import sentence_spans
from promptzip._tokenizers import TextMemo, Tokenizer
from promptzip._types import Chunk, Span

__all__ = ["STITCHED", "Joiner", "adjacent", "chunk_sentences", "clause_spans", "stitch"]


def chunk_sentences(
    chunks: Sequence[Chunk], memo: TextMemo[tuple[Chunk, ...]] | None = None
) -> tuple[list[Chunk], list[int]]:
    """The sentences of the chunks that are not protected, and the index of each one's chunk. With ``memo``, a
    chunk's sentences are the ones made for an equal chunk before (immutable, and a function of its text, offset and
    source): a warm request makes none, and its sentences' texts come with their hashes computed."""
    sentences: list[Chunk] = []
    owner: list[int] = []
    for ci, chunk in enumerate(chunks):
        if chunk.protected:
            continue
        key = f"{chunk.start}|{len(chunk.source_id)}|{chunk.source_id}{chunk.text}" if memo is not None else ""
        found = memo.get(key) if memo is not None else None
        if found is None:
            text, sid, start = chunk.text, chunk.source_id, chunk.start
            found = tuple(Chunk(text[a:b], sid, start + a, start + b) for a, b in sentence_spans(text))
            if memo is not None:
                memo.put(key, found)
        sentences.extend(found)
        owner.extend([ci] * len(found))
    return sentences, owner


_CLAUSE_BREAK = re.compile(r"[,;:]\s+|\s+[-–—]{1,2}\s+|\s*[()]\s*")


def clause_spans(text: str, *, min_chars: int = 32) -> list[tuple[int, int]]:
    """Clauses of a sentence as ``(start, end)`` offsets: the pieces between commas, semicolons, colons, dashes
    and parentheses, trimmed; a piece shorter than ``min_chars`` is merged with the next one (the last with the
    one before), so no clause is a stray fragment. A sentence without breaks is one clause."""
    raw: list[list[int]] = []
    pos = 0
    for m in _CLAUSE_BREAK.finditer(text):
        raw.append([pos, m.start()])
        pos = m.end()
    raw.append([pos, len(text)])
    spans = [[a, b] for a, b in raw if text[a:b].strip()]
    merged: list[list[int]] = []
    for a, b in spans:
        if merged and merged[-1][1] - merged[-1][0] < min_chars:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    if len(merged) > 1 and merged[-1][1] - merged[-1][0] < min_chars:
        last = merged.pop()
        merged[-1][1] = last[1]
    out: list[tuple[int, int]] = []
    for a, b in merged:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if b > a:
            out.append((a, b))
    return out


STITCHED = 48


class Joiner:
    """:func:`stitch` for the sentences of one chunk, with each sentence's parts made once: a chunk's variants
    reuse its sentences, and the same part strings let the tokenizer's memo find their counts by hash at once."""

    __slots__ = ("_stitched", "chunk", "closes", "ends", "gaps", "lined", "opens", "spaced", "starts", "texts")

    def __init__(self, chunk: Chunk, sentences: list[Chunk]) -> None:
        self.chunk = chunk
        self.texts = [s.text for s in sentences]
        self.spaced = [" " + t for t in self.texts]
        self.lined = ["\n" + t for t in self.texts]
        # whether each sentence starts its line (only blanks before it on the line) and ends its line
        self.opens = [_line_edge(chunk.text[: s.start - chunk.start][::-1]) for s in sentences]
        self.closes = [_line_edge(chunk.text[s.end - chunk.start :]) for s in sentences]
        self.starts = [s.start for s in sentences]
        self.ends = [s.end for s in sentences]
        # gaps[p]: sentence p with the original text since sentence p - 1 when only whitespace lies between
        self.gaps: list[str | None] = [None]
        for a, b in itertools.pairwise(sentences):
            joined = adjacent(chunk, a.end, b.start)
            self.gaps.append(chunk.text[a.end - chunk.start : b.end - chunk.start] if joined else None)
        self._stitched: dict[tuple[tuple[int, ...], str], tuple[str, tuple[Span, ...], int]] = {}

    def stitched(self, positions: tuple[int, ...], tokenizer: Tokenizer) -> tuple[str, tuple[Span, ...], int]:
        """:meth:`stitch` with the text's token count, remembered per positions and tokenizer (at most
        :data:`STITCHED` sets per chunk: the variants a chunk gets over many questions). No lock: a race between
        threads can only lose an entry, since a value is a function of its key."""
        key = (positions, tokenizer.fingerprint)
        found = self._stitched.get(key)
        if found is None:
            text, kept, parts = self.stitch(list(positions))
            found = (text, kept, tokenizer.count_joined(parts))
            if len(self._stitched) >= STITCHED:
                self._stitched.clear()
            self._stitched[key] = found
        return found

    def stitch(self, positions: list[int]) -> tuple[str, tuple[Span, ...], list[str]]:
        """The text of the sentences at ``positions`` (increasing), their kept spans and parts, as :func:`stitch`
        describes them; each sentence's parts were made once, in :meth:`__init__`."""
        chunk = self.chunk
        spans: list[list[int]] = []
        parts: list[str] = []
        previous = -2
        for p in positions:
            gap: str | None = None
            if p == previous + 1:
                gap = self.gaps[p]
            elif spans and adjacent(chunk, spans[-1][1], self.starts[p]):
                gap = chunk.text[spans[-1][1] - chunk.start : self.ends[p] - chunk.start]
            if gap is not None:
                parts.append(gap)
                spans[-1][1] = self.ends[p]
            else:
                if not spans:
                    parts.append(self.texts[p])
                else:
                    lines = self.opens[p] and self.closes[previous]
                    parts.append(self.lined[p] if lines else self.spaced[p])
                spans.append([self.starts[p], self.ends[p]])
            previous = p
        return "".join(parts), tuple(Span(a, b) for a, b in spans), parts


def stitch(chunk: Chunk, chosen: list[Chunk]) -> tuple[str, tuple[Span, ...], list[str]]:
    """Text of the chosen sentences cut from the chunk: adjacent ones with the original text between them,
    others joined by a space. Returns the text, the kept source spans (merged) and the text's parts, one per
    sentence with what joins it to the one before (``"".join(parts) == text``), for
    :meth:`~promptzip._tokenizers.Tokenizer.count_joined`: a sentence is counted once, whatever it is joined to."""
    return Joiner(chunk, chosen).stitch(list(range(len(chosen))))


def _line_edge(rest: str) -> bool:
    """Whether ``rest`` (the text after a sentence, or the text before it reversed) reaches a line break, or the
    chunk's edge, through blanks only."""
    stripped = rest.lstrip(" \t")
    return not stripped or stripped[0] in "\r\n"


def adjacent(chunk: Chunk, end: int, start: int) -> bool:
    return not chunk.text[end - chunk.start : start - chunk.start].strip()
