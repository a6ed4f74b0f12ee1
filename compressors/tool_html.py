"""HTML pages: text content only, as light Markdown; the relevant blocks when even that is too long.

The page is read with the standard library's :class:`html.parser.HTMLParser` (lenient: any text is parsed).
``script``, ``style``, ``noscript``, ``svg``, ``template``, ``iframe`` and the ``head`` (but its ``title``) are
dropped. Each block becomes one paragraph with its whitespace collapsed: headings become ``#`` lines, list items
``- `` lines, table rows cells joined by `` | ``, ``pre`` a fenced block with its whitespace kept; blocks are
separated by blank lines (list items by a line break). The title comes first, as a ``#`` line, unless the first
heading says the same.

When that text does not fit the target, the title and headings (``h1`` first) are kept, then the blocks most
relevant to the query, in page order; blocks inside ``nav``, ``footer`` and ``aside`` come last. One line at the end
says how many blocks were omitted. A text is HTML when it starts with a doctype or ``<html``, or starts with a tag
and at least 15 % of it is well-known HTML tags (8 at least).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from html.parser import HTMLParser

from promptzip.compressors.tool_outputs import (
    Count,
    Reduced,
    Relevance,
    fit_prefix,
    greedy,
    marker,
    rank,
    relevance_scores,
)

__all__ = ["Block", "HtmlReducer", "html_blocks", "looks_like_html"]

_DOCTYPE = re.compile(r"\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>])", re.I | re.S)
_TAG = re.compile(
    r"</?(?:html|head|body|div|span|p|a|ul|ol|li|h[1-6]|table|tr|td|th|tbody|thead|section|article|nav|header"
    r"|footer|main|aside|script|style|meta|link|br|hr|img|form|input|button|label|pre|code|em|strong|b|i|title"
    r"|figure|blockquote|dl|dt|dd|small|svg)\b[^<>]*>",
    re.I,
)
_SKIP = frozenset("script style noscript svg template iframe object canvas".split())
_BOILER = frozenset("nav footer aside".split())
# inline elements run on within a block (table cells within their row, joined by " | "); every other element,
# known or not (XML, custom elements), starts a new block
_INLINE = frozenset(
    "a abbr b bdi bdo cite code data del dfn em font i img input ins kbd label mark q s samp select small span "
    "strong sub sup textarea time u var wbr button option td th".split()
)
_HEADINGS = {f"h{n}": n for n in range(1, 7)}


def looks_like_html(text: str) -> bool:
    if _DOCTYPE.match(text):
        return True
    if not text.lstrip().startswith("<"):
        return False
    head = text[:200_000]
    tags = [len(m.group()) for m in _TAG.finditer(head)]
    return len(tags) >= 8 and sum(tags) >= 0.15 * len(head)


@dataclass(frozen=True, slots=True)
class Block:
    kind: str  # "title", "h1".."h6", "li", "pre", "p"
    text: str
    boilerplate: bool = False  # inside nav / footer / aside

    def markdown(self) -> str:
        if self.kind == "title":
            return f"# {self.text}"
        if self.kind in _HEADINGS:
            return "#" * _HEADINGS[self.kind] + " " + self.text
        if self.kind == "li":
            return f"- {self.text}"
        if self.kind == "pre":
            return f"```\n{self.text}\n```"
        return self.text


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.title: list[str] = []
        self._buf: list[str] = []
        self._skip = self._boiler = self._li = self._pre = self._heading = 0
        self._head = self._in_title = False

    def _flush(self) -> None:
        raw = "".join(self._buf)
        self._buf.clear()
        if self._pre:
            text, kind = raw.strip("\r\n"), "pre"
            if not text.strip():
                return
        else:
            text = " ".join(raw.split())
            kind = f"h{self._heading}" if self._heading else "li" if self._li else "p"
        if text:
            self.blocks.append(Block(kind, text, self._boiler > 0))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skip += 1
        elif tag == "head":
            self._head = True
        elif tag == "body":
            self._head = False
        elif tag == "title" and not self.title:  # the page's title; any later one (an RSS item's) is text
            self._in_title = True
        elif tag in ("td", "th"):
            if "".join(self._buf).strip():
                self._buf.append(" | ")
        elif tag not in _INLINE:
            self._flush()
            self._heading = _HEADINGS.get(tag, self._heading)
            self._li += tag == "li"
            self._pre += tag == "pre"
            self._boiler += tag in _BOILER

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag == "head":
            self._head = False
        elif tag == "title":
            self._in_title = False
        elif tag not in _INLINE:
            self._flush()
            if tag in _HEADINGS:
                self._heading = 0
            self._li = max(0, self._li - (tag == "li"))
            self._pre = max(0, self._pre - (tag == "pre"))
            self._boiler = max(0, self._boiler - (tag in _BOILER))

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._in_title:
            self.title.append(data)
        elif not self._head:
            self._buf.append(data)


def html_blocks(text: str) -> list[Block]:
    """The page's text blocks in order, the title first (see the module docstring)."""
    parser = _Text()
    with contextlib.suppress(AssertionError, ValueError):  # markup it gives up on: keep what it read so far
        parser.feed(text)
        parser.close()
    parser._flush()
    blocks = parser.blocks
    title = " ".join("".join(parser.title).split())
    first_heading = next((b.text for b in blocks if b.kind in _HEADINGS), None)
    if title and title != first_heading:
        blocks.insert(0, Block("title", title))
    return blocks


def _join(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    for i, b in enumerate(blocks):
        if i:
            out.append("\n" if b.kind == "li" and blocks[i - 1].kind == "li" else "\n\n")
        out.append(b.markdown())
    return "".join(out)


@dataclass(frozen=True, slots=True)
class HtmlReducer:
    """HTML: text content with headings; headings and the most relevant blocks when that is still too long."""

    kind: str = "html"

    def detect(self, text: str) -> bool:
        return looks_like_html(text)

    def reduce(
        self,
        text: str,
        *,
        query: str | None,
        target_tokens: int,
        count: Count,
        relevance: Relevance | None,
        expand_id: str,
    ) -> Reduced | None:
        if not looks_like_html(text) or count(text) <= target_tokens:
            return None
        blocks = html_blocks(text)
        if not blocks:
            return None
        full = _join(blocks)
        tokens = count(full)
        if tokens <= target_tokens:
            return Reduced(full, "html", tokens, len(blocks), len(blocks))
        texts = [b.markdown() for b in blocks]
        scores = relevance_scores(texts, query, relevance)
        tiers = [0 if b.kind == "title" else _HEADINGS.get(b.kind, 8 if b.boilerplate else 7) for b in blocks]

        def render(kept: Sequence[int]) -> str:
            chosen = [blocks[i] for i in sorted(kept)]
            if len(chosen) == len(blocks):
                return full
            note = marker(f"{len(blocks) - len(chosen)} of {len(blocks)} blocks omitted", expand_id)
            return (_join(chosen) + "\n\n" + note) if chosen else note

        skeleton = count(render(()))
        picked = greedy(rank(scores, tiers), lambda i: count(texts[i]) + 1, target_tokens - skeleton)
        out, k, tokens = fit_prefix(picked, render, count, target_tokens)
        return Reduced(out, "html", tokens, len(blocks), k)
