"""The lines that head a prompt's context (rule 4 of :func:`promptzip._understand.understand`, read by
:func:`promptzip._rules.headed`): a label ("Context:", "Documents:", AutoGen's "Context is:"), a Markdown heading
("## Context"), a sentence that introduces the documents ("Here are the relevant documents:", "Use the documents
below:", "Use this context to answer: {context}"), a name set off as a heading ("**Context**", "=== Documents ==="),
a plain name line where the template shows itself around it ("Context" … "Question", "Use the context to
answer.\n\nContext"), a line of dashes under words that send the model to the documents, a name label after such
words on its line ("Use the given context to answer the question. … Context: {context}") or after the persona that
opens the message ("You are a helpful assistant. Context: {context}"), and DSPy's field marker."""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Iterator

from promptzip._rules_lists import READ, SEND

__all__ = ["ADJECTIVE", "AHEAD", "HEADING", "HEADINGS", "NOUNS", "POINTS"]

# A retrieval template's names for what it retrieved ("Docs:", "Retrieved chunks:", "Knowledge base:", "Information:"),
# not a task's input ("Article:", "Text:", "Transcript:" name what the task works on, which is not cut); "knowledge"
# alone is not one ("…using Knowledge Distillation](…):" in a README)
NOUNS = (
    r"(?:context(?:[ \t]+information)?|contexts|documents?|docs|sources?|passages?|search[ \t]+results|references|"
    r"background(?:[ \t]+information)?|excerpts|snippets|chunks|knowledge[ \t]+base|information|facts)"
)
# "New Context:" is LlamaIndex's chat refine prompt
ADJECTIVE = r"(?:retrieved[ \t]+|relevant[ \t]+|reference[ \t]+|new[ \t]+)?"
_MD_HEADING = re.compile(
    rf"^[ \t]*#{{1,6}}[ \t]*{ADJECTIVE}{NOUNS}[ \t]*:?[ \t]*$\n?",
    re.IGNORECASE | re.MULTILINE,
)
# "Context is:" is AutoGen's; "**Excerpts:**" closes its bold after the colon; a lower-case name, a spaced colon and a
# type is numpydoc's parameter ("docs : list of str", "context : dict"), no heading
HEADING = re.compile(
    r"^[ \t]*(?!(?-i:[a-z_]+)[ \t]+:[ \t]+(?:(?:list|str|dict|tuple|set|sequence|iterable|mapping|array|ndarray|"
    r"optional|any|object|path|bytes|int|float|bool)\b|[\w.]*[.\[]))"
    rf"(?:#{{1,6}}[ \t]*)?(?:\*\*)?{ADJECTIVE}{NOUNS}(?:\*\*)?(?:[ \t]+is)?[ \t]*:(?:\*\*)?[ \t]*",
    re.IGNORECASE | re.MULTILINE,
)
# A sentence on its own line that introduces the context ("This is the context you're working with:", CrewAI's; "Here
# are the relevant documents for the context:"; "…based on the below context:") is a heading too, and so is one that
# has the documents on its line after the colon ("Here is the context: {context}", a hand-written f-string's).
_INTRO = re.compile(
    rf"^[ \t]*+(?:(?:(?:here|below)[ \t]+(?:is|are)|this[ \t]+is|these[ \t]+are)\b[^\n:]{{0,80}}?\b{NOUNS}"
    rf"|[^\n:]{{0,80}}?\b(?:below|following|provided)[ \t]+(?:[\w'-]+[ \t]+){{0,3}}{NOUNS})"
    r"\b[^\n:]{0,60}:[ \t]*(?:$\n?|(?=\S))",
    re.IGNORECASE | re.MULTILINE,
)
# So is one that names the noun before its pointer ("Use the documents below:", "Refer to the docs that follow:",
# "Consider these sources:", "The documents below:") in a prompt's words: after a verb that sends the model to them,
# with at most the task after ("… to answer:"), or the noun phrase alone; not a document's "The sources below show:",
# nor one that points back ("… above"). In "." only after a verb of reading ("Read the documents below."): "Use only
# the documents below." is a rule, often one of several.
AHEAD = r"(?:(?:provided|given|listed|shown|supplied)[ \t]+)?(?:below|(?:that|which|as)[ \t]+follows?)"
_POINTER = rf"{NOUNS}[ \t]+(?:{AHEAD}|provided|given)"
_TASK_AFTER = r"(?:[ \t]*,?[ \t]+(?:to|and|when|then)\b[^\n:.]{0,60})?[ \t]*(?:\*\*)?"
_POINTED = re.compile(
    r"^[ \t]*+(?:\*\*)?(?:please[ \t]+)?(?:(?:only|carefully)[ \t]+)?"
    rf"(?:(?:{SEND})\b[^\n:.]{{0,30}}?(?:\b(?:the|all)[ \t]+{ADJECTIVE}{_POINTER}|\bthese[ \t]+{ADJECTIVE}{NOUNS})"
    rf"\b{_TASK_AFTER}:|(?:{READ})\b[^\n:.]{{0,30}}?\bthe[ \t]+{ADJECTIVE}{NOUNS}[ \t]+{AHEAD}\b{_TASK_AFTER}\."
    rf"|(?:the[ \t]+)?{ADJECTIVE}{_POINTER}\b[ \t]*(?:\*\*)?:)(?:\*\*)?[ \t]*$\n?"
    # "Use this context to answer:", "Given these documents:", after the template's first sentences on its line, the
    # context on the same line or the next ("You are a helpful assistant. Use this context to answer: {context}")
    rf"|^[ \t]*+(?:[^\n]{{0,200}}?[.!?][ \t]+)?(?:please[ \t]+)?(?:{SEND}|given|using|based[ \t]+on)\b[^\n:.]{{0,30}}?"
    rf"\bth(?:is|ese)[ \t]+{ADJECTIVE}{NOUNS}\b{_TASK_AFTER}:[ \t]*(?:$\n?|(?=\S))",
    re.IGNORECASE | re.MULTILINE,
)
# A line that holds nothing but the name, set off as a heading by emphasis, rules or guillemets ("**Context**",
# "__Documents__", "=== Context ===", "### Context ###", "<<Context>>") or in capitals ("CONTEXT"). Not "Sources",
# "References" or "Background": on a line of their own those are an article's sections; nor "[docs]", an INI file's.
# The names a line of its own may hold to head the context, set off (_DECORATED) or plain (_PlainName)
_LINE_NAME = r"(?:retrieved[ \t]+|relevant[ \t]+)?(?:context|contexts|documents|docs|passages|excerpts|snippets|chunks)"
_DECORATED = re.compile(
    r"^[ \t]*(?:(?P<mark>\*{1,2}|_{1,2}|={2,}[ \t]*|#{1,6}[ \t]*|-{2,}[ \t]*|<<[ \t]*)"
    rf"{_LINE_NAME}"
    r"(?:[ \t]*:)?(?(mark)[ \t]*(?:\*{1,2}|_{1,2}|={2,}|#{1,6}|-{2,}|>>))"
    r"|(?-i:(?:RETRIEVED[ \t]+|RELEVANT[ \t]+)?(?:CONTEXT|DOCUMENTS|PASSAGES|EXCERPTS|SNIPPETS)))"
    r"[ \t]*:?[ \t]*$\n?",
    re.IGNORECASE | re.MULTILINE,
)


_BLANK_BEFORE = re.compile(r"\n[ \t]*\n[ \t]*\Z")
_OPENING = 200  # how far into a message its first line may start (after blank lines)
_NON_BLANK = re.compile(r"\S")
_MOST_HEADS = 32
_LOOK_BACK = 300  # the sentence that sends the model to the context ends the line before its name line


# An order that sends the model to the documents ("Use the context…", "Answer … using the documents", "Use the
# following pieces of context"), not prose that names a context ("Historians disagree about the context of the treaty.")
POINTS = re.compile(
    rf"\b(?:{SEND}|using|based[ \t]+on|according[ \t]+to|given)\b[^.!?\n]{{0,40}}?\b(?:the|these|this)[ \t]+"
    rf"{ADJECTIVE}(?:(?:provided|given|following)[ \t]+)?(?:[\w-]+[ \t]+of[ \t]+(?:the[ \t]+)?)?{ADJECTIVE}{NOUNS}\b",
    re.IGNORECASE,
)


class _PairedLine:
    """A kind of line that heads the context only where the template shows itself around it (``_paired``)."""

    _LINE: re.Pattern[str]

    def _paired(self, text: str, m: re.Match[str]) -> bool:
        raise NotImplementedError

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        # a template heads its documents a few times at most; a text of thousands of such lines is a list
        return itertools.islice((m for m in self._LINE.finditer(text) if self._paired(text, m)), _MOST_HEADS)

    def match(self, text: str, pos: int, end: int) -> re.Match[str] | None:
        m = self._LINE.match(text, pos, end)
        return m if m is not None and self._paired(text, m) else None


class _PlainName(_PairedLine):
    """A line that holds nothing but the name in plain case ("Context", "Retrieved passages") heads the context only
    where the template around it shows itself: a question set off after it (a "Question" or "Query" line of its own
    above it, or a "Question:" label), or, on the line just before it, words that send the model to it ("Use the
    context to answer."). Alone, such a line is as likely an article's section title, or a word of a list."""

    _LINE = re.compile(rf"^[ \t]*(?:{_LINE_NAME}|search[ \t]+results)[ \t]*$\n?", re.IGNORECASE | re.MULTILINE)
    # the question after its label: words, or a "?" (a word list's "question" line is followed by one more word)
    _QUESTION = re.compile(
        r"^[ \t]*(?:user[ \t]+)?(?:question|query)[ \t]*(?:\n[ \t]*|:[ \t]*\n?[ \t]*)[^\s?]*(?:[ \t]\S|\?)",
        re.IGNORECASE | re.MULTILINE,
    )

    def _paired(self, text: str, m: re.Match[str]) -> bool:
        # Each check reads a bounded stretch around the line, or a scan made once per text: a text of many such lines
        # must not cost a scan of the text per line.
        if _NON_BLANK.search(text, m.end()) is None:
            return False
        before = text[max(0, m.start() - _LOOK_BACK) : m.start()].rstrip()
        if POINTS.search(before, before.rfind("\n") + 1):  # the line just before, glued or not
            return True
        # set off by a blank line (or first), as a heading is: a word list's lines follow each other
        apart = not before or _BLANK_BEFORE.search(text[max(0, m.start() - 16) : m.start()]) is not None
        return apart and _last_question(text) >= m.end()


_scanned = threading.local()  # per thread: the text last scanned for its last question, and where that starts


def _last_question(text: str) -> int:
    """Where the last plain question line or question label of ``text`` starts (-1 if none): one scan per text,
    however many of its name lines ask for it (each thread remembers the text it read last)."""
    if getattr(_scanned, "text", None) is not text:
        _scanned.at = max((q.start() for q in _PlainName._QUESTION.finditer(text)), default=-1)
        _scanned.text = text
    at: int = _scanned.at
    return at


class _RuledOff(_PairedLine):
    """A line of dashes heads the context where the paragraph glued above it sends the model to the documents:
    LangChain's chat prompt for its "stuff" chains ends its system message in ``Use the following pieces of context to
    answer the user's question.\nIf you don't know the answer, …\n----------------\n{context}``. Two or more such lines
    fence or separate documents (:mod:`promptzip._rules_separators`); one alone, after anything else, is a document's
    own rule."""

    _LINE = re.compile(r"^[ \t]*-{5,}[ \t]*$\n?", re.MULTILINE)

    def _paired(self, text: str, m: re.Match[str]) -> bool:
        if _NON_BLANK.search(text, m.end()) is None:
            return False
        before = text[max(0, m.start() - _LOOK_BACK) : m.start()]
        paragraph = before[before.rfind("\n\n") + 1 :]  # glued to the line: no blank line between
        return bool(paragraph.strip()) and POINTS.search(paragraph) is not None


class _InlineName(_PairedLine):
    """A name label after the template's sentences on its line, the documents after it on the same line, heads them
    where those sentences send the model to the documents: LangChain's ``create_retrieval_chain`` example system
    prompt, ``Use the given context to answer the question. If you don't know the answer, say you don't know. Use
    three sentence maximum and keep the answer concise. Context: {context}``; and at the start of a message, after
    sentences that speak to the model (``You are a helpful assistant. Context: {context}``, a hand-written f-string's).
    After other sentences ("The fort fell in 1648. Sources: the Chronicle.", or a persona's further down) it heads
    nothing."""

    _LINE = re.compile(
        r"^[ \t]*+(?P<lead>[^\n]{0,300}?[.!?])[ \t]+(?:\*\*)?(?:retrieved[ \t]+|relevant[ \t]+)?"
        r"(?:context|documents|docs|passages|sources|excerpts|snippets|search[ \t]+results)(?:\*\*)?[ \t]*:(?:\*\*)?"
        r"[ \t]*(?=\S)",
        re.IGNORECASE | re.MULTILINE,
    )

    # the template's opening words, which speak to the model ("You are a helpful assistant. Context: {context}")
    _PERSONA = re.compile(
        r"\byou(?:['’]re|[ \t]+are)\b|\bassistant\b|\byour[ \t]+(?:role|task|job|goal)\b", re.IGNORECASE
    )

    def _paired(self, text: str, m: re.Match[str]) -> bool:
        lead = m.group("lead")
        if POINTS.search(lead) is not None:
            return True
        # or, opening the message, sentences that speak to the model: a document does not start one so (a bounded look
        # back: a text of many such lines must not cost a scan of its start per line)
        opens = m.start() <= _OPENING and _NON_BLANK.search(text, 0, m.start()) is None
        return opens and self._PERSONA.search(lead) is not None


# DSPy's chat adapter sends each input field under its own marker line, ``[[ ## context ## ]]``
_FIELD_HEADING = re.compile(
    r"^[ \t]*\[\[[ \t]*##[ \t]*(?:retrieved_|relevant_)?(?:context|contexts|documents?|passages?|sources?|"
    r"search_results|references)[ \t]*##[ \t]*\]\][ \t]*$\n?",
    re.IGNORECASE | re.MULTILINE,
)

HEADINGS = (
    HEADING,
    _MD_HEADING,
    _FIELD_HEADING,
    _INTRO,
    _POINTED,
    _DECORATED,
    _PlainName(),
    _RuledOff(),
    _InlineName(),
)
