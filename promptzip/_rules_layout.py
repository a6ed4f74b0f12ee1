"""The layout rule (rule 5 of :func:`promptzip._understand.understand`): when nothing marks the context and the text
is long, its short leading instructions and a short trailing request are kept and the long middle is context."""

from __future__ import annotations

import re

from promptzip._rules import paragraphs, pointed, strip_span, trim_end, trim_start
from promptzip._rules_headings import AHEAD, NOUNS, POINTS
from promptzip._rules_pointers import pointer_end

__all__ = ["LAYOUT_MIN_CHARS", "by_layout"]

LAYOUT_MIN_CHARS = 1200
_INSTRUCTION_CUE = re.compile(
    r"\b(you|your|answer|use|using|following|below|above|question|context|respond|reply|assistant|based on|"
    r"according to|given|task|instructions?|documents?|please|must|should)\b|:\s*$",
    re.IGNORECASE,
)
# Pasted data: how many lines make records, how long one may be, and what is a figure once a list marker is gone.
_MIN_RECORDS = 8
_MAX_RECORD_CHARS = 400
_FIGURE = re.compile(r"\d")
_LIST_MARKER = re.compile(r"^\s*(?:\d{1,3}[.)]|[-*•+])\s+")
# A short message is read by its layout only when it sends the model to its documents: a first paragraph pointing at
# those after it ("Use the following pieces of context to answer the question at the end.", LangChain's QA prompt),
# or one of the last three at those above it ("Answer using only the documents above."). "The context" alone may be one
# sent earlier or elsewhere, and a short message that asks about it is its question.
_AHEAD = re.compile(rf"\b(?:the[ \t]+(?:following|provided)|these)\b|\b{NOUNS}[ \t]+{AHEAD}\b", re.IGNORECASE)
_BACK = re.compile(rf"\b{NOUNS}[ \t]+above\b|\bthe[ \t]+above[ \t]+{NOUNS}\b", re.IGNORECASE)
_MAX_LEAD = 400
_RULE_LINE = re.compile(r"[ \t]*(?:-{3,}|\*{3,}|_{3,}|={3,})[ \t]*")


def by_layout(text: str, *, trailing_question: bool) -> list[tuple[int, int]]:
    """Short leading instructions and a short trailing request kept, the long middle as context."""
    paras = paragraphs(text)
    pointing = _points_at_documents(text, paras)
    if len(text) < LAYOUT_MIN_CHARS and pointing is None:
        return []
    lead = 0
    while lead < min(2, len(paras) - 1):
        a, b = paras[lead]
        # the first paragraph needs an instruction's words, or (the turn being answered) to be its question, asked
        # before the documents; a second one must introduce what follows ("…below:")
        para = text[a:b].rstrip()
        first = _INSTRUCTION_CUE.search(para) or (trailing_question and para.endswith("?"))
        if b - a > _MAX_LEAD or not (first if lead == 0 else para.endswith(":")):
            break
        if pointed(text, a, b) is not None:
            break  # its first line points at the documents glued after it: those are context (trim_start)
        lead += 1
    # the template's words at the end ("Instruction: …" after LlamaIndex's documents, "Begin! …" and "Thought:"
    # after CrewAI's) are the template's in any role, a question or request is the question of the turn being answered
    end = trim_end(text, paras[lead][0], paras[-1][1], asks=trailing_question)
    tail = len(paras)
    while tail - 1 > lead and paras[tail - 1][0] >= end:
        tail -= 1
    # (a paragraph that the words after it call the documents, "…using only the documents above.", is one)
    if tail > lead and not (lead == 0 and tail < 3 and pointing != "back"):
        # rules after the introduction ("Here are the notes:\n\nAnswer in English.") are the template's too
        start = trim_start(text, paras[lead][0], end)
    else:  # one long paragraph is a long instruction, not context
        # unless, in the turn being answered, it is data pasted before the question: records, not sentences
        found = _records(text, *paras[0]) if trailing_question and lead == 0 and 0 < tail < len(paras) else None
        if found is None:
            return []
        start = max(found, pointer_end(text, *paras[0]) or 0)  # a pointer line ("Read the rows below.") kept
    end = min(end, paras[tail - 1][1])  # a rule glued to the last document's lines (``trim_end``) is not context
    if tail - 1 > lead and _RULE_LINE.fullmatch(text, *paras[tail - 1]):
        # nor a line that rules the documents off from the words after them ("{context}\n\n---\n\nGiven the context
        # above, …", Langflow's)
        end = min(end, paras[tail - 2][1])
    if end - start < len(text) / 2:
        return []
    return [strip_span(text, start, end)]


def _points_at_documents(text: str, paras: list[tuple[int, int]]) -> str | None:
    """Where a short paragraph of ``text`` (of ``paras``) sends the model to its documents: ``"ahead"`` (the first
    one, to those after it), ``"back"`` (one of the last three, to those above it), or ``None``."""
    if len(paras) < 2:
        return None
    ends = [(paras[0], _AHEAD, "ahead"), *((p, _BACK, "back") for p in paras[-3:] if p != paras[0])]
    for (a, b), where, name in ends:
        m = POINTS.search(text, a, b) if b - a <= _MAX_LEAD else None
        if m is not None and where.search(text, m.start(), min(b, m.end() + 16)) is not None:
            return name
    return None


def _records(text: str, a: int, b: int) -> int | None:
    """Where the records of ``text[a:b]`` start, when it is pasted data: an optional short introduction ending in a
    colon ("Harbour records:"), then at least ``_MIN_RECORDS`` short lines that nearly all hold a figure (a row, a
    log line, a dated entry). Numbered steps and bullet rules are not records (a list marker is not a figure), nor is
    code, JSON or HTML."""
    lines = text[a:b].split("\n")
    start = a
    if lines and len(lines[0]) <= 200 and lines[0].rstrip().endswith(":"):
        start += len(lines[0]) + 1
        lines = lines[1:]
    rows = [line for line in lines if line.strip()]
    if len(rows) < _MIN_RECORDS or any(len(row) > _MAX_RECORD_CHARS for row in rows):
        return None
    with_figures = sum(1 for row in rows if _FIGURE.search(_LIST_MARKER.sub("", row, count=1)))
    if with_figures < 0.8 * len(rows):
        return None
    from promptzip.compressors.tool_outputs import detect_kind  # the structure readers: only for a likely block

    # Pasted code, JSON or HTML holds figures on most lines too; they are asked about whole, as before.
    return None if detect_kind(text[start:b]) in ("code", "json", "html") else start
