"""Request understanding: which part of a text is instruction, which is context, which is the question.

Every door (``compress_messages``, string prompts, the proxy, ``wrap``/``compress_call``, the LangChain Runnable)
calls :func:`understand` on each text it carries, so they all find the same regions. A :class:`Layout` covers its
text completely with :class:`Region`s in order; only ``context`` regions are ever compressed, everything else goes
out byte for byte. The rules, first match wins:

1. JSON: a text that is one JSON value (a tool result) is protected, so it stays valid JSON. A raw prompt in a chat
   template (it opens with ``<|im_start|>``, ``<|begin_of_text|>``, ``[INST]``, ``<start_of_turn>`` …) has its
   markers protected and each turn's content read by these rules as a message of that turn's role would be, the
   last user turn as the turn being answered and an open assistant turn at its end (a prefill) kept as written
   (:mod:`promptzip._rules_templates`); so has a raw prompt of role lines that ends with the assistant's word
   (Vicuna's ``USER: … ASSISTANT:``, ``Human: … Assistant:``). An Alpaca prompt (it ends with ``### Response:``) is
   read by these rules up to that line, its section header lines kept (:mod:`promptzip._rules_role_lines`,
   :mod:`promptzip._understand_raw`).
2. promptzip's own tags (``<pz keep>``, ``<pz rate=…>``): the user marked the text up, so it is context as a whole
   and the splitter honours the tags. Tags that do not parse (a stray ``</pz>``, ``<pz Paris>``) are the text's
   own: each is protected where it stands, as is what a well-formed ``<pz keep>`` among them encloses, and the
   rest of the text goes on to the rules below.
3. XML-style document tags: any element whose name says document, context, source, passage or search result
   (``<documents><document index="1">…``, ``<context>``, ``<search_results>``), with attributes and nesting. Each
   innermost element is one context region with its own source; tags and the text between elements are protected;
   a short one-line ``<source>`` inside a document is metadata and protected. Tags that do not pair up are text.
   The same names in square brackets (``[CONTEXT]…[/CONTEXT]``, ``[DOCUMENT 1]…[/DOCUMENT 1]``, AnythingLLM's
   ``[CONTEXT 0]:…[END CONTEXT 0]``) are read so in a text with no XML document tags, when they pair up; a
   ``[QUESTION]`` wrapper or label comes off the question.
4. Delimited blocks: lines of five or more ``-`` (LlamaIndex's fences around the context, or separators between
   documents: each block between two lines is read on its own, see :mod:`promptzip._rules_separators`), ``\"\"\"``
   fences, and headings (``Context:``, ``Documents:``, ``Sources:``, ``### Context``, ``New Context:``,
   ``Context is:``, DSPy's ``[[ ## context ## ]]``, a sentence that introduces the context on its own line such as
   CrewAI's ``This is the context you're working with:`` …): what they enclose, or what follows the heading up to a
   label (``Question:``, ``Query:``, ``Answer:``, ``Instruction:``, ``## Instructions``, any DSPy field marker …),
   is context, less the template's words at its end (an instruction before ``Question:``, CrewAI's ``Begin! …`` and
   ``Thought:``) and at its start (``Context:\\n\\nNever invent facts.\\n\\n…``; a document's first paragraph that
   merely opens as an instruction may, ``According to the 2010 census…``, stays context), and a rule on the prompt's
   own parts on the line right after the last document or before the first one (``…by the lifeboat.\\nOnly use
   the provided context.``; a how-to's last step, ``Keep refrigerated.``, stays context). A heading over a bare
   template slot (``{context}``, a template showing its own layout) is not.
5. Layout, when nothing marks the context and the text is long (``LAYOUT_MIN_CHARS``), or shorter with a first
   paragraph that sends the model to the documents after it (``Use the following pieces of context …``) or one of
   its last three to those above it (``… using only the documents above.``): up to two short leading paragraphs that
   read as instructions (or, in the turn being answered, a first one that asks a question) and the template's words
   after them are kept (so is a first line glued to the first document that points at the documents, ``Use the
   following pieces of context to answer…``: :mod:`promptzip._rules_pointers`), short trailing paragraphs in the
   template's words (``Instruction: …``, ``Begin! …``, ``Thought:``) are kept in any role, a short trailing question
   or request is kept (user turns), and the long middle is context. One long paragraph is an instruction, unless the
   closing words call it the documents, or it is data pasted before the question of the turn being answered
   (records: short lines that nearly all hold a figure, after an optional introduction line ending in a colon; not
   code, JSON or HTML).

Inside the context any rule but 3 found, documents that each open with a header line of their own (RAGFlow's
``---``/``ID: 3``, ``Document 2:``, Onyx's ``DOCUMENT 1: Handbook``, ``[4]`` alone on its line; two or more, written
alike) are document elements whose header is the tag, so an id never leaves its document or stays without it; a text
that opens with such records and has no context heading before them is read by them before the heading rule runs,
whose ``Source:`` would take a record's metadata line for a heading (:mod:`promptzip._rules_records`).

In every case a question label outside the context starts a question region (to the end of its paragraph, of its
first line when that ends in ``?``, or to a line that names a field such as ``We have provided an existing
answer:``): ``Question:``, ``Query:``, ``Q:``, a Markdown ``## Question`` line, DSPy's ``[[ ## question ## ]]``, and
the spelled out forms ``User's question is:`` or ``The original query is as follows:``; what relevance is scored
against is its text after the label. Without a label, the question is the last paragraph after the context that
asks, else the first one before it that asks (or a line of it that ends in ``?``); closing words after the context
that ask nothing (``Answer briefly.``) give way to a line that asks ``…?`` before it and stay instruction; one found
under a task label (CrewAI's ``Current Task: …?``, indented or not) ends and is scored as a labelled one. Anything no
rule places is ``instruction`` (kept verbatim). Code fences inside a context region are kept whole by the splitter.

The rules that find context spans (1, 3, 4, 5) are in :mod:`promptzip._rules`, :mod:`promptzip._rules_templates`,
:mod:`promptzip._rules_tags`, :mod:`promptzip._rules_separators` and :mod:`promptzip._rules_layout` (list items that
read as the template's rules, ``1. Cite each note…``, in :mod:`promptzip._rules_lists`), the records inside them in
:mod:`promptzip._rules_records`, the unlabelled question in :mod:`promptzip._rules_questions` and the words it is
scored by in :mod:`promptzip._rules_query`; this module holds :class:`Layout`, :class:`Region` and :class:`Element`,
rule 2, the order the rules run in, and how their spans become regions, question regions and document elements.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from promptzip._errors import InputError
from promptzip._request_memo import request_memo
from promptzip._rules import (
    BLANK_LINE,
    FIELD_LINE,
    HEADING,
    LABEL,
    QUESTION_LABELS,
    delimited,
    headed,
    is_json,
    label_name,
    starts_with_question,
    strip_span,
)
from promptzip._rules_layout import LAYOUT_MIN_CHARS, by_layout
from promptzip._rules_query import ASKING_LABELS, label_free, unwrapped
from promptzip._rules_questions import unlabelled_question
from promptzip._rules_records import record_block, recorded
from promptzip._rules_role_lines import alpaca_response, role_line_turns
from promptzip._rules_separators import separated
from promptzip._rules_tags import tagged
from promptzip._rules_templates import template_turns
from promptzip._split import literal_tags, parse_tags

__all__ = ["LAYOUT_MIN_CHARS", "Element", "Layout", "Region", "understand"]

_PZ = re.compile(r"<\s*/?\s*pz(?=[\s>/])", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Region:
    """``text[start:end]`` of one kind: ``instruction`` | ``context`` | ``question`` | ``protected``.

    ``rule`` says what found it (``pz``, ``json``, ``tag``, ``fence``, ``heading``, ``layout``, ``label``,
    ``whole``); ``query`` is what relevance scores against for a question region (its text after the label)."""

    kind: str
    start: int
    end: int
    rule: str = ""
    query: str = ""


@dataclass(frozen=True, slots=True)
class Element:
    """A document-like XML element ``text[start:end]`` and the indexes of the context regions inside it: when none of
    them keeps any text, the whole element (tags included) leaves the output."""

    start: int
    end: int
    regions: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Layout:
    text: str
    regions: tuple[Region, ...]
    elements: tuple[Element, ...] = ()

    @property
    def context(self) -> list[int]:
        """Indexes of the context regions."""
        return [i for i, r in enumerate(self.regions) if r.kind == "context"]

    @property
    def question(self) -> str | None:
        """The question's text (labels removed), when the text has one."""
        parts = [r.query or self.text[r.start : r.end].strip() for r in self.regions if r.kind == "question"]
        joined = " ".join(p for p in parts if p).strip()
        return joined or None

    def fixed_text(self) -> str:
        """What goes out verbatim whatever is kept: the text outside context regions, less the tags of document
        elements (they leave with their element when nothing of it is kept)."""
        keep = bytearray(b"\x01") * len(self.text)
        for r in self.regions:
            if r.kind == "context":
                keep[r.start : r.end] = bytes(r.end - r.start)
        for e in self.elements:
            end = _after_element(self.text, e.start, e.end)
            keep[e.start : end] = bytes(end - e.start)
        return "".join(ch for ch, k in zip(self.text, keep, strict=True) if k)

    def overhead(self, count: Callable[[str], int]) -> dict[int, int]:
        """Tokens that each context region brings along when any of it is kept: its share of the tags of the
        outermost document element around it (they leave with the element)."""
        shares: dict[int, int] = {}
        for e in _outermost(self.elements):
            inside = [self.regions[i] for i in e.regions]
            pieces, pos = [], e.start
            for r in sorted(inside, key=lambda r: r.start):
                pieces.append(self.text[pos : r.start])
                pos = r.end
            pieces.append(self.text[pos : e.end])
            tokens = count("".join(pieces))
            for i in e.regions:
                shares[i] = shares.get(i, 0) + -(-tokens // len(e.regions))
        return shares

    def rebuild(self, outputs: dict[int, str]) -> str:
        """The text with each context region ``i`` replaced by ``outputs[i]`` (absent: unchanged), and every
        document element whose context regions all came out empty removed whole."""
        cuts = [(e.start, _after_element(self.text, e.start, e.end), "") for e in _removed_elements(self, outputs)]
        starts = [a for a, _, _ in cuts]
        for i, r in enumerate(self.regions):
            if r.kind != "context" or i not in outputs:
                continue
            k = bisect.bisect_right(starts, r.start) - 1
            if k < 0 or r.start >= cuts[k][1]:  # not inside a removed element
                cuts.append((r.start, r.end, outputs[i]))
        pieces: list[str] = []
        pos = 0
        for a, b, new in sorted(cuts):
            pieces += [self.text[pos:a], new]
            pos = b
        pieces.append(self.text[pos:])
        return "".join(pieces)


def understand(text: str, *, role: str = "user", last_user: bool = True, history: bool = False) -> Layout:
    """The regions of ``text``, a message of ``role`` (``last_user``: it is the turn being answered; ``history``:
    an earlier turn or a tool result, whose unmarked text is all context)."""
    # A request reads a message more than once (its question first, then its plan, again for each budget it tries);
    # a layout is a function of these four, so the request's memo keeps it for the later reads.
    memo = request_memo("understand.layouts")
    if memo is None:
        return _understood(text, role, last_user, history)
    key = (text, role, last_user, history)
    found: Layout | None = memo.get(key)
    if found is None:
        found = memo[key] = _understood(text, role, last_user, history)
    return found


def _understood(text: str, role: str, last_user: bool, history: bool) -> Layout:
    if not text.strip():
        return Layout(text, (Region("protected", 0, len(text), "empty"),))
    if is_json(text):  # before promptzip's tags: a JSON string that holds "<pz keep>" is still JSON
        return Layout(text, (Region("protected", 0, len(text), "json"),))
    turns = template_turns(text)
    if turns is None:
        turns = role_line_turns(text)
    if turns is not None:
        from promptzip._understand_raw import templated

        return templated(text, turns, role=role, last_user=last_user, history=history)
    response = alpaca_response(text)
    if response is not None:
        from promptzip._understand_raw import sectioned

        return sectioned(text, response, role=role, last_user=last_user, history=history)
    literal: list[tuple[int, int]] = []
    if _PZ.search(text):
        try:
            parse_tags(text)
        except InputError:
            # Protecting the whole text instead would leave a chat that merely mentions "</pz>" uncompressible.
            literal = literal_tags(text)
            ends, starts = [0, *(b for _, b in literal)], [*(a for a, _ in literal), len(text)]
            if not "".join(text[p:a] for p, a in zip(ends, starts, strict=True)).strip():  # nothing else
                return Layout(text, (Region("protected", 0, len(text), "pz"),))
        else:
            return Layout(text, (Region("context", 0, len(text), "pz"),))
    spans, elements, unpaired = tagged(text)
    rule = "tag"
    if unpaired and not history:  # a document tag that does not pair up: the structure is unclear, keep it all
        return Layout(text, (Region("protected", 0, len(text), "unclear"),))
    if not spans:
        spans, rule = separated(text) or delimited(text), "fence"
    if not spans:
        spans, rule = record_block(text, trailing_question=role == "user" and last_user), "records"
    if not spans:
        spans, rule = headed(text, trailing_question=role == "user" and last_user), "heading"
    if not spans and history:
        spans, rule = [(0, len(text))], "whole"
    if not spans and role in ("system", "developer", "user") and not starts_with_question(text):
        spans, rule = by_layout(text, trailing_question=role == "user" and last_user), "layout"
    if rule != "tag":
        spans, elements = recorded(text, spans)
    regions = _fill(text, spans, rule)
    if literal:
        regions = _carve(text, regions, literal)
    if role == "user" and last_user:
        regions = _with_question(text, regions)
    layout = Layout(text, tuple(regions), ())
    if elements:
        layout = Layout(text, layout.regions, _map_elements(layout, elements))
    return layout


# ---------------------------------------------------------------------------------------------------- regions
def _fill(text: str, spans: list[tuple[int, int]], rule: str) -> list[Region]:
    regions: list[Region] = []
    pos = 0
    for a, b in sorted(spans):
        if a < pos:
            continue
        if a > pos:
            regions.append(Region("instruction", pos, a))
        regions.append(Region("context", a, b, rule))
        pos = b
    if pos < len(text):
        regions.append(Region("instruction", pos, len(text)))
    return regions


def _carve(text: str, regions: list[Region], keep: list[tuple[int, int]], rule: str = "pz") -> list[Region]:
    """The regions with ``keep`` (sorted, disjoint) cut out of the context ones as protected regions; what is left of
    a context region is context again, trimmed, so the splitter never sees one of those spans."""
    out: list[Region] = []
    k = 0
    for r in regions:
        if r.kind != "context":
            out.append(r)
            continue
        while k < len(keep) and keep[k][1] <= r.start:
            k += 1
        pos, j = r.start, k
        while j < len(keep) and keep[j][0] < r.end:
            a, b = max(keep[j][0], r.start), min(keep[j][1], r.end)
            out += _piece(text, pos, a, r.rule)
            out.append(Region("protected", a, b, rule))
            pos, j = b, j + 1
        out += _piece(text, pos, r.end, r.rule)
    return out


def _piece(text: str, a: int, b: int, rule: str) -> list[Region]:
    """``text[a:b]`` as a context region, with the blanks around it protected (all of it when it is blank)."""
    if a >= b:
        return []
    s, e = strip_span(text, a, b)
    if s >= e:
        return [Region("protected", a, b, "pz")]
    out = [Region("protected", a, s, "pz")] if s > a else []
    out.append(Region("context", s, e, rule))
    return out + ([Region("protected", e, b, "pz")] if e < b else [])


def _with_question(text: str, regions: list[Region]) -> list[Region]:
    """The turn being answered: labelled questions become question regions; without a label, the text after the
    last context region (or before the first) is the question; with no context at all, the whole text is."""
    has_context = any(r.kind == "context" for r in regions)
    if not has_context:
        return [Region("question", 0, len(text), "whole", label_free(text))]
    out: list[Region] = []
    found = False
    for r in regions:
        if r.kind != "instruction":
            out.append(r)
            continue
        pos = r.start
        for m in LABEL.finditer(text, r.start, r.end):
            if label_name(m) not in QUESTION_LABELS:
                continue
            end = _question_end(text, m.end(), r.end)
            if m.start() > pos:
                out.append(Region("instruction", pos, m.start()))
            out.append(Region("question", m.start(), end, "label", unwrapped(text[m.end() : end])))
            found = True
            pos = end
        if pos < r.end:
            out.append(Region("instruction", pos, r.end))
    if found:
        return out
    found_at = unlabelled_question(text, [(r.kind, r.start, r.end) for r in out])
    if found_at is not None:
        target, a, b = found_at
        r = out[target]
        query = label_free(text[a:b])
        # from its line's start: "^" matches only there, and a label may be indented ("  Current Task: …?")
        line_start = text.rfind("\n", 0, a) + 1
        label = LABEL.match(text, line_start, b) if not text[line_start:a].strip() else None
        if label is not None and label_name(label) in ASKING_LABELS:
            # a label the question was found under ("Current Task: …?", CrewAI's) is trimmed as a question label is
            b = _question_end(text, label.end(), b)
            query = unwrapped(text[label.end() : b])
        pieces = [Region("instruction", r.start, a)] if a > r.start else []
        pieces.append(Region("question", a, b, "layout", query))
        if b < r.end:
            pieces.append(Region("instruction", b, r.end))
        out[target : target + 1] = pieces
    return out


def _question_end(text: str, start: int, limit: int) -> int:
    """A labelled question runs to a blank line, the next label or the end of its region; one whose first line ends
    in ``?`` ends there, and one followed by a line that names a field ("We have provided an existing answer: …",
    LlamaIndex's refine prompt) ends before it."""
    end = limit
    blank = BLANK_LINE.search(text, start, limit)
    if blank is not None:
        end = blank.start()
    first = start + len(text[start:end]) - len(text[start:end].lstrip())
    line_end = text.find("\n", first, end)
    if line_end >= 0 and text[first:line_end].rstrip().endswith("?"):
        end = line_end
    for pattern in (LABEL, HEADING, FIELD_LINE):
        stop = pattern.search(text, start, end)
        if stop is not None:
            end = stop.start()
    while end > start and text[end - 1].isspace():
        end -= 1
    return end


def _map_elements(layout: Layout, elements: list[tuple[int, int, list[tuple[int, int]]]]) -> tuple[Element, ...]:
    # By position rather than by span: a region cut around a literal tag (_carve) is still its element's.
    context = [(r.start, r.end, i) for i, r in enumerate(layout.regions) if r.kind == "context"]
    starts = [c[0] for c in context]
    out = []
    for a, b, spans in sorted(elements):
        if not spans:
            continue
        inside = []
        # Walked by index: a slice from the element's first region would copy the rest of the list for every element.
        for k in range(bisect.bisect_left(starts, a), len(context)):
            start, end, i = context[k]
            if start >= b:
                break
            if end <= b:
                inside.append(i)
        out.append(Element(a, b, tuple(inside)))
    return tuple(out)


def _removed_elements(layout: Layout, outputs: dict[int, str]) -> list[Element]:
    """The outermost elements whose every context region came out empty."""
    empty = [
        e for e in layout.elements if e.regions and all(i in outputs and not outputs[i].strip() for i in e.regions)
    ]
    return _outermost(empty)


def _outermost(elements: Sequence[Element]) -> list[Element]:
    """The elements not inside another one, by position (elements nest or are disjoint)."""
    out: list[Element] = []
    for e in sorted(elements, key=lambda e: (e.start, -e.end)):
        if not out or e.start >= out[-1].end:
            out.append(e)
    return out


def _after_element(text: str, start: int, end: int) -> int:
    """Where the text resumes after a removed element: its line break goes with it, and so does the blank line after
    it when it stood as a paragraph of its own (blank line or start before it), so no blank lines pile up."""
    pos = end
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    if pos >= len(text) or text[pos] != "\n":
        return end
    pos += 1
    own_paragraph = start == 0 or text.endswith("\n\n", 0, start)
    return pos + 1 if own_paragraph and text.startswith("\n", pos) else pos
