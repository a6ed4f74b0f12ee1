"""Request understanding for raw prompts, a whole conversation in one string: the turns of a chat template or of
role lines (:mod:`promptzip._rules_templates`, :mod:`promptzip._rules_role_lines`) each read as a message of its role,
and an Alpaca prompt's sections (:func:`sectioned`). Called by :func:`promptzip._understand.understand`."""

from __future__ import annotations

from promptzip._rules import strip_span
from promptzip._rules_layout import LAYOUT_MIN_CHARS
from promptzip._rules_query import label_free
from promptzip._rules_role_lines import section_headers
from promptzip._rules_templates import Turn
from promptzip._understand import Element, Layout, Region, _carve, understand

__all__ = ["sectioned", "templated"]


def sectioned(text: str, response: int, *, role: str, last_user: bool, history: bool) -> Layout:
    """An Alpaca prompt: the text before its closing ``### Response:`` line read as one message of ``role``, its
    section header lines cut out of the context, and that closing line kept (:mod:`promptzip._rules_role_lines`)."""
    headers = section_headers(text[:response])
    asked = _input_question(text, response, headers) if role == "user" and last_user and not history else None
    if asked is not None:  # the input is the question alone: what comes before it reads as a system prompt would
        inner = understand(text[: asked[0]], role="system", last_user=False)
    else:
        inner = understand(text[:response], role=role, last_user=last_user, history=history)
    # one pass over the regions and the header lines together: a prompt may hold thousands of each
    header_end = dict(headers)
    opened = [
        piece
        for r in inner.regions
        for piece in (_headed_question(text, r, header_end[r.start]) if r.start in header_end else [r])
    ]
    regions = _carve(text, opened, headers, rule="template")
    moved: dict[int, list[int]] = {i: [] for i in range(len(inner.regions))}  # inner index -> its context pieces
    i = 0
    for j, piece in enumerate(regions):  # both lists run in text order, each piece inside one inner region
        while inner.regions[i].end <= piece.start and i + 1 < len(inner.regions):
            i += 1
        if piece.kind == "context":
            moved[i].append(j)
    if asked is not None:
        header, start, end = asked
        regions += [
            Region("protected", header, start, "template"),
            Region("question", start, end, "whole", label_free(text[start:end])),
        ]
        if end < response:
            regions.append(Region("protected", end, response, "template"))
    regions.append(Region("protected", response, len(text), "template"))
    elements = tuple(Element(e.start, e.end, tuple(j for k in e.regions for j in moved[k])) for e in inner.elements)
    return Layout(text, tuple(regions), elements)


def _input_question(text: str, response: int, headers: list[tuple[int, int]]) -> tuple[int, int, int] | None:
    """(where the ``### Input:`` line starts, where its content starts and ends) when that content is one short
    paragraph, the question as a lone user message would be; else ``None`` (the input holds documents)."""
    if not headers or not text[headers[-1][0] : headers[-1][1]].lstrip("# \t").startswith("Input"):
        return None
    start, end = strip_span(text, headers[-1][1], response)
    body = text[start:end]
    if not body or "\n\n" in body or len(body) >= LAYOUT_MIN_CHARS:
        return None
    return headers[-1][0], start, end


def _headed_question(text: str, r: Region, header_end: int) -> list[Region]:
    """A region as it is, or a question region that opens with a section header line (ending at ``header_end``) as
    that line (protected) and the question after it."""
    if r.kind != "question":
        return [r]
    start, end = strip_span(text, header_end, r.end)
    if start >= end:
        return [Region("protected", r.start, r.end, "template")]
    header = text[r.start : start]
    query = r.query[len(header.strip()) :].strip() if r.query.startswith(header.strip()) else r.query
    return [Region("protected", r.start, start, "template"), Region("question", start, r.end, r.rule, query)]


def templated(text: str, turns: list[Turn], *, role: str, last_user: bool, history: bool) -> Layout:
    """A raw prompt in a chat template: its markers protected, each turn's content understood as a message of that
    role (the last user turn as the turn being answered, when the text is), and the layouts joined."""
    answered = role == "user" and last_user and not history
    last = max((i for i, t in enumerate(turns) if t.role == "user"), default=-1) if answered else -1
    regions: list[Region] = []
    elements: list[Element] = []
    for i, t in enumerate(turns):
        if t.role == "assistant" and t.end == len(text) and text[t.start : t.end].strip():
            # an open assistant turn at the end is a prefill the model goes on from: it goes out as written
            regions.append(Region("instruction", t.start, t.end, "template"))
            continue
        if t.role == "marker" or not text[t.start : t.end].strip():
            regions.append(Region("protected", t.start, t.end, "template"))
            continue
        if t.role not in ("system", "user", "assistant", "tool"):  # between turns, or a role kept as it is
            regions.append(Region("instruction", t.start, t.end, "template"))
            continue
        earlier = history or t.role in ("assistant", "tool") or (t.role == "user" and i != last)
        inner = understand(text[t.start : t.end], role=t.role, last_user=i == last, history=earlier)
        base = len(regions)
        regions += [Region(r.kind, r.start + t.start, r.end + t.start, r.rule, r.query) for r in inner.regions]
        elements += [
            Element(e.start + t.start, e.end + t.start, tuple(k + base for k in e.regions)) for e in inner.elements
        ]
    return Layout(text, tuple(regions), tuple(elements))


# ---------------------------------------------------------------------------------------------------- regions
