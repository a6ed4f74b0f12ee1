"""List items, for the rules of :mod:`promptzip._rules` and :mod:`promptzip._rules_separators`: whether a paragraph's
items speak to the model as a template's rules do, and whether a list goes on from one paragraph or line to the next.

A marker opens rules (``1. Cite each note…``, ``[2] Never…``, ``- Answer in English.``, ``a) You must…``) as it opens
numbered passages (``[1] According to the census…``) and a how-to's steps (``3. Make sure the light is green.``). So
after a marker only the imperatives of prompts count (:data:`IMPERATIVE`), "you" with a word of obligation and "if you"
with a refusal's condition, and a word used as a noun or a subject (``Follow-up: …``, ``Use of force…``) is none; a
paragraph's items are rules when most of them read so (a how-to's steps mostly name the reader's own actions); and a
list that goes on across paragraphs or lines (step 3 after step 2, a bullet after a bullet) is read as one list: when
that list is not rules, each of its parts is the document's, whatever its own words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["IMPERATIVE", "item_rules", "numbered_steps"]

# The words a prompt opens an order to the model with; `promptzip._rules` reads them at a line's start too.
IMPERATIVE = (
    r"answer|use|cite|begin|respond|reply|return|write|give|provide|remember|ensure|avoid|be|keep|think|follow|format|"
    r"output|refuse|do[ \t]+not|don['’]t|never|always|make[ \t]+sure|please"
)
_MARKER = r"(?:\d{1,3}[.)]|[(\[]\d{1,3}[)\]]|[A-Za-z][.)]|\([A-Za-z]\)|[ivxIVX]{1,4}[.)]|[-*•+–])"
_ITEM = re.compile(rf"^[ \t]*{_MARKER}[ \t]+\S[^\n]*", re.MULTILINE)
_RULE = re.compile(
    rf"[ \t]*{_MARKER}[ \t]+(?:\*\*|__)?(?:{IMPERATIVE}"
    r"|you[ \t]+(?:must|should|shall|need[ \t]+to|have[ \t]+to|are[ \t]+(?:to|required|expected|allowed|only)|cannot|"
    r"can['’]t|can[ \t]+not|may[ \t]+not|will[ \t]+not|won['’]t|do[ \t]+not|don['’]t|never|always|only)"
    r"|if[ \t]+you[ \t]+(?:do[ \t]+not|don['’]t|cannot|can['’]t|are[ \t]+(?:not|unsure)))\b"
    r"(?![ \t]*(?:-|(?:of|is|was|are|were|has|had|['’]s)\b))",
    re.IGNORECASE,
)
# A numbered item's number or letter and how it is written around it ("3." and "3)" and "[3]" are three lists), or a
# bullet (a list goes on while its bullet is the same).
_NUMBER = re.compile(r"[ \t]*(?:([(\[]?)(\d{1,3}|[A-Za-z])([.)\]])|([-*•+–]))[ \t]")


def item_rules(para: str) -> bool:
    """Whether the list items of ``para`` are rules: it has some, and more than half of them speak to the model."""
    items = _ITEM.findall(para)
    return bool(items) and 2 * sum(1 for item in items if _RULE.match(item)) > len(items)


def numbered_steps(parts: Sequence[str]) -> list[bool]:
    """For each of ``parts`` (paragraphs or lines), whether it is one of a document's steps: the list it is part of
    goes on from the part before it or into the next one (numbered on, ``2.`` then ``3.``, or bulleted alike), and
    the list they make together is not rules."""
    out = [False] * len(parts)
    a = 0
    while a < len(parts):
        b = a
        while b + 1 < len(parts) and _continues(parts[b], parts[b + 1]):
            b += 1
        if b > a and not item_rules("\n".join(parts[a : b + 1])):
            out[a : b + 1] = [True] * (b + 1 - a)
        a = b + 1
    return out


def _continues(before: str, after: str) -> bool:
    """Whether the list at the start of ``after`` goes on from the last line of ``before``: written the same way, and
    numbered on (``2.`` then ``3.``, ``b)`` then ``c)``) or with the same bullet."""
    last = _number(before.rstrip().rsplit("\n", 1)[-1])
    first = _number(after.lstrip().split("\n", 1)[0])
    if last is None or first is None or first[0] != last[0]:
        return False
    return first[1] is None or (last[1] is not None and first[1] == last[1] + 1)


def _number(line: str) -> tuple[str, int | None] | None:
    """How a list item is written and its number (none for a bullet)."""
    m = _NUMBER.match(line)
    if m is None:
        return None
    if m.group(4):
        return m.group(4), None
    value = m.group(2)
    style = m.group(1) + ("9" if value.isdigit() else "a" if value.islower() else "A") + m.group(3)
    return style, int(value) if value.isdigit() else ord(value.lower())
