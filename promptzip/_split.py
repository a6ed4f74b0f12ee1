"""Splitting: sources → chunks (paragraphs, protected regions) → sentences, always keeping character offsets.

Protected regions are found before anything else:

* ``<pz keep>…</pz>`` marks text that must survive verbatim; ``<pz rate=0.3>…</pz>`` records a per-region rate in
  the chunk's metadata. Tags nest; they are removed from the output. An unbalanced or malformed tag is an
  :class:`InputError` that gives its character position.
* Markdown code fences (```` ``` ```` or ``~~~``) are kept whole.

A warm request splits the text it split before: :func:`chunk_source` and :func:`sentence_spans` (with its default
``max_chars``) remember the splits of recent texts (:class:`~promptzip._tokenizers.TextMemo`, keyed by the text).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from promptzip._errors import InputError
from promptzip._reflow import soft_breaks
from promptzip._tokenizers import TextMemo
from promptzip._types import Chunk

__all__ = ["Segment", "chunk_source", "literal_tags", "parse_tags", "sentence_spans"]

_TAG = re.compile(r"<(/?)pz(?=[\s>/])([^<>]*)>", re.IGNORECASE)
_ATTR = re.compile(r"\s*([a-z_]+)(?:\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s\"'>]+))?", re.IGNORECASE)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})[^\n]*$", re.MULTILINE)
_BOUNDARY = re.compile(r"([.!?;。！？]+[\"'”’)\]]*)(\s+)|\s*\n\s*")
_LAST_WORD = re.compile(r"([\w.'’-]+)$")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt ft vs etc e.g i.e cf al fig figs no nos vol vols pp ed eds approx inc"
    " ltd co corp jan feb mar apr jun jul aug sep sept oct nov dec gen gov sen rep rev lt col capt sgt"
    " cmdr adm u.s u.k u.n a.m p.m ph.d b.a m.a d.c".split()
)
_SENTENCE_CHARS = 1200
_Piece = tuple[int, int, str, float | None]  # a chunk's (start, end, kind, rate); protected unless a paragraph
_sentences: TextMemo[tuple[tuple[int, int], ...]] = TextMemo(max_chars=2_000_000)
_pieces: TextMemo[tuple[_Piece, ...]] = TextMemo(max_chars=2_000_000)


@dataclass(frozen=True, slots=True)
class Segment:
    """Text between two ``<pz>`` tags, with the attributes of the tags around it."""

    start: int
    end: int
    keep: bool
    rate: float | None


def parse_tags(text: str) -> list[Segment]:
    """Split ``text`` at ``<pz …>``/``</pz>`` tags; segments exclude the tags themselves."""
    segments: list[Segment] = []
    stack: list[tuple[int, bool, float | None]] = []  # (tag position, keep, rate)
    pos = 0
    for m in _TAG.finditer(text):
        keep = any(s[1] for s in stack)
        rate = next((s[2] for s in reversed(stack) if s[2] is not None), None)
        if m.start() > pos:
            segments.append(Segment(pos, m.start(), keep, rate))
        pos = m.end()
        if m.group(1):  # closing tag
            if m.group(2).strip():
                span = f"position {m.start()} (length {m.end() - m.start()})"
                raise InputError(f"malformed closing <pz> tag at {span}", position=m.start())
            if not stack:
                raise InputError(f"</pz> at position {m.start()} closes no open <pz> tag", position=m.start())
            stack.pop()
            continue
        stack.append((m.start(), *_attributes(m.group(2), m.start())))
    if stack:
        where = stack[-1][0]
        raise InputError(f"<pz> tag at position {where} is never closed with </pz>", position=where)
    if pos < len(text):
        segments.append(Segment(pos, len(text), False, None))
    return segments


def literal_tags(text: str) -> list[tuple[int, int]]:
    """For a text whose tags do not parse (:func:`parse_tags` raises): the spans to keep verbatim, in order and
    disjoint. Such tags are the text's own (a user asking about the string ``</pz>``), so every tag is kept as it is;
    and a well-formed ``<pz keep>`` is still honoured (what it encloses, up to its ``</pz>`` or else to the end of
    the text), since dropping what a user marked to keep would be the worse mistake."""
    spans: list[tuple[int, int]] = []
    stack: list[tuple[int, bool]] = []  # (tag position, keep) of the open well-formed tags
    for m in _TAG.finditer(text):
        spans.append((m.start(), m.end()))
        if m.group(1):
            if stack and not m.group(2).strip():
                start, keep = stack.pop()
                if keep:
                    spans.append((start, m.end()))
            continue
        try:
            keep, _ = _attributes(m.group(2), m.start())
        except InputError:
            continue  # not promptzip's markup: plain text
        stack.append((m.start(), keep))
    spans += [(start, len(text)) for start, keep in stack if keep]
    merged: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def _attributes(raw: str, position: int) -> tuple[bool, float | None]:
    keep, rate = False, None
    raw = raw.strip().rstrip("/")
    for m in _ATTR.finditer(raw):
        if not m.group(0).strip():
            continue
        name, value = m.group(1).lower(), m.group(2)
        if name == "keep" and value is None:
            keep = True
        elif name == "rate" and value is not None:
            try:
                rate = float(value.strip("\"'"))
            except ValueError:
                rate = -1.0
            if not 0.0 < rate <= 1.0:
                raise InputError(f"<pz rate=…> at position {position} needs a rate in (0, 1]", position=position)
        else:
            # The attribute is not quoted: the text may be a user's, and error messages end up in logs.
            raise InputError(f"unknown attribute in the <pz> tag at position {position}", position=position)
    consumed = "".join(m.group(0) for m in _ATTR.finditer(raw)).strip()
    if consumed.replace(" ", "") != raw.replace(" ", ""):
        raise InputError(f"malformed <pz> tag at position {position}", position=position)
    return keep, rate


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _hard_split(text: str, start: int, end: int, max_chars: int) -> Iterator[tuple[int, int]]:
    """Split an over-long span at whitespace near ``max_chars`` (or at ``max_chars`` when there is none)."""
    while end - start > max_chars:
        cut = text.rfind(" ", start + max_chars // 2, start + max_chars)
        cut = cut if cut > start else start + max_chars
        a, b = _trim(text, start, cut)
        if b > a:
            yield a, b
        start = cut
        start, end = _trim(text, start, end)
    if end > start:
        yield start, end


def _is_boundary(text: str, punct_start: int, next_start: int) -> bool:
    if next_start < len(text) and text[next_start].islower():
        return False
    if text[punct_start] != ".":
        return True
    word = _LAST_WORD.search(text, max(0, punct_start - 24), punct_start)
    if word is None:
        return True
    w = word.group(1).lower().rstrip(".")
    return not (w in _ABBREVIATIONS or (len(w) == 1 and w.isalpha()))


def sentence_spans(
    text: str, start: int = 0, end: int | None = None, *, max_chars: int = _SENTENCE_CHARS
) -> list[tuple[int, int]]:
    """Sentence spans of ``text[start:end]`` as absolute offsets, trimmed; none longer than ``max_chars``.

    A line break ends a sentence, except inside hard-wrapped prose (:func:`promptzip._reflow.soft_breaks`), where
    it is read as a space; a sentence then spans its original lines, newlines included."""
    end = len(text) if end is None else end
    if start or end != len(text) or max_chars != _SENTENCE_CHARS:
        return _sentence_spans(text, start, end, max_chars)
    found = _sentences.get(text)
    if found is None:
        found = tuple(_sentence_spans(text, 0, end, max_chars))
        _sentences.put(text, found)
    return list(found)


def _sentence_spans(text: str, start: int, end: int, max_chars: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    cur = start
    soft = soft_breaks(text, start, end) if "\n" in text[start:end] else frozenset()
    for m in _BOUNDARY.finditer(text, start, end):
        # A line break that only wraps hard-wrapped prose is read as a space: sentences, not lines, are the units.
        wrap = m.group(0).count("\n") == 1 and m.start() + m.group(0).index("\n") in soft
        if m.group(1) is None:
            if wrap:
                continue
            stop, nxt = m.start(), m.end()
        else:
            stop, nxt = m.end(1), m.end()
            # A line break ends a sentence even after an abbreviation, as it does without the period.
            if ("\n" not in m.group(2) or wrap) and not _is_boundary(text, m.start(1), nxt):
                continue
        a, b = _trim(text, cur, stop)
        if b > a:
            spans.extend(_hard_split(text, a, b, max_chars))
        cur = nxt
    a, b = _trim(text, cur, end)
    if b > a:
        spans.extend(_hard_split(text, a, b, max_chars))
    return spans


def _fenced(text: str, start: int, end: int) -> Iterator[tuple[int, int, bool]]:
    """Yield (start, end, is_code) pieces of ``text[start:end]``; an unclosed fence runs to the end."""
    pos = start
    opened: re.Match[str] | None = None
    for m in _FENCE.finditer(text, start, end):
        if opened is None:
            opened = m
        elif m.group(1)[0] == opened.group(1)[0] and len(m.group(1)) >= len(opened.group(1)):
            if opened.start() > pos:
                yield pos, opened.start(), False
            yield opened.start(), m.end(), True
            pos, opened = m.end(), None
    if opened is not None:
        if opened.start() > pos:
            yield pos, opened.start(), False
        yield opened.start(), end, True
    elif pos < end:
        yield pos, end, False


def chunk_source(text: str, source_id: str, *, max_chunk_chars: int = 2000, lenient_tags: bool = False) -> list[Chunk]:
    """Chunks of one source: protected regions whole, other text by paragraph (long ones in sentence windows).
    With ``lenient_tags``, a text whose tags do not parse is read as having none (they are its own words), not an
    InputError."""
    key = f"{max_chunk_chars}|{int(lenient_tags)}|{text}"
    pieces = _pieces.get(key)
    if pieces is None:
        pieces = tuple(_pieces_of(text, max_chunk_chars, lenient_tags))
        _pieces.put(key, pieces)
    chunks: list[Chunk] = []
    metas: dict[tuple[str, float | None], dict[str, object]] = {}
    for a, b, kind, rate in pieces:
        meta = metas.get((kind, rate))
        if meta is None:  # one metadata dict per kind and rate, shared by their chunks as the split shares it
            meta = metas[(kind, rate)] = {"kind": kind, **({"rate": rate} if rate is not None else {})}
        chunks.append(Chunk(text[a:b], source_id, a, b, meta, protected=kind != "paragraph"))
    return chunks


def _pieces_of(text: str, max_chunk_chars: int, lenient_tags: bool = False) -> Iterator[_Piece]:
    try:
        segments = parse_tags(text)
    except InputError:
        if not lenient_tags:
            raise
        segments = [Segment(0, len(text), False, None)]  # its tags are its own words, cut like the rest of it
    for seg in segments:
        for a, b, code in _fenced(text, seg.start, seg.end):
            if seg.keep or code:
                a, b = _trim(text, a, b)
                if b > a:
                    yield a, b, "keep" if seg.keep else "code", None
                continue
            for start, end in _paragraph_spans(text, a, b, max_chunk_chars):
                yield start, end, "paragraph", seg.rate


def _paragraph_spans(text: str, start: int, end: int, max_chars: int) -> Iterator[tuple[int, int]]:
    pos = start
    breaks = [(m.start(), m.end()) for m in _PARAGRAPH_BREAK.finditer(text, start, end)]
    for stop, nxt in [*breaks, (end, end)]:
        a, b = _trim(text, pos, stop)
        pos = nxt
        if b <= a:
            continue
        if b - a <= max_chars:
            yield a, b
            continue
        window_start = window_end = -1
        for s, e in sentence_spans(text, a, b, max_chars=max_chars):
            if window_start >= 0 and e - window_start > max_chars:
                yield window_start, window_end
                window_start = -1
            if window_start < 0:
                window_start = s
            window_end = e
        if window_start >= 0:
            yield window_start, window_end
