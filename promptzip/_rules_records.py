"""Records in a context block: documents that each open with a header line of their own, the name the model cites them
by (RAGFlow's ``---`` then ``ID: 3``, ``Document 2:``, Onyx's ``DOCUMENT 1: Handbook``, ``Source #4``, ``[5]`` alone
on its line). Read as plain context, a header line is a short sentence the selection may drop while its document's
text is kept, which then reads as the document before it and is cited by that one's name. So each record is a
document element (its header is the tag): the header goes out whenever any of its text does, and leaves with it
otherwise. Lines before the first header that name the records' source (RAGFlow's ``Document: a.pdf`` and ``Relevant
fragments as following:``) wrap them all the same way.

Only a block that holds two headers or more, written alike, is read so: one line that looks like a header is a
document's own.
"""

from __future__ import annotations

import re

from promptzip._rules import LABEL, MAX_LEAD_CHARS, heading_end, strip_span, trim_end

__all__ = ["record_block", "recorded"]

_NAMES = r"(?:document|doc|source|passage|chunk|snippet|excerpt|result|reference|citation|record|context)"
# A name after the number, on the header's line (Onyx's "DOCUMENT 1: Employee handbook"): short, and no sentence, so
# a document written on the header's line ("Source 1: The harbour was dredged in 1871.") is not taken for one.
_TITLE = r"[ \t]+[^\n]{1,80}?(?<![.!?])"
_HEADER = re.compile(
    r"^[ \t]*(?:-{3,}[ \t]*\n[ \t]*)?"  # a short rule above the header (RAGFlow's "---")
    rf"(?:(?:chunk[ \t]+)?id[ \t]*:[ \t]*\d+|{_NAMES}[ \t]*(?:#[ \t]*)?\d+[ \t]*(?:[.)]|:(?:{_TITLE})?)?"
    r"|\[\d+\]|\(\d+\))"
    r"[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
# Lines before the first header that introduce the records (a file name, "Relevant fragments as following:") are
# short; a longer lead is a document of its own, left as it was.
_MAX_LEAD_CHARS = 200
Spans = list[tuple[int, int]]
Elements = list[tuple[int, int, Spans]]


def record_block(text: str, *, trailing_question: bool = False) -> Spans:
    """A text whose documents are records and nothing else marks them (Onyx's ``DOCUMENT 1: Handbook`` over a
    ``Source: Web`` line, which the heading rule would take for a ``Source:`` heading): from the first header near the
    start, up to a label (``Question:``) or the end, less the template's closing words (and, with
    ``trailing_question``, a short question after them, as the heading rule gives up)."""
    headers = list(_HEADER.finditer(text))
    if len(headers) < 2 or headers[0].start() > MAX_LEAD_CHARS or len({_form(m.group(0)) for m in headers}) > 1:
        return []
    start = strip_span(text, headers[0].start(), headers[0].end())[0]
    lines = [m.start() for m in re.finditer(r"^", text[:start], re.MULTILINE)]
    if any(heading_end(text, pos, start) is not None for pos in lines):
        return []  # a context heading before them: the heading rule reads what it heads, the records inside
    label = LABEL.search(text, headers[-1].end())
    s, e = strip_span(text, start, len(text) if label is None else label.start())
    e = trim_end(text, s, e, asks=trailing_question and label is None)
    return [(s, e)] if s < e else []


def recorded(text: str, spans: Spans) -> tuple[Spans, Elements]:
    """``spans`` with each block of records split into the records' texts, and the records (and the lines that lead
    them) as elements: (start, end, the context spans inside)."""
    out: Spans = []
    elements: Elements = []
    for a, b in spans:
        found = _records(text, a, b)
        if found is None:
            out.append((a, b))
            continue
        lead, records = found
        bodies: Spans = []
        for start, body in records:
            if body is not None:
                bodies.append(body)
                elements.append((start, body[1], [body]))
        out += bodies
        if lead is not None and bodies:
            elements.append((lead, bodies[-1][1], list(bodies)))
    return out, elements or _headed_spans(text, out)


# A header over a span another rule found, with the fence that opens it (Onyx's "DOCUMENT 1:\n```\n…\n```"), and
# the fence that closes it.
_ABOVE = re.compile(rf"(?:\A|\n)(?P<head>{_HEADER.pattern[1:-1]}[ \t]*\n(?:[ \t]*```[^\n`]*\n)?)\s*\Z", re.I)
_BELOW = re.compile(r"\s*\n[ \t]*```[ \t]*(?=\n|\Z)|")


def _headed_spans(text: str, spans: Spans) -> Elements:
    """Spans that each stand under a header line of their own, outside them (two or more, written alike): each with
    its header and fences is an element."""
    found: list[tuple[int, int, str]] = []
    prev = 0
    for a, b in spans:
        above = _ABOVE.search(text, prev, a)
        if above is None:
            return []
        below = _BELOW.match(text, b)
        found.append((above.start("head"), b + (below.end() - b if below else 0), _form(above.group("head"))))
        prev = b
    if len(found) < 2 or len({form for _, _, form in found}) > 1:
        return []
    return [(start, end, [span]) for (start, end, _), span in zip(found, spans, strict=True)]


def _records(text: str, a: int, b: int) -> tuple[int | None, list[tuple[int, tuple[int, int] | None]]] | None:
    """The lead's start (``None`` without one) and each record's (start, its text's span), or ``None``."""
    headers = list(_HEADER.finditer(text, a, b))
    if len(headers) < 2 or len({_form(m.group(0)) for m in headers}) > 1:
        return None
    first = headers[0].start()
    lead = strip_span(text, a, first)
    if lead[0] < lead[1] and (lead[1] - lead[0] > _MAX_LEAD_CHARS or "\n\n" in text[lead[0] : lead[1]]):
        return None  # a document before the headers, not a line that names them
    records: list[tuple[int, tuple[int, int] | None]] = []
    for k, m in enumerate(headers):
        end = headers[k + 1].start() if k + 1 < len(headers) else b
        s, e = strip_span(text, m.end(), end)
        records.append((strip_span(text, m.start(), m.end())[0], (s, e) if s < e else None))
    return (lead[0] if lead[0] < lead[1] else None), records


def _form(header: str) -> str:
    """A header as its kind: the name and punctuation before any title, digits and spacing left out."""
    return re.sub(r"[\d \t]+", "", header.strip().lower().partition(":")[0])
