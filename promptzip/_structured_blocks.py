"""Structured data pasted inside a message: JSON, a log or HTML in a fenced block (or a bare JSON value on lines of
its own), among the words of a system or developer prompt, a user turn or a tool result.

"Here is the API response: ```json [...]``` Which orders are pending?" is one user message: request understanding
reads it as one question (or, in an earlier turn, as context whose fenced block the splitter keeps or drops whole),
so a large pasted array went out whole or not at all; in a system prompt that holds the data an assistant answers
from, a fenced block was context the splitter keeps whole, so the request could not be cut below it.
:func:`structured_blocks` finds such blocks and :func:`split_layout` cuts the message's layout around them, so each
block becomes a structured text of its own, cut by its reducer like a tool output (:mod:`promptzip._structured`),
while the words around it keep the regions understanding gave them (the question is still found in the whole text,
with the block in place). In the turn being answered, the words before the first block or after the last one,
when shorter than a block worth cutting, are the user's own about the data ("Find the orders that failed."): a
question, kept as it is, even where understanding read them as part of the data (a request with no question mark
after a lead-in such as "Here is the log:").

Only data is cut: a block fenced with a programming language, or whose text reads as code, stays as it was, and so
does a block shorter than :data:`~promptzip._structured.MIN_STRUCTURED_CHARS`.
"""

from __future__ import annotations

import bisect
import itertools
import json
import re
from dataclasses import replace

from promptzip._request_memo import request_memo
from promptzip._rules import strip_span
from promptzip._rules_query import label_free
from promptzip._structured import MIN_STRUCTURED_CHARS
from promptzip._understand import Element, Layout, Region

__all__ = ["BLOCK_ROLES", "Block", "split_layout", "structured_blocks"]

BLOCK_ROLES = ("system", "developer", "user", "tool", "function")
_KINDS = ("json", "log", "html")  # data; code is what a question is about, and stays whole
# the info words a data block may carry: none, its kind, or a plain-text one
_INFO = {"": None, "json": "json", "log": "log", "logs": "log", "html": "html", "text": None, "txt": None}
_INFO.update({"plaintext": None, "output": None})
# the info string is taken whole and stripped after: a lazy one before trailing blanks would retry a run of blanks
# at each of its characters
_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})([^\n]*)$", re.MULTILINE)
_BARE = re.compile(r"^[ \t]*[\[{]", re.MULTILINE)
_BARE_TRIES = 4  # line starts tried as a bare JSON value: each failed try may read the rest of the text


Block = tuple[int, int, int, int, str]  # the fenced span's start, the data's start and end, the fenced span's end, kind


def structured_blocks(text: str) -> list[Block]:
    """Each block of JSON, log or HTML in ``text``, in order: what a fence encloses (its closing line break left
    out), or a bare JSON array or object that fills its lines (no fence: the outer span is the data's). None when
    the text is one JSON value (a tool result: cut whole elsewhere) or too short to hold a block."""
    if len(text) < MIN_STRUCTURED_CHARS:
        return []
    # A request looks for its question first and plans after, reading each text twice; the reducers' detection
    # parses every candidate block, so the request's memo keeps what was found for the second read.
    memo = request_memo("structured.blocks")
    found: list[Block] | None = memo.get(text) if memo is not None else None
    if found is None:
        fenced, blocks = _fenced(text)
        found = sorted(blocks + [(a, a, b, b, kind) for a, b, kind in _bare(text, fenced)])
        if memo is not None:
            memo[text] = found
    return list(found)


def _fenced(text: str) -> tuple[list[tuple[int, int]], list[Block]]:
    """Every fenced block's span, and those that hold data with their kind. A fence closes at the next bare fence
    line of its character at least as long (CommonMark's rule)."""
    fences = [(m.start(), m.end(), m.group(1), m.group(2).strip()) for m in _FENCE.finditer(text)]
    unclosed: dict[str, int] = {}  # the shortest fence of each character found with no closing line after it
    spans: list[tuple[int, int]] = []
    data: list[Block] = []
    i = 0
    while i < len(fences):
        start, end, fence, info = fences[i]
        char, size = fence[0], len(fence)
        closing = None
        if ("`" not in info or char != "`") and size < unclosed.get(char, size + 1):
            # a later fence of this character with no closing line has none either, so each length is sought once
            closing = next(
                (j for j in range(i + 1, len(fences)) if not fences[j][3] and fences[j][2].startswith(fence)), None
            )
            if closing is None:
                unclosed[char] = size
        if closing is None:
            i += 1  # unclosed, or inline code on one line: not a block
            continue
        close_start, close_end = fences[closing][0], fences[closing][1]
        a, b = min(end + 1, close_start), close_start
        if b > a and text[b - 1] == "\n":
            b -= 1
        spans.append((start, close_end))
        word = info.split()[0].lower() if info.split() else ""
        if word in _INFO and b - a >= MIN_STRUCTURED_CHARS:
            kind = _kind(text[a:b])
            if kind is not None and _INFO[word] in (None, kind):
                data.append((start, a, b, close_end, kind))
        i = closing + 1
    return spans, data


def _bare(text: str, fenced: list[tuple[int, int]]) -> list[tuple[int, int, str]]:
    """Bare JSON arrays and objects on lines of their own, outside every fence, in a text that is not one."""
    stripped = text.strip()
    if stripped[:1] in ("[", "{") and stripped[-1:] in ("]", "}"):
        return []  # one JSON value, or meant to be (malformed): a tool result's treatment, not a block's
    decoder = json.JSONDecoder()
    out: list[tuple[int, int, str]] = []
    pos, tries, k = 0, 0, 0
    while tries < _BARE_TRIES and (m := _BARE.search(text, pos)) is not None:
        a = m.end() - 1
        while k < len(fenced) and fenced[k][1] <= a:
            k += 1
        if k < len(fenced) and fenced[k][0] <= a:  # inside a fenced block: what it holds is its own
            pos = fenced[k][1]
            continue
        tries += 1
        try:
            value, b = decoder.raw_decode(text, a)
        except (ValueError, RecursionError):
            pos = m.end()
            continue
        line_end = text.find("\n", b)
        rest = text[b : line_end if line_end >= 0 else len(text)]
        if isinstance(value, (list, dict)) and not rest.strip() and b - a >= MIN_STRUCTURED_CHARS:
            out.append((a, b, "json"))
        pos = b
    return out


def _kind(block: str) -> str | None:
    from promptzip.compressors.tool_outputs import detect_kind  # the reducers' readers: only for a likely block

    kind = detect_kind(block)
    return kind if kind in _KINDS else None


def split_layout(layout: Layout, blocks: list[Block], *, asking: bool = False) -> list[tuple[int, int, Layout | str]]:
    """The layout cut around ``blocks``: (start, end, piece) in order, where a piece is the layout of the text
    between two blocks (its regions clipped, a question's words recounted), a block's fence line (protected) or a
    block's kind. Blocks that lie in a document element or cross a protected region are left in place, and so are
    all of them in a text marked up with promptzip's tags (``<pz keep>``, ``<pz rate=…>``). With ``asking`` (the
    turn being answered), the context in the words before the first cut block or after the last is the question
    when those words are short (:func:`_asked`)."""
    if any(r.kind == "context" and r.rule == "pz" for r in layout.regions):
        return [(0, len(layout.text), layout)]  # the user's own tags pair up across the whole text: it stays one
    regions, elements = layout.regions, sorted(layout.elements, key=lambda el: el.start)
    ends = [r.end for r in regions]  # regions cover the text in order
    starts = [el.start for el in elements]
    reach = list(itertools.accumulate((el.end for el in elements), max))  # the furthest end of an element so far

    region_starts = [r.start for r in regions]

    def overlapping(a: int, b: int) -> range:
        first = bisect.bisect_right(ends, a)
        return range(first, bisect.bisect_left(region_starts, b, lo=first))

    def usable(block: Block) -> bool:
        a, b = block[0], block[3]
        k = bisect.bisect_left(starts, b)  # elements that start before the block ends
        if k and reach[k - 1] > a:
            return False
        return not any(regions[i].kind == "protected" for i in overlapping(a, b))

    end = len(layout.text)
    pieces: list[tuple[int, int, Layout | str]] = []
    pos = 0
    for outer_a, a, b, outer_b, kind in [*filter(usable, blocks), (end, end, end, end, "")]:
        if outer_a < pos:
            continue  # blocks do not overlap, but a bare value is never trusted to
        if outer_a > pos:
            span = elements[bisect.bisect_left(starts, pos) : bisect.bisect_left(starts, outer_a)]
            inside = [el for el in span if el.end <= outer_a]
            pieces.append((pos, outer_a, _segment(layout, pos, outer_a, overlapping(pos, outer_a), inside)))
        # the fence lines are kept as they are, whatever the block becomes
        pieces += _protected(layout.text, outer_a, a)
        if b > a:
            pieces.append((a, b, kind))
        pieces += _protected(layout.text, b, outer_b)
        pos = outer_b
    if asking and any(isinstance(piece, str) for _, _, piece in pieces):
        for n in {0, len(pieces) - 1}:  # the words before the first block and after the last
            a, b, piece = pieces[n]
            if isinstance(piece, Layout):
                pieces[n] = (a, b, _asked(piece))
    return pieces


def _asked(piece: Layout) -> Layout:
    """The words around the data in the turn being answered: shorter than a block worth cutting, they are the
    user's request about it, whatever understanding made of them with the block in place (a request without a
    question mark after "Here is the log:" reads as more of the pasted text); longer, they stay as they were."""
    if len(piece.text.strip()) >= MIN_STRUCTURED_CHARS or not piece.context:
        return piece
    regions = tuple(
        Region("question", r.start, r.end, "block", label_free(piece.text[r.start : r.end]))
        if r.kind == "context"
        else r
        for r in piece.regions
    )
    return replace(piece, regions=regions, elements=())


def _protected(text: str, s: int, e: int) -> list[tuple[int, int, Layout | str]]:
    return [(s, e, Layout(text[s:e], (Region("protected", 0, e - s, "fence"),)))] if e > s else []


def _segment(layout: Layout, s: int, e: int, indexes: range, elements: list[Element]) -> Layout:
    """``layout.text[s:e]`` with the regions ``indexes`` (those that overlap it) clipped to it, and the document
    elements that lie wholly in it."""
    text = layout.text[s:e]
    regions: list[Region] = []
    index: dict[int, int] = {}
    for i in indexes:
        r = layout.regions[i]
        a, b = max(r.start, s), min(r.end, e)
        if (a, b) == (r.start, r.end):
            index[i] = len(regions)
            regions.append(replace(r, start=a - s, end=b - s))
        else:
            regions += _clipped(text, r, a - s, b - s)
    kept = tuple(Element(el.start - s, el.end - s, tuple(index[i] for i in el.regions)) for el in elements)
    return Layout(text, tuple(regions), kept)


def _clipped(text: str, r: Region, a: int, b: int) -> list[Region]:
    """Part of region ``r``: a question's words are its part's, and a part with none (the fence line beside a cut
    block) is instruction; a context part keeps the blanks at its ends out of the context, as a region cut around
    a tag does."""
    if r.kind == "question":
        query = label_free(text[a:b])
        if not any(ch.isalnum() for ch in query):
            return [Region("instruction", a, b)]
        return [Region("question", a, b, r.rule, query)]
    if r.kind != "context":
        return [Region(r.kind, a, b, r.rule)]
    s, e = strip_span(text, a, b)
    if s >= e:
        return [Region("instruction", a, b)]
    out = [Region("instruction", a, s)] if s > a else []
    out.append(Region("context", s, e, r.rule))
    return out + ([Region("instruction", e, b)] if e < b else [])
