"""Lines of dashes, for rule 4 of :func:`promptzip._understand.understand`: fences around the context, or separators
between documents.

LlamaIndex fences its context, the lines hugging what they enclose
(``Context information is below.\\n-----\\n{context_str}\\n-----\\nGiven …``); CrewAI and hand-written prompts put a
line between documents, a blank line either side (``doc1\\n\\n-----\\n\\ndoc2\\n\\n-----\\n\\ndoc3``). Paired up as
fences, such lines would make every other document context, and an instruction between two of them too. So
:func:`separated` reads each block on its own. A block between two lines is context, less the template's words at
either end of it (:func:`promptzip._rules.is_directive`: an instruction, a question, a label, a cue), and nothing
when it is all such words. A block outside the lines joins the documents only across a separator (a blank line
between it and the line), and only with the paragraphs next to that line that read as a document: those of the first
block after its last context heading (``Context:``, CrewAI's ``This is the context you're working with:``) or after
its last instruction or other line that ends in a colon (``Rules:`` introduces no document), those of the last block
before its first instruction, question, label or line that ends in a colon. One line alone separates no run of
documents; it is left to the other rules.
"""

from __future__ import annotations

import re

from promptzip._rules import LABEL, MAX_LEAD_CHARS, heading_end, is_directive, paragraphs, strip_span

__all__ = ["separated"]

_DASHES = re.compile(r"^[ \t]*-{5,}[ \t]*$", re.MULTILINE)


def separated(text: str) -> list[tuple[int, int]]:
    """The context spans that the lines of dashes in ``text`` fence or separate (the first line near the start)."""
    marks = list(_DASHES.finditer(text))
    if len(marks) < 2 or marks[0].start() > MAX_LEAD_CHARS:
        return []  # a line deep inside a long text is the text's own, not a delimiter around it
    spans = []
    for k in range(len(marks) + 1):
        a = marks[k - 1].end() if k else 0
        b = marks[k].start() if k < len(marks) else len(text)
        s, e = strip_span(text, a, b)
        if s >= e:
            continue
        if 0 < k < len(marks):
            span = _inner(text, s, e)
        elif k == 0:
            span = _last_documents(text, s, e) if _blank(text[e:b]) else None
        else:
            span = _first_documents(text, s, e) if _blank(text[a:s]) else None
        if span is not None:
            spans.append(span)
    return spans


def _blank(gap: str) -> bool:
    """Whether the white space between a line of dashes and the text beside it holds a blank line."""
    return gap.count("\n") >= 2


def _inner(text: str, s: int, e: int) -> tuple[int, int] | None:
    """A block between two lines, less the template's paragraphs at either end."""
    paras = [(s + a, s + b) for a, b in paragraphs(text[s:e])]
    while paras and is_directive(text[paras[0][0] : paras[0][1]]):
        paras.pop(0)
    while paras and is_directive(text[paras[-1][0] : paras[-1][1]]):
        paras.pop()
    return (paras[0][0], paras[-1][1]) if paras else None


def _last_documents(text: str, s: int, e: int) -> tuple[int, int] | None:
    """The paragraphs at the end of the first block that read as a document, after its last context heading."""
    start = e
    for a, b in reversed([(s + a, s + b) for a, b in paragraphs(text[s:e])]):
        lines = _lines(text, a, b)
        heads = [h for pos, end in lines if (h := heading_end(text, pos, end)) is not None]
        if heads:
            start = min(start, heads[-1])
            break
        if is_directive(text[a:b]) or _introduces(text, lines):
            break
        start = a
    s, e = strip_span(text, start, e)
    return (s, e) if e > s else None


def _first_documents(text: str, s: int, e: int) -> tuple[int, int] | None:
    """The paragraphs at the start of the last block that read as a document, up to an instruction, a question, a
    label or a line that ends in a colon."""
    end = s
    for a, b in [(s + a, s + b) for a, b in paragraphs(text[s:e])]:
        lines = _lines(text, a, b)
        if is_directive(text[a:b]) or _introduces(text, lines):
            break
        label = LABEL.search(text, a, b)
        if label is not None:
            end = max(end, label.start())
            break
        end = b
    s, e = strip_span(text, s, end)
    return (s, e) if e > s else None


def _lines(text: str, a: int, b: int) -> list[tuple[int, int]]:
    out = []
    for line in text[a:b].split("\n"):
        out.append((a, a + len(line)))
        a += len(line) + 1
    return out


def _introduces(text: str, lines: list[tuple[int, int]]) -> bool:
    """Whether a line ends in a colon: what follows is what it introduces, the template's or a document's own."""
    return any(text[a:b].rstrip().endswith(":") for a, b in lines)
