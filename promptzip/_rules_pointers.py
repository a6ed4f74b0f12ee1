"""A template's first line glued to the first document ("Use the following pieces of context to answer the question
at the end.\\n<document>…", no blank line between): it speaks to the model and points at the documents after it, so
it is the template's words, kept, and the document's lines after it are context (read by
:func:`promptzip._rules.trim_start`).

Before, such a paragraph was read whole, by its first words: kept verbatim with the first document in it when the line
read as the template's, or compressed whole, the line that tells the model what to do included, when it did not."""

from __future__ import annotations

import re

from promptzip._rules_headings import AHEAD, NOUNS
from promptzip._rules_lists import SEND

__all__ = ["pointer_end"]

# What a template calls what it retrieved (the headings' names) or pasted, with up to four words before the noun
# ("the following extracted parts of a long document", "the following pieces of context"). A task's input ("text",
# "article") counts here as well: the line goes out verbatim either way, and only where it stands is decided.
_THINGS = (
    rf"(?:{NOUNS}|excerpt|snippet|chunk|results|parts|pieces|texts?|articles?|paragraphs?|notes|records|reviews|"
    r"transcripts?|emails|messages|knowledge|data)"
)
_BEFORE = r"(?:following|below|provided|given|attached|retrieved|supplied)"
_AFTER = rf"(?:{AHEAD}|provided|given|listed|shown|supplied)"
# The line opens as an order to the model (after an optional "You are …." of its own), and points at the documents:
# a pointer before the noun ("the following passages", "the context below" after it), within its first words. It is
# one sentence or two, ends in "." or ":", and is short: a document's line runs on.
_POINTER_LINE = re.compile(
    r"[ \t]*(?:you(?:['’]re|[ \t]+are)\b[^\n.]{0,80}\.[ \t]+)?(?:\*\*)?(?:please[ \t]+)?(?:(?:only|carefully)[ \t]+)?"
    rf"(?:{SEND}|given|using|based[ \t]+on|according[ \t]+to|with|from|in[ \t]+light[ \t]+of)\b"
    rf"[^\n]{{0,60}}?\b(?:{_BEFORE}[ \t]+(?:[\w'’-]+[ \t]+){{0,4}}?{_THINGS}\b|{_THINGS}[ \t]+{_AFTER}\b)"
    r"[^\n]{0,140}?[.:](?:\*\*)?[ \t]*",
    re.IGNORECASE,
)
_MAX_CHARS = 260


def pointer_end(text: str, a: int, b: int) -> int | None:
    """Where the lines after the first line of the paragraph ``text[a:b]`` start, when that line is a template's that
    points at the documents after it; ``None`` when it is not, or is the paragraph's only line."""
    nl = text.find("\n", a, b)
    if nl < 0 or nl - a > _MAX_CHARS:
        return None
    return nl + 1 if _POINTER_LINE.fullmatch(text, a, nl) else None
