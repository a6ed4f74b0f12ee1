"""Lines of dashes, for rule 4 of :func:`promptzip._understand.understand`: fences around the context, or separators
between documents.

LlamaIndex fences its context, the lines hugging what they enclose
(``Context information is below.\\n-----\\n{context_str}\\n-----\\nGiven …``); CrewAI and hand-written prompts put a
line between documents, a blank line either side (``doc1\\n\\n-----\\n\\ndoc2\\n\\n-----\\n\\ndoc3``), or hugging them
too (``[1] …\\n-----\\n[2] …\\n-----\\n[3] …``). Paired up as fences, such lines would make every other document
context, and an instruction between two of them too. So :func:`separated` reads each block on its own.

A block between two lines is context, less the template's words at either end of it
(:func:`promptzip._rules.is_directive`: an instruction, a question, a label, a cue; or a rule on the prompt's own parts
glued to a document's first or last line, :func:`promptzip._rules.glued_rules`), and nothing when it is all such
words. A post that asks (a forum thread's "Has anyone …?") reads as a question too; it is given back to the
documents when the turn asks its own question outside the lines (labelled, or after the last line) and the lines
separate other documents as well, unless it is the template's or points at the prompt's own parts ("these notes").

A block outside the lines joins the documents by what lies next to its line. Across a blank line, it gives the
paragraphs next to that line that read as a document: those of the first block after its last context heading
(``Context:``, CrewAI's ``This is the context you're working with:``) or after its last instruction or other line that
ends in a colon (``Rules:`` introduces no document), those of the last block before its first instruction, question,
label or line that ends in a colon. Hugging its line, it gives the lines next to it up to a heading (``Context:``, a
Markdown one; not a line that opens as the documents do, ``Source: a.txt``), a label, the template's words, a line
that points at the context (LlamaIndex's ``Context information is below.``) or a line that asks, and only when what
it gives looks like the documents between the lines: the same marker at its start (``[1]``, ``Document 2:``) or about
their length. One line alone separates no run of documents; it is left to the other rules. A last block after a
blank line that opens with the documents' marker (RAGFlow's ``Document: b.pdf``) is read as a block between two
lines is.
"""

from __future__ import annotations

import re

from promptzip._rules import (
    LABEL,
    MAX_LEAD_CHARS,
    QUESTION_LABELS,
    glued_rules,
    heading_end,
    is_directive,
    is_request,
    is_template,
    label_name,
    paragraphs,
    strip_span,
)
from promptzip._rules_lists import numbered_steps, part_rule

__all__ = ["separated"]

_DASHES = re.compile(r"^[ \t]*-{5,}[ \t]*$", re.MULTILINE)
# How a document opens when each one is marked: "[1]", "(2)", "3.", "Document 4:", "Source: …", a Markdown title;
# digits are compared as one.
_MARKER = re.compile(r"[ \t]*(\d{1,3}\.|#{1,6}(?=[ \t])|[^\n:\])]{0,30}[:\])])")
_MD_HEADING = re.compile(r"[ \t]*#{1,6}[ \t]")
# A short line that points at the context ("Context information is below.", "The sources are as follows") introduces
# it; a document line that merely says "below" is long, or names no part of a prompt.
_POINTER = re.compile(
    r"\b(?:context|information|documents?|sources?|passages?|notes|articles?|excerpts?|results)\b[^\n]{0,40}?"
    r"\b(?:below|above|as[ \t]+follows)\b|^[ \t]*(?:below|above)\b|\bthe[ \t]+following\b",
    re.IGNORECASE,
)
_POINTER_MAX_CHARS = 200
# An ask that is the template's, not a post's: a request to the model, or one that points at the prompt's own parts.
_TO_THE_MODEL = re.compile(
    r"^\s*(?:answer|explain|summari[sz]e|describe|list|tell|compare|name|find|give|based[ \t]+on|using|given|please|"
    r"now|question|respond|reply)\b|\b(?:these|those|above|below|following|provided)\b",
    re.IGNORECASE,
)
# An outer block hugging its line is about as long as the documents between the lines when it is at least this share
# of the shortest and at most the longest over this share.
_SIMILAR_LENGTH = 0.5


def separated(text: str) -> list[tuple[int, int]]:
    """The context spans that the lines of dashes in ``text`` fence or separate (the first line near the start)."""
    marks = list(_DASHES.finditer(text))
    if len(marks) < 2 or marks[0].start() > MAX_LEAD_CHARS:
        return []  # a line deep inside a long text is the text's own, not a delimiter around it
    bounds = [(marks[k - 1].end(), marks[k].start()) for k in range(1, len(marks))]
    inner = [_inner(text, *strip_span(text, a, b), posts=False) for a, b in bounds]
    docs = [span for span in inner if span is not None]
    head = _outer(text, 0, marks[0].start(), docs, first=True)
    tail = _outer(text, marks[-1].end(), len(text), docs, first=False)
    outside = [(0, head[0] if head else marks[0].start()), (tail[1] if tail else marks[-1].end(), len(text))]
    found = [span for span in (head, *inner, tail) if span is not None]
    if len(found) >= 2 and _asked_outside(text, outside):
        inner = [_inner(text, *strip_span(text, a, b), posts=True) for a, b in bounds]
    return [span for span in (head, *inner, tail) if span is not None]


def _outer(text: str, a: int, b: int, docs: list[tuple[int, int]], *, first: bool) -> tuple[int, int] | None:
    """The documents of the block before the first line (``first``) or after the last one."""
    s, e = strip_span(text, a, b)
    if s >= e:
        return None
    marker = _common_marker(text, docs)
    if not first and marker is not None and _marker(text, s) == marker and _blank(text[a:s]):
        # the last document after the last line and a blank one, opening as the others do (RAGFlow's "Document:
        # b.pdf"): read as a block between two lines is, the template's closing words after it given up
        return _inner(text, s, e, posts=False)
    if _blank(text[e:b] if first else text[a:s]):
        return _last_documents(text, s, e) if first else _first_documents(text, s, e)
    span = _hugging(text, s, e, first=first, marker=marker)
    return span if span is not None and _like(text, span, docs, marker) else None


def _blank(gap: str) -> bool:
    """Whether the white space between a line of dashes and the text beside it holds a blank line."""
    return gap.count("\n") >= 2


def _inner(text: str, s: int, e: int, *, posts: bool) -> tuple[int, int] | None:
    """A block between two lines, less the template's paragraphs at either end (with ``posts``, a post that asks is
    not one of them)."""
    paras = [(s + a, s + b) for a, b in paragraphs(text[s:e])]
    texts = [text[a:b] for a, b in paras]
    steps = numbered_steps(texts)

    read: dict[int, bool] = {}

    def given_up(k: int) -> bool:
        if k not in read:
            read[k] = _directive(texts[k], steps[k]) and not (posts and _post_that_asks(texts[k]))
        return read[k]

    def glued(k: int, *, at_end: bool) -> int | None:
        cut = glued_rules(text, *paras[k], at_end=at_end, items=not steps[k], whole=given_up(k))
        if cut is None and not at_end:
            cut = _headed_rules(text, *paras[k], items=not steps[k], whole=given_up(k))
        return cut

    def outside(k: int) -> bool:
        if _headed_rules(text, *paras[k]) == paras[k][1]:
            return True  # a heading and the rules under it, and nothing else
        # a document with a rule on the prompt's own parts glued to it gives up only those lines
        return given_up(k) and glued(k, at_end=False) is None and glued(k, at_end=True) is None

    first, last = 0, len(paras)
    while first < last and outside(first):
        first += 1
    while last > first and outside(last - 1):
        last -= 1
    if first >= last:
        return None
    a, b = glued(first, at_end=False), glued(last - 1, at_end=True)
    a, b = paras[first][0] if a is None else a, paras[last - 1][1] if b is None else b
    return (a, b) if a < b else None


def _directive(para: str, step: bool) -> bool:
    """Whether ``para`` is the template's words or asks; the wording of a document's numbered steps (``step``,
    :func:`promptzip._rules_lists.numbered_steps`: "3. Make sure …" after "2. Hold …") does not make it so."""
    return is_directive(para, items=not step)


def _post_that_asks(para: str) -> bool:
    """A paragraph that asks as a forum post does: it holds a question, and is neither the template's words nor a
    request to the model nor an ask about the prompt's own parts."""
    return "?" in para and not is_template(para) and _TO_THE_MODEL.search(para) is None


def _asked_outside(text: str, outside: list[tuple[int, int]]) -> bool:
    """Whether the turn asks its own question outside the lines' documents: a question label before or after them, or
    a line that asks after them."""
    for a, b in outside:
        if any(label_name(m) in QUESTION_LABELS for m in LABEL.finditer(text, a, b)):
            return True
    a, b = outside[-1]
    return any(_asks(text[p:q]) for p, q in _lines(text, a, b))


def _asks(line: str) -> bool:
    return line.rstrip().endswith("?") and is_request(line) and not is_template(line)


def _hugging(text: str, s: int, e: int, *, first: bool, marker: str | None) -> tuple[int, int] | None:
    """The lines of an outer block next to the line of dashes it hugs, up to a heading, a label, the template's words,
    a line that points at the context, or (what the turn asks) a line that asks. A line that opens with the
    documents' ``marker`` is no heading (``Source: a.txt`` reads as one)."""
    lines = [(a, b) for a, b in _lines(text, s, e) if text[a:b].strip()]
    steps = numbered_steps([text[a:b] for a, b in lines])
    edge = e if first else s
    for k in reversed(range(len(lines))) if first else range(len(lines)):
        a, b = lines[k]
        if marker is None or _marker(text, a) != marker:
            head = heading_end(text, a, b)
            if head is not None:
                edge = head if first else edge
                break
            if _MD_HEADING.match(text, a, b):
                break
        if _introduces(text, a, b, items=not steps[k]) or _asks(text[a:b]):
            break
        edge = a if first else b
    a, b = strip_span(text, edge, e) if first else strip_span(text, s, edge)
    return (a, b) if b > a else None


def _introduces(text: str, a: int, b: int, *, items: bool = True) -> bool:
    """A line that is the template's: a label, a cue or instruction (``items``: as
    :func:`promptzip._rules.is_template`), or a short line that points at the context."""
    line = text[a:b]
    short = len(line.strip()) <= _POINTER_MAX_CHARS
    template = is_template(line, items=items)
    return LABEL.match(line) is not None or template or (short and _POINTER.search(line) is not None)


def _like(text: str, span: tuple[int, int], docs: list[tuple[int, int]], marker: str | None) -> bool:
    """Whether the outer ``span`` looks like the documents between the lines: it opens with their marker, or it is
    about as long as they are (a long instruction over short notes is not), and it is not the template's words or a
    question."""
    if not docs or is_directive(text[span[0] : span[1]]):
        return False
    if marker is not None and _marker(text, span[0]) == marker:
        return True
    lengths = [b - a for a, b in docs]
    return _SIMILAR_LENGTH * min(lengths) <= span[1] - span[0] <= max(lengths) / _SIMILAR_LENGTH


def _common_marker(text: str, docs: list[tuple[int, int]]) -> str | None:
    """The marker every document between the lines opens with, if they share one."""
    markers = {_marker(text, a) for a, _ in docs}
    return markers.pop() if len(markers) == 1 else None


def _marker(text: str, pos: int) -> str | None:
    m = _MARKER.match(text, pos)
    return re.sub(r"\d+", "#", m.group(1).lower()) if m else None


def _last_documents(text: str, s: int, e: int) -> tuple[int, int] | None:
    """The paragraphs at the end of the first block that read as a document, after its last context heading."""
    start = e
    paras = [(s + a, s + b) for a, b in paragraphs(text[s:e])]
    texts = [text[a:b] for a, b in paras]
    steps = numbered_steps(texts)
    for k in range(len(paras) - 1, -1, -1):
        a, b = paras[k]
        lines = _lines(text, a, b)
        heads = [h for pos, end in lines if (h := heading_end(text, pos, end)) is not None]
        if heads:  # the rules on the prompt's own parts right under the heading are no document's
            start = min(start, _past_rules(text, heads[-1], b))
            break
        given_up = _directive(texts[k], steps[k]) or _colon_line(text, lines)
        glued = glued_rules(text, a, b, at_end=False, items=not steps[k], whole=given_up)
        if glued is None:  # a line that points at the context, then rules: "Context information is below.\n…"
            glued = _headed_rules(text, a, b, items=not steps[k], whole=given_up)
        if glued is not None:  # a rule glued to the first document's start: only its lines are given up
            a = glued
            given_up = given_up and _colon_line(text, _lines(text, a, b))
        if given_up:
            break
        start = a
        if glued is not None:
            break
    s, e = strip_span(text, start, e)
    return (s, e) if e > s else None


def _first_documents(text: str, s: int, e: int) -> tuple[int, int] | None:
    """The paragraphs at the start of the last block that read as a document, up to an instruction, a question, a
    label or a line that ends in a colon."""
    end = s
    paras = [(s + a, s + b) for a, b in paragraphs(text[s:e])]
    texts = [text[a:b] for a, b in paras]
    steps = numbered_steps(texts)
    for k, (a, b) in enumerate(paras):
        given_up = _directive(texts[k], steps[k]) or _colon_line(text, _lines(text, a, b))
        glued = glued_rules(text, a, b, at_end=True, items=not steps[k], whole=given_up)
        if glued is not None:  # a rule glued to the last document's end: only its lines are given up
            b = glued
            given_up = given_up and _colon_line(text, _lines(text, a, b))
        if given_up:
            break
        label = LABEL.search(text, a, b)
        if label is not None:
            end = max(end, label.start())
            break
        end = b
        if glued is not None:
            break
    s, e = strip_span(text, s, end)
    return (s, e) if e > s else None


def _headed_rules(text: str, a: int, b: int, *, items: bool = True, whole: bool = False) -> int | None:
    """Where the documents start in the paragraph ``text[a:b]`` when it opens with a context heading or a line that
    points at the context, then rules on the prompt's own parts (``Context:\\nDo not use outside knowledge.\\n…``,
    :func:`promptzip._rules_lists.part_rule`): :func:`promptzip._rules.glued_rules` reads rules from the paragraph's
    first line, and the heading is none. ``b`` when nothing else follows; ``None`` when it opens otherwise, or when
    the rest reads as the template's words too and ``whole`` says the caller gives the paragraph up then."""
    pos = a
    for p, q in _lines(text, a, b):  # the heading's lines: a heading alone on its line, or a short pointer
        head = heading_end(text, p, q)
        line = text[p:q]
        pointer = len(line.strip()) <= _POINTER_MAX_CHARS and _POINTER.search(line) is not None and not part_rule(line)
        if not pointer and (head is None or text[head:q].strip()):
            break
        pos = min(q + 1, b)
    if pos == a:
        return None
    start = strip_span(text, pos, b)[0]
    cut = _past_rules(text, start, b)
    if cut == start:
        return None  # the heading's documents open at once: left as they were
    rest = strip_span(text, cut, b)
    if rest[0] < rest[1] and whole and is_directive(text[rest[0] : rest[1]], items=items):
        return None
    return cut


def _past_rules(text: str, pos: int, b: int) -> int:
    """Where the lines from ``pos`` (a heading's end) to ``b`` stop being rules on the prompt's own parts."""
    for p, q in _lines(text, pos, b):
        if text[p:q].strip() and not part_rule(text[p:q]):
            return p
    return b


def _lines(text: str, a: int, b: int) -> list[tuple[int, int]]:
    out = []
    for line in text[a:b].split("\n"):
        out.append((a, a + len(line)))
        a += len(line) + 1
    return out


def _colon_line(text: str, lines: list[tuple[int, int]]) -> bool:
    """Whether a line ends in a colon: what follows is what it introduces, the template's or a document's own."""
    return any(text[a:b].rstrip().endswith(":") for a, b in lines)
