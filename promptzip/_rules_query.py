"""The words a question region is scored by (:func:`promptzip._understand.understand`): its text without the label
that opens it (``Question:``, ``QUESTION`` on a line of its own, ``Here is the question:``), a trailing ``Answer:`` cue,
and what wraps it (XML tags, square-bracket sections, bold)."""

from __future__ import annotations

import re

from promptzip._rules import LABEL, QUESTION_LABELS, label_name

__all__ = ["ASKING_LABELS", "label_free", "unwrapped"]

# The labels of a question found by layout that name what is asked; "Answer:" names the reply, not the question.
ASKING_LABELS = QUESTION_LABELS | {"task"}
_PLAIN_LABEL = re.compile(
    r"\A[ \t]*(?:(?:user[ \t]+)?(?:question|query)[ \t]*\n(?=[ \t]*\S)"
    r"|here(?:[ \t]+is|['’]s)[ \t]+(?:the|my)[ \t]+(?:question|query)[ \t]*:[ \t]*)",
    re.IGNORECASE,
)
# What wraps a question rather than asks it: the tags around it ("</context>\n<question>…</question>", "…?\n<answer>")
# and the emphasis a bold label leaves ("**Question:** …" ends its label at the colon). A tag or bold words inside the
# question ("What does the <div> tag do?", "**Basic usage** …") are its words.
_OPEN_AT_START = re.compile(r"\A<([A-Za-z][\w:.-]*)(?:\s[^<>\n]*)?>\s*")
# only on a line of their own: "How do I center a <div>" ends in its words
_CLOSE_AT_START = re.compile(r"\A</[A-Za-z][\w:.-]*[ \t]*>[ \t]*\n\s*")
_OPEN_AT_END = re.compile(r"\n[ \t]*<[A-Za-z][\w:.-]*(?:\s[^<>\n]*)?/?>[ \t]*\Z")
# the same in square brackets: "[QUESTION]\n…\n[/QUESTION]", or "[QUESTION] …" as a label
_BRACKET_AT_START = re.compile(r"\A\[([A-Za-z][\w-]*(?:[ \t][\w-]+){0,2})\][ \t]*(?:\n\s*)?")
_BRACKET_CLOSE_AT_START = re.compile(r"\A\[/[A-Za-z][\w \t-]*\][ \t]*\n\s*")
_WRAPS = 8  # marks taken off each end at most: a question is wrapped by a few, and each look is linear


def label_free(text: str) -> str:
    """The question's words: without its label (a line of its own, "Question" or "QUESTION", or "Here is the
    question:", too), a trailing ``Answer:`` cue and what wraps it."""
    out = LABEL.sub(lambda m: "" if label_name(m) in ASKING_LABELS else m.group(0), text)
    out = _PLAIN_LABEL.sub("", out, count=1)
    out = re.sub(r"(?im)^[ \t]*(answer|a|response)[ \t]*:[ \t]*$", "", out)
    return unwrapped(out)


def unwrapped(query: str) -> str:
    """``query`` without the marks that wrap it (tags, square brackets, bold), a few at each end at most."""
    out = query.strip()
    for _ in range(_WRAPS):
        before = out
        if m := _CLOSE_AT_START.match(out):
            out = out[m.end() :]
        elif (m := _OPEN_AT_START.match(out)) and re.search(rf"</{re.escape(m.group(1))}\s*>\Z", out, re.I):
            out = out[m.end() : out.rfind("<")].strip()
        elif m := _BRACKET_CLOSE_AT_START.match(out):
            out = out[m.end() :]
        elif m := _BRACKET_AT_START.match(out):
            closing = re.search(rf"\s*\[/{re.escape(m.group(1))}\]\Z", out, re.I)
            if closing is not None:
                out = out[m.end() : closing.start()].strip()
            elif m.group(1).lower() in QUESTION_LABELS:
                out = out[m.end() :].strip()
        elif out[:2] in ("**", "__") and out[2:3].isspace():
            out = out[3:].lstrip()
        elif len(out) > 4 and out[:2] == out[-2:] and out[:2] in ("**", "__") and out[:2] not in out[2:-2]:
            out = out[2:-2].strip()
        if m := _OPEN_AT_END.search(out, max(0, out.rfind("\n", 0, out.rfind("<") + 1))):
            out = out[: m.start()].rstrip()
        if out == before:
            break
    return out or query.strip()
