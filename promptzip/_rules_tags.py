"""XML-style document tags (rule 3 of :func:`promptzip._understand.understand`): the context spans inside elements
whose names say they hold documents (``<document>``, ``<context>``, ``<source>``, ``<search_results>`` …), the
elements themselves, and whether the tags pair up.

The same names in square brackets mark sections too (``[CONTEXT]…[/CONTEXT]``, ``[DOCUMENTS]…[/DOCUMENTS]``, and
AnythingLLM's ``[CONTEXT 0]:…[END CONTEXT 0]``), read only in a text with no XML document tags. Brackets are also
Markdown's link text and citation marks (``[Context](…)``, ``[Source 2]``), so a bracket tag that does not pair up is
just text.

A tag that does not pair up leaves the structure unclear, and the understanding step then keeps the text whole.
One exception: a template that names a tag in its own sentences (Open WebUI's "cite … only when the <source> tag
includes an explicit id attribute (e.g., <source id="1">)") writes it inside a line of prose, and never closes it
there. When every tag left unpaired is such a mention, the mentions are read as words and the rest pairs as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from promptzip._rules import strip_span

__all__ = ["tagged"]

# "<<Context>>" is a heading in guillemets, not an element: no tag starts right after a "<". A ">" may follow a tag
# (a document that opens with a quoted reply, "> …", or a doctest, ">>> …").
_TAG = re.compile(r"(?<!<)<(/?)([A-Za-z][\w:.-]*)((?:\s+[^<>]*?)?)\s*(/?)>")
# A section in square brackets, "[CONTEXT]" … "[/CONTEXT]" or "[CONTEXT 0]:" … "[END CONTEXT 0]": a name, not a link's
# text or a citation's number.
_BRACKET = re.compile(r"\[(/|END[ \t]+)?([A-Za-z][\w-]*(?:[ \t][\w-]+){0,2})\]:?")
_DOC_NAME = re.compile(r"document|context|source|passage|search[_-]?results?|snippet|excerpt", re.IGNORECASE)
# A <source> of one short line beside a document's content (Anthropic's "<document><source>a.txt</source>
# <document_content>…") is the document's metadata, a file name or a URL; <source> elements side by side, with nothing
# else in their parent (Open WebUI's "<context><source id="1">…</source>…"), are the documents.
_META_MAX_CHARS = 200
# Documents nest a few levels deep (a list of documents, a document, its content). More elements open at once are not
# a template's structure: reading them would recurse that deep, and each closing tag looks down the open ones.
_MAX_DEPTH = 32
# A template names a tag a few times; more unpaired tags than this are not mentions, and each is read along its line.
_MENTIONS = 16

Spans = list[tuple[int, int]]
Elements = list[tuple[int, int, Spans]]


@dataclass(slots=True)
class _Node:
    name: str
    open_start: int
    open_end: int
    close_start: int = -1
    close_end: int = -1
    children: list[_Node] | None = None


def tagged(text: str) -> tuple[Spans, Elements, bool]:
    """Context spans inside document-like elements, the elements (start, end, their spans), and whether some
    document-like tag did not pair up (beyond tags merely mentioned in the template's prose)."""
    tags = [m for m in _TAG.finditer(text) if _DOC_NAME.search(m.group(2)) and not m.group(4)] if "<" in text else []
    if not tags and ("[/" in text or "[END " in text):
        brackets = [m for m in _BRACKET.finditer(text) if _DOC_NAME.search(m.group(2))]
        roots, _, deep = _pair(brackets)  # a bracket tag left unpaired is text (a link, a citation)
        return ([], [], False) if deep else (*_read(text, roots), False)
    roots, orphans, deep = _pair(tags)
    if not deep and 0 < len(orphans) <= _MENTIONS and all(_in_prose(text, m) for m in orphans):
        mentioned = {id(m) for m in orphans}
        roots, orphans, deep = _pair([m for m in tags if id(m) not in mentioned])
    if deep:
        return [], [], True
    spans, elements = _read(text, roots)
    return spans, elements, bool(orphans)


def _pair(tags: list[re.Match[str]]) -> tuple[list[_Node], list[re.Match[str]], bool]:
    """The elements the tags build (each closing tag closes the innermost open one of its name), the tags that paired
    with nothing (a closing tag with no open element of its name, an opening tag never closed), and whether more
    than ``_MAX_DEPTH`` elements were open at once (then it stops: the rest is not read)."""
    orphans: list[re.Match[str]] = []
    stack: list[tuple[_Node, re.Match[str]]] = []
    roots: list[_Node] = []
    for m in tags:
        name = m.group(2).lower()
        if not m.group(1):
            if len(stack) == _MAX_DEPTH:
                return roots, orphans, True
            stack.append((_Node(name, m.start(), m.end(), children=[]), m))
            continue
        depth = next((d for d in range(len(stack) - 1, -1, -1) if stack[d][0].name == name), None)
        if depth is None:
            orphans.append(m)  # closes nothing
            continue
        orphans += [opened for _, opened in stack[depth + 1 :]]  # elements left open inside it never closed
        del stack[depth + 1 :]
        node, _ = stack.pop()
        node.close_start, node.close_end = m.start(), m.end()
        (stack[-1][0].children if stack else roots).append(node)  # type: ignore[union-attr]
    orphans += [opened for _, opened in stack]
    return roots, sorted(orphans, key=lambda m: m.start()), False


def _in_prose(text: str, m: re.Match[str]) -> bool:
    """A tag written inside a line of prose (words before it on its line, more text after it) that paired with
    nothing: the template naming the tag, not a document's edge."""
    line_start = text.rfind("\n", 0, m.start()) + 1
    line_end = text.find("\n", m.end())
    before, after = text[line_start : m.start()], text[m.end() : len(text) if line_end < 0 else line_end]
    return bool(re.search(r"\w", before)) and bool(_TAG.sub("", after).strip())


def _read(text: str, roots: list[_Node]) -> tuple[Spans, Elements]:
    spans: set[tuple[int, int]] = set()
    elements: Elements = []

    def walk(node: _Node, beside_content: bool) -> Spans:
        inner: Spans = []
        if node.children:
            content = any(child.name != "source" for child in node.children)
            for child in node.children:
                inner += walk(child, content)
        else:
            a, b = strip_span(text, node.open_end, node.close_start)
            is_meta = node.name == "source" and beside_content and b - a <= _META_MAX_CHARS and "\n" not in text[a:b]
            if b > a and not is_meta:
                inner.append((a, b))
        spans.update(inner)
        if inner:
            elements.append((node.open_start, node.close_end, inner))
        return inner

    for root in roots:
        walk(root, False)
    return sorted(spans), elements
