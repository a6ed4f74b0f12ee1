"""The rules that find context spans in a text, for :func:`promptzip._understand.understand`.

Each takes the text and gives ``(start, end)`` spans, knowing nothing of regions: :func:`is_json` (rule 1),
:func:`delimited` and :func:`headed` for fences and headings (rule 4), with the patterns they share with question
labelling (``LABEL`` and :func:`label_name`, ``QUESTION_LABELS``, ``HEADING``, ``FIELD_LINE``, ``BLANK_LINE``),
what reads as the template's own words (:func:`is_directive`, :func:`is_request`, :func:`is_template`; given up at
either end of a context block by :func:`trim_start` and :func:`trim_end`, whole paragraphs, or the lines of a rule on
the prompt's own parts glued to a document, :func:`glued_rules`) and the span helpers (:func:`paragraphs`,
:func:`strip_span`). Lines of dashes have a module of their own, :mod:`promptzip._rules_separators`, as do the
heading lines, :mod:`promptzip._rules_headings`, backtick fences, :mod:`promptzip._rules_fences`, list items,
:mod:`promptzip._rules_lists`, XML-style document tags (rule 3), :mod:`promptzip._rules_tags`, and the layout rule
(rule 5), :mod:`promptzip._rules_layout`.
"""

from __future__ import annotations

import json
import re

from promptzip._rules_fences import prose_fences
from promptzip._rules_headings import HEADING
from promptzip._rules_headings import HEADINGS as _HEADINGS
from promptzip._rules_headings import NOUNS as _NOUNS
from promptzip._rules_lists import IMPERATIVE, closes_documents, item_rules, numbered_steps, part_rule, rule_lines
from promptzip._rules_pointers import pointer_end

__all__ = [
    "BLANK_LINE",
    "FIELD_LINE",
    "HEADING",
    "LABEL",
    "MAX_LEAD_CHARS",
    "QUESTION_LABELS",
    "delimited",
    "glued_rules",
    "headed",
    "heading_end",
    "is_directive",
    "is_json",
    "is_request",
    "is_template",
    "label_name",
    "paragraphs",
    "pointed",
    "starts_with_question",
    "strip_span",
    "trim_end",
    "trim_start",
]

# A heading or fence opens context only this close to the start of its text (or to the previous heading): one
# deep inside a long text ("Background:" in a passage) belongs to that text.
MAX_LEAD_CHARS = 1500
_QUOTE_FENCE = re.compile(r'"""')
# A label is a line that opens with a label word and a colon, and also: a Markdown heading that is one label word
# ("## Instructions"), the qualified and spelled-out forms templates use ("Refined Answer:", CrewAI's "Current Task:",
# "User's question is:", "Reader's question:", "The original query is as follows:"), and any DSPy field marker, so that
# the next field ends a context field.
LABEL = re.compile(
    r"^[ \t]*(?:"
    r"(?P<md>#{1,6}[ \t]*)?(?:\*\*)?(?:the[ \t]+)?"
    r"(?:(?:original|new|refined|final|existing|current|user|[\w-]+['’]s)[ \t]+)?"
    r"(?P<name>question|query|q|user[ \t]+question|answer|a|response|instructions?|task)"
    r"(?:[ \t]+is(?:[ \t]+as[ \t]+follows)?)?(?:\*\*)?[ \t]*(?(md)(?::|(?=[ \t]*$))|:)"
    r"|\[\[[ \t]*##[ \t]*(?P<field>\w+)[ \t]*##[ \t]*\]\]"
    r")",
    re.IGNORECASE | re.MULTILINE,
)
QUESTION_LABELS = frozenset({"question", "query", "q", "user question"})
# A template's field named in a sentence ("We have provided an existing answer:", LlamaIndex's refine prompt; "This is
# the expected criteria for your final answer:", CrewAI's): not a label that opens a region, but a labelled question
# ends before it.
FIELD_LINE = re.compile(
    r"^[ \t]*+[^\n:?.!]{0,80}?\b(?:answer|response|context|criteria|instructions?|question|query)[ \t]*:",
    re.IGNORECASE | re.MULTILINE,
)
BLANK_LINE = re.compile(r"\n[ \t]*\n")
_REQUEST_CUE = re.compile(
    r"^\s*(answer|explain|summari[sz]e|describe|list|tell|what|who|whom|whose|when|where|why|how|which|is|are|"
    r"does|do|did|can|could|based on|using|given|please|now|question|respond|reply)\b",
    re.IGNORECASE,
)
# How a template speaks to the model, where a document does not: a line that opens with an imperative of prompts
# ("Answer…", "Use the…", "Begin!", "Be brief.", "Never…") or with the reader addressed ("You are…", "Your task…"),
# the model's own work named ("your answer", "your job"), or the prompt's own parts ("the documents above"). A "you"
# inside a sentence is no sign: forum posts and reviews say it all the time ("Thanks, you saved me hours").
_COMMAND = re.compile(
    rf"^[ \t]*(?:{IMPERATIVE}|based[ \t]+on|according[ \t]+to|given|if[ \t]+you|you|your)\b"
    r"|\byour[ \t]+(?:final[ \t]+)?(?:answer|response|reply|output|job|task|role|instructions?)\b"
    rf"|\b{_NOUNS}[ \t]+(?:above|below)\b|\b(?:above|below)[ \t]+{_NOUNS}\b",
    re.IGNORECASE | re.MULTILINE,
)
# At the start of a context block, a paragraph that opens as a document's may ("According to the 2010 census…",
# "Given its height…", "You can reach…", "Your guide to…") is the template's only when it points at the prompt's own
# parts ("Based on the context below, …") or tells the model what it must do ("You must…", "If you don't know…").
# An imperative's word used as a noun ("Use of the harbour…", "Keep-fit fans…") opens a document's line too.
_OPENER = re.compile(
    r"[ \t]*(?:based[ \t]+on|according[ \t]+to|given|if[ \t]+you|you|your)\b"
    rf"|[ \t]*(?:{IMPERATIVE})(?:-|[ \t]+(?:of|is|was|are|were|has|had)\b|['’]s\b)",
    re.IGNORECASE,
)
_TO_THE_MODEL = re.compile(
    rf"\b(?:{_NOUNS}|notes|information|question|query|answer|above|below|provided)\b"
    r"|^[ \t]*(?:if[ \t]+)?you[ \t]+(?:must|should|shall|will|need[ \t]+to|have[ \t]+to|cannot|can['’]t|"
    r"may[ \t]+not|do[ \t]+not|don['’]t|never|always|only|are[ \t]+(?:an?|to|given|provided|required|expected|"
    r"allowed|only|not|unsure))\b",
    re.IGNORECASE | re.MULTILINE,
)
# A one-line task that says how to answer ("Explain your reasoning step by step.", "Summarise the key points in three
# bullets.", "Summarize the documents in plain English.") speaks to the model as a rule does; one that names only what
# to work on ("Summarise what happened to the collier.") may be a document's own exercise, and stays a request.
_TASK = re.compile(
    r"[ \t]*(?:(?:briefly|clearly|concisely|carefully|first|then|also|now|please)[ \t]+)?"
    r"(?:explain|summari[sz]e|describe|list|outline|compare|discuss|analy[sz]e|identify|define)\b",
    re.IGNORECASE,
)
_COUNT = r"(?:\d{1,4}|one|two|three|four|five|six|seven|eight|nine|ten|a[ \t]+few|a[ \t]+single|a|one[ \t]+or[ \t]+two)"
_LIMIT = r"(?:at[ \t]+most|no[ \t]+more[ \t]+than|under|fewer[ \t]+than|less[ \t]+than|about|exactly|up[ \t]+to)"
_UNITS = r"(?:bullets?|bullet[ \t]+points?|sentences?|words|paragraphs?|lines|points|items|steps)"
_HOW_TO_ANSWER = re.compile(
    r"\bstep[ \t-]+by[ \t-]+step\b|\b(?:briefly|concisely|succinctly)\b"
    r"|\byour[ \t]+(?:reasoning|thinking|working|steps|sources|answer|response|reply)\b"
    rf"|\bin[ \t]+(?:{_LIMIT}[ \t]+)?{_COUNT}[ \t]+(?:(?:short|brief|concise|numbered|bulleted|simple)[ \t]+)?"
    rf"{_UNITS}\b"
    rf"|\b{_LIMIT}[ \t]+\d{{1,4}}[ \t]+(?:words|sentences|characters|tokens|lines|bullets)\b"
    r"|\bin[ \t]+(?:plain|simple|everyday|non-technical|layman['’]s)[ \t]+(?:english|language|terms|words)\b"
    r"|\bas[ \t]+(?:(?:a|an)[ \t]+)?(?:(?:short|brief|bulleted|numbered|markdown|simple)[ \t]+)*"
    r"(?:table|list|outline|json|bullet[ \t]+points|bullets)\b"
    r"|\bthe[ \t]+(?:key|main|most[ \t]+important)[ \t]+(?:points|takeaways|findings|facts|ideas)\b"
    # the prompt's own parts, the whole of what is worked on ("Summarise the documents."), not a subject that shares
    # their name ("the sources of the river", "the background to the gale")
    rf"|\b(?:{_NOUNS}|notes)[ \t]+(?:above|below)\b|\b(?:above|below)[ \t]+(?:{_NOUNS}|notes)\b"
    r"|\bthe[ \t]+(?:(?:provided|given|retrieved|relevant)[ \t]+)?"
    r"(?:context|documents|sources|passages|notes|excerpts|snippets|search[ \t]+results)[ \t]*[.!]?[ \t]*$",
    re.IGNORECASE,
)
# A question, request or instruction is short; a longer paragraph is a document's, whatever its first word.
_SHORT = 500
# A template that shows its own layout ("[[ ## context ## ]]\n{context}" in DSPy's system message) has a slot, not
# documents, under its heading.
_PLACEHOLDER = re.compile(r"\{+[ \t]*[A-Za-z_][\w.]*[ \t]*\}+")


def is_json(text: str) -> bool:
    stripped = text.strip()
    if not stripped or stripped[0] not in "{[":
        return False
    try:
        json.loads(stripped)
    except (ValueError, RecursionError):
        return False
    return True


def delimited(text: str) -> list[tuple[int, int]]:
    """Text between pairs of triple quotes (the first one near the start), or else between pairs of bare
    triple-backtick fences around prose (:func:`promptzip._rules_fences.prose_fences`; never a code block)."""
    marks = list(_QUOTE_FENCE.finditer(text))
    if marks and marks[0].start() > MAX_LEAD_CHARS:
        marks = []  # a fence deep inside a long text is the text's own, not a delimiter around it
    pairs = [(a.end(), b.start()) for a, b in zip(marks[0::2], marks[1::2], strict=False)]
    spans = []
    for a, b in pairs or prose_fences(text, MAX_LEAD_CHARS):
        s, e = strip_span(text, a, b)
        if e > s:
            spans.append((s, e))
    return spans


def headed(text: str, *, trailing_question: bool = False) -> list[tuple[int, int]]:
    """What follows a context heading, up to the next label or heading (or the end), less the template's words at its
    end (:func:`trim_end`): an instruction before ``Question:``, CrewAI's ``Begin! …`` and ``Thought:``; and at its
    start (:func:`trim_start`): rules placed straight after the heading. A short
    question or request paragraph at its end is given up too only at the end of the text, in the turn being answered
    (``trailing_question``), as the layout rule does: ``Documents:\n…\n\nHow many ships?`` asks its question after
    the documents, unlabelled; elsewhere (before ``Question:``, say) it is the documents' own."""
    spans: list[tuple[int, int]] = []
    heads = sorted((m for p in _HEADINGS for m in p.finditer(text)), key=lambda m: m.start())
    heads = [h for k, h in enumerate(heads) if k == 0 or h.start() >= heads[k - 1].end()]
    pos = 0
    kept = []
    for h in heads:  # a heading starts context only close after the start or after the previous heading
        if h.start() - pos <= MAX_LEAD_CHARS:
            kept.append(h)
            pos = h.end()
    heads = kept
    for k, h in enumerate(heads):
        stop = heads[k + 1].start() if k + 1 < len(heads) else len(text)
        label = LABEL.search(text, h.end(), stop)
        if label is not None:
            stop = label.start()
        s, e = strip_span(text, h.end(), stop)
        # only at the end of the turn being answered is a trailing question the turn's own; before a label or another
        # heading it is the documents' (a forum thread ends with one), and only the template's words are given up
        e = trim_end(text, s, e, asks=trailing_question and label is None and k + 1 == len(heads))
        s = trim_start(text, s, e)
        if e > s and not _PLACEHOLDER.fullmatch(text, s, e):
            spans.append((s, e))
    return spans


def heading_end(text: str, pos: int, end: int) -> int | None:
    """Where the context after a context heading at ``pos`` (a line start) starts, if one is there."""
    found = [m.end() for p in _HEADINGS if (m := p.match(text, pos, end)) is not None]
    return max(found) if found else None


def trim_end(text: str, s: int, e: int, *, asks: bool) -> int:
    """The end of ``text[s:e]`` less its trailing paragraphs that are the template's (:func:`is_template`, any
    number of them) and, with ``asks``, one short question or request among them; never all of it, nor a document's
    numbered steps (:func:`promptzip._rules_lists.numbered_steps`). A rule on the prompt's own parts glued to the
    last document's lines gives up only its own lines (:func:`glued_rules`)."""
    paras = [(s + a, s + b) for a, b in paragraphs(text[s:e])]
    texts = [text[a:b] for a, b in paras]
    steps = numbered_steps(texts)
    n = len(paras)
    while n:
        items = not steps[n - 1]
        template = n > 1 and is_template(texts[n - 1], items=items)
        whole = template or (n > 1 and asks and is_request(texts[n - 1]))
        glued = glued_rules(text, *paras[n - 1], at_end=True, items=items, whole=whole)
        if glued is not None:
            return glued  # only the lines of a rule glued to a document's end
        if not whole:
            break
        asks = asks and template  # one question or request at most
        n -= 1
    return paras[n - 1][1] if 0 < n < len(paras) else e


def trim_start(text: str, s: int, e: int) -> int:
    """The start of ``text[s:e]`` less its leading paragraphs that are the template's (``Context:\\n\\nNever invent
    facts.\\n\\n…``), as :func:`trim_end` gives up those at its end, and a rule glued to the first document's lines;
    never all of it. A paragraph that opens as a document's may (``_OPENER``) is the template's only when it speaks to
    the model (``_TO_THE_MODEL``)."""
    paras = [(s + a, s + b) for a, b in paragraphs(text[s:e])]
    texts = [text[a:b] for a, b in paras]
    steps = numbered_steps(texts)
    k = 0
    while k < len(paras):
        start = pointed(text, *paras[k], items=not steps[k])
        if start is not None:
            return start  # the document's lines after the template's first line that points at them
        whole = k < len(paras) - 1 and _leads(texts[k], items=not steps[k])
        glued = glued_rules(text, *paras[k], at_end=False, items=not steps[k], whole=whole)
        if glued is not None:
            return glued  # only the lines of a rule glued to a document's start
        if not whole:
            break
        k += 1
    return paras[k][0] if k else s


def pointed(text: str, a: int, b: int, *, items: bool = True) -> int | None:
    """Where the document of the paragraph ``text[a:b]`` starts, when its first line is the template's and points at
    the documents (:func:`promptzip._rules_pointers.pointer_end`), past the rules glued after that line; ``None`` when
    it is not, or when all that follows the line is the template's words too ("Use the context below.\nBe brief.")."""
    start = pointer_end(text, a, b)
    if start is None:
        return None
    start = glued_rules(text, start, b, at_end=False, items=items, whole=False) or start
    s, e = strip_span(text, start, b)
    return s if s < e and not is_directive(text[s:e], items=items) else None


def glued_rules(text: str, a: int, b: int, *, at_end: bool, items: bool = True, whole: bool = True) -> int | None:
    """Where the document's lines of the paragraph ``text[a:b]`` end (``at_end``) or start, when rules on the
    prompt's own parts are its last (first) lines, glued to a document with no blank line between
    (``…by the lifeboat.\\nOnly use the provided context.``, :func:`promptzip._rules_lists.part_rule`); ``None`` when
    there are none, or nothing else. ``whole``: the caller gives the whole paragraph up otherwise (it reads as the
    template's words or a question); then so it stays when the rest is such words or asks too (``Summarise the
    notes.\\nOnly use the provided context.``, ``items`` as :func:`is_template`)."""
    if text.find("\n", a, b) < 0:
        return None  # one line: a rule alone, or a document's
    cut = b if at_end else a  # the document's edge: rule lines are read one by one from the paragraph's edge
    while a < cut if at_end else cut < b:
        if at_end:
            nl = text.rfind("\n", a, cut)
            line, edge = text[nl + 1 if nl >= 0 else a : cut], max(nl, a)
        else:
            nl = text.find("\n", cut, b)
            line, edge = text[cut : b if nl < 0 else nl], b if nl < 0 else nl + 1
        if not part_rule(line):
            break
        cut = edge
    if cut == (b if at_end else a):
        return None
    s, e = strip_span(text, a, cut) if at_end else strip_span(text, cut, b)
    if s >= e or (whole and is_directive(text[s:e], items=items)):
        return None  # nothing else, or the whole paragraph is the template's
    return e if at_end else s


def _leads(para: str, *, items: bool) -> bool:
    """Whether a paragraph at the start of a context block is the template's (:func:`is_template`), its lines that
    open as a document's may set aside unless it speaks to the model."""
    if not is_template(para, items=items):
        return False
    if _TO_THE_MODEL.search(para):
        return True
    rest = "\n".join(line for line in para.split("\n") if not _OPENER.match(line))
    return bool(rest.strip()) and is_template(rest, items=items)


def is_directive(para: str, *, items: bool = True) -> bool:
    """A paragraph that is no document's: the template's words or a question or request (``items``: as
    :func:`is_template`)."""
    return is_template(para, items=items) or is_request(para)


def is_request(para: str) -> bool:
    """A short paragraph that asks: a question, a request ("Summarise …") or a label ("Answer:")."""
    last = para.strip()
    asks = last.endswith("?") or _REQUEST_CUE.match(last) is not None
    return (len(last) <= _SHORT and asks) or _is_label(last)


def is_template(para: str, *, items: bool = True) -> bool:
    """A short paragraph in the template's words: a label ("Instruction: …"), a cue or introduction that ends in a
    colon ("Thought:", "Here are the notes:"), or one that speaks to the model (``_COMMAND``, or with ``items`` list
    items or most lines that read as rules, :func:`promptzip._rules_lists.item_rules` and
    :func:`promptzip._rules_lists.rule_lines`; not a document's numbered steps). One line that asks ("Summarise what
    happened to town 5.") is a request (:func:`is_request`), the documents' own but in the turn being answered, unless
    it says how to answer (``_HOW_TO_ANSWER``: "Explain your reasoning step by step.")."""
    last = para.strip()
    return len(last) <= _SHORT and (
        last.endswith(":")
        or _is_label(last)
        or _COMMAND.search(last) is not None
        or ("\n" not in last and _TASK.match(last) is not None and _HOW_TO_ANSWER.search(last) is not None)
        or ("\n" not in last and closes_documents(last))
        or (items and (item_rules(last) or (rule_lines(last) and ("\n" in last or not is_request(last)))))
    )


def _is_label(para: str) -> bool:
    """A short paragraph that opens with a label ("Instruction: …", "Answer:"): the template's, not a document's."""
    return len(para) <= _SHORT and LABEL.match(para.strip()) is not None


def label_name(m: re.Match[str]) -> str:
    """The word of a ``LABEL`` match, lower case, blanks as one space: ``"user question"``, ``"context"``."""
    return " ".join((m.group("name") or m.group("field")).lower().split())


def starts_with_question(text: str) -> bool:
    """A text that opens with a question label is a question, however long; the layout rule leaves it whole."""
    m = LABEL.match(text.lstrip())
    return m is not None and label_name(m) in QUESTION_LABELS


def paragraphs(text: str) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    pos = 0
    for m in BLANK_LINE.finditer(text):
        out.append((pos, m.start()))
        pos = m.end()
    out.append((pos, len(text)))
    return [(a, b) for a, b in out if text[a:b].strip()]


def strip_span(text: str, a: int, b: int) -> tuple[int, int]:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return a, b
