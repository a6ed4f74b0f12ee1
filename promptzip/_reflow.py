"""Hard-wrapped prose: which single line breaks are soft (a wrap inside a sentence) rather than structure.

Licences, RFCs, e-mails and PDF extractions break every paragraph at 60-80 characters. Splitting such text at each
line break yields line fragments, so :func:`soft_breaks` finds the breaks that are only wraps and the sentence
splitter reads them as spaces; the text itself is never changed, so every offset still points into the original.

A block (lines between blank lines) counts as wrapped prose only when it looks like it: at least two lines, a
wrap width of 40+ characters, most lines filling that width, most lines not ending a sentence, continuation lines
mostly starting in lower case and sharing one indentation, and nothing that marks structure (list items, table
rows, headings, quotes, aligned columns, code-like symbol density, records whose lines mostly open with the same two
words, numbers aside). Lists, tables, code, addresses, headers, records and poems keep their line breaks.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter

__all__ = ["soft_breaks"]

_STRUCTURE = re.compile(
    r"""^\s*(?:
        [-*+•◦‣▪–—]\s                  # bullets
      | \(?(?:\d{1,3}|[a-zA-Z]|[ivxlcIVXLC]{1,5})[.)]\s   # 1. a) (iv)
      | \#{1,6}\s                      # markdown headings
      | >                              # quotes (e-mail replies, markdown)
      | \|                             # table rows
      | [=\-_*]{3,}\s*$                # rules and setext underlines
      | [A-Z][\w-]*:\s                 # header fields and labels (From:, Note:)
    )""",
    re.VERBOSE,
)
_NOT_PROSE_START = re.compile(r"^\s*(?:\#{1,6}\s|>|\|)")  # a heading, quote or table row on the first line
_COLUMNS = re.compile(r"\S {3,}\S|\t")
_SYMBOLS = re.compile(r"[{}\[\]<>=;$\\|_`]")
_SENTENCE_END = re.compile(r"[.!?:;。！？][\"'”’)\]]*$")
_DIGITS = re.compile(r"\d+")
_MIN_WIDTH = 40
_FULL = 0.6  # a line at least this share of the wrap width fills it


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _is_wrapped(lines: list[str], width: int) -> bool:
    """Whether ``lines`` (non-blank, of a block whose longest line has ``width`` characters) are a hard-wrapped
    paragraph."""
    if len(lines) < 2:
        return False
    body = [line.strip() for line in lines]
    if width < _MIN_WIDTH:
        return False  # addresses, short poems, signatures
    if _NOT_PROSE_START.match(lines[0]) or any(_STRUCTURE.match(line) for line in lines[1:]):
        return False  # a list item may open the block (its text wraps below it); nothing else may
    if any(_COLUMNS.search(b) for b in body):
        return False
    text = " ".join(body)
    if len(_SYMBOLS.findall(text)) > 0.04 * len(text):
        return False  # code or data
    if len({_indent(line) for line in lines[1:]}) > 1:
        return False  # varying indentation: code, nested structure
    if len(body) >= 3:
        # records, one per line ("order 12: shipped to …", "user 7 logged in from …"): most lines open alike
        opening = Counter(_DIGITS.sub("#", " ".join(b.split()[:2])) for b in body).most_common(1)[0][1]
        if opening > 0.5 * len(body):
            return False
    heads = body[:-1]
    if sum(len(b) >= _FULL * width for b in heads) < 0.75 * len(heads):
        return False  # lines of random lengths: intentional breaks
    if sum(bool(_SENTENCE_END.search(b)) for b in heads) > 0.5 * len(heads):
        return False  # one sentence (or clause) per line
    upper = sum(b[:1].isupper() for b in body[1:])
    return upper <= 0.5 * (len(body) - 1) if len(body) > 2 else upper == 0 or len(body[0]) >= _FULL * 80


def soft_breaks(text: str, start: int = 0, end: int | None = None) -> frozenset[int]:
    """Positions of the ``\\n`` characters in ``text[start:end]`` that only wrap a line of prose."""
    end = len(text) if end is None else end
    soft: set[int] = set()
    block: list[tuple[int, str]] = []  # (position of the line's first character, line without "\r")
    pos = start
    while pos <= end:
        nl = text.find("\n", pos, end)
        stop = end if nl < 0 else nl
        line = text[pos:stop].rstrip("\r")
        if line.strip():
            block.append((pos, line))
        else:
            soft.update(_block_soft(text, block))
            block = []
        if nl < 0:
            break
        pos = nl + 1
    soft.update(_block_soft(text, block))
    return frozenset(soft)


def _block_soft(text: str, block: list[tuple[int, str]]) -> list[int]:
    """The soft breaks of one block. A line shorter than the wrap width ends what it closes (a paragraph, a
    sign-off), so the block is judged in pieces that each end at such a line."""
    if len(block) < 2:
        return []
    width = max(len(line.strip()) for _, line in block)
    out: list[int] = []
    piece: list[tuple[int, str]] = []
    for pos, line in block:
        piece.append((pos, line))
        if len(line.strip()) < _FULL * width or (pos, line) == block[-1]:
            if _is_wrapped([ln for _, ln in piece], width):
                # every line of the piece but its last fills the width: each break after one is a wrap, except
                # before a short capitalized closing line without punctuation ("Signed", "Best regards")
                last = piece[-1][1].strip()
                if last[:1].isupper() and len(last.split()) <= 3 and not _SENTENCE_END.search(last):
                    piece.pop()
                out.extend(text.rfind("\n", p, nxt) for (p, _), (nxt, _) in itertools.pairwise(piece))
            piece = []
    return [n for n in out if n >= 0]
