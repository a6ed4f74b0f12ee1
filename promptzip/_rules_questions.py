"""Where the question of the turn being answered is when no label says, for
:func:`promptzip._understand.understand`.

The turn asks after its documents (``Documents:\\n…\\n\\nHow many ships?``) or before them (``How many ships?\\n\\n…``),
and a template may close with words of its own that ask nothing (CrewAI's ``Begin! …`` and ``Thought:``; ``Answer
briefly.``): relevance scored against ``Thought:`` finds nothing. So :func:`unlabelled_question` takes, after the last
context region, the last paragraph that asks, passing over the template's closing words (a request to the model with
no line ending in ``?``); when only such words ask there, the first line that asks ``…?`` before them (between lines of
dashes, or before the documents) is the question, else the closing words are. Else the last paragraph after the
context that is not the template's words; else, before the context, the first paragraph that asks or a line that ends
in ``?`` (CrewAI's ``Current Task: …?``), else the first instruction region with a word in it, whole; else the last
paragraph after the context, whatever it is. A line of dashes that hugs a paragraph (``…\n-----\nWhen …?``) separates
it from the documents and is no part of it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from promptzip._rules import is_request, is_template, paragraphs, strip_span
from promptzip._rules_lists import numbered_steps

__all__ = ["unlabelled_question"]

_WORD = re.compile(r"\w")
# a line of dashes, or the closing fence of a delimited text (``"""``, a bare backtick fence): the question's
# neighbours, not its words
_RULE_AT_START = re.compile(r"(?:[ \t]*(?:-{5,}|```|\"\"\")[ \t]*(?:\n|$))+")
_RULE_AT_END = re.compile(r"(?:\n[ \t]*(?:-{5,}|```|\"\"\")[ \t]*)+$")
# a paragraph of tags alone (``</documents>`` closing what the question came before) asks nothing
_TAGS_ONLY = re.compile(r"(?:\s*</?[A-Za-z][\w:.-]*(?:\s[^<>]*)?>)+\s*")


def unlabelled_question(text: str, regions: Sequence[tuple[str, int, int]]) -> tuple[int, int, int] | None:
    """The question among ``regions`` (kind, start, end), at least one of them ``context``: as (index of the region
    that holds it, start, end), or ``None`` when there is nothing to ask."""
    last_context = max(i for i, (kind, _, _) in enumerate(regions) if kind == "context")
    after = [
        (i, a + pa, a + pb) for i in range(last_context + 1, len(regions)) for a, pa, pb in _paras(text, regions[i])
    ]
    asked = [(i, a, b) for i, a, b in after if is_request(text[a:b])]
    if asked:
        questions = [(i, a, b) for i, a, b in asked if not _closing(text[a:b])]
        if questions:
            return questions[-1]
        # "Answer briefly." after the documents asks nothing of them; a line that asks elsewhere in the turn does
        return _asked_before(text, regions[:last_context], lines_only=True) or asked[-1]
    texts = [text[a:b] for _, a, b in after]
    steps = numbered_steps(texts)
    others = [
        after[k]
        for k in range(len(after))
        if not is_template(texts[k], items=not steps[k]) and not _TAGS_ONLY.fullmatch(texts[k])
    ]
    if others:
        return others[-1]
    return _asked_before(text, regions[:last_context]) or (after[-1] if after else None)


def _closing(para: str) -> bool:
    """The template's words that ask nothing of the documents: a request to the model ("Answer briefly.", "Answer:")
    with no line that ends in ``?``."""
    return is_template(para) and not any(line.rstrip().endswith("?") for line in para.split("\n"))


def _paras(text: str, region: tuple[str, int, int]) -> list[tuple[int, int, int]]:
    _, start, end = region
    out = []
    for a, b in paragraphs(text[start:end]):
        a, b = _without_rules(text, start + a, start + b)
        if b > a:
            out.append((start, a - start, b - start))
    return out


def _without_rules(text: str, a: int, b: int) -> tuple[int, int]:
    """``text[a:b]`` less the blanks, the lines of dashes and the fence lines at either end."""
    a, b = strip_span(text, a, b)
    rule = _RULE_AT_START.match(text, a, b)
    if rule is not None:
        a = rule.end()
    rule = _RULE_AT_END.search(text, a, b)
    if rule is not None:
        b = rule.start()
    return strip_span(text, a, b)


def _asked_before(
    text: str, regions: Sequence[tuple[str, int, int]], *, lines_only: bool = False
) -> tuple[int, int, int] | None:
    """The first paragraph that asks, or line that ends in ``?``, in the instruction regions; else the first of them
    with a word in it, whole. With ``lines_only``, only a line that asks and ends in ``?`` (not the rest of its
    paragraph, which may be a document's lines that hug it) and nothing else."""
    whole = None
    for i, (kind, start, end) in enumerate(regions):
        if kind != "instruction" or not _WORD.search(text, start, end):
            continue
        whole = whole or (i, *strip_span(text, start, end))
        for a, b in paragraphs(text[start:end]):
            para = text[start + a : start + b]
            if is_request(para) and not lines_only:
                return (i, *_without_rules(text, start + a, start + b))
            pos = start + a
            for line in para.split("\n"):
                if line.rstrip().endswith("?") and is_request(line):
                    return (i, *strip_span(text, pos, pos + len(line)))
                pos += len(line) + 1
    return None if lines_only else whole
