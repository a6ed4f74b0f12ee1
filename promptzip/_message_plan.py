"""A chat read as slots: each text of each message (each content part; the pieces of a text cut around the data
blocks pasted in it) with its layout (:func:`promptzip._understand.understand`: instruction, context, question
regions) and the source id of each of its context regions, as :func:`promptzip._messages.compress_messages`
compresses them; and the question of the chat, which is in its last user turn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from promptzip._chat_format import _texts
from promptzip._structured import structured_kind
from promptzip._structured_blocks import BLOCK_ROLES, Block, split_layout, structured_blocks
from promptzip._understand import Layout, Region, understand

__all__ = [
    "Slot",
    "base_id",
    "layout_of",
    "plan",
    "question_in",
    "question_of",
    "region_ids",
    "slot_id",
    "text_slots",
    "whole",
]


@dataclass(frozen=True, slots=True)
class Slot:
    """One text piece of a request: message ``msg`` (``-1``: a string prompt), content part ``where`` (None: a str
    content), its layout, and the source id of each of its context regions."""

    msg: int
    where: Any
    layout: Layout
    ids: dict[int, str]
    kind: str | None = None  # a structured tool output (json, log, html, code): cut by its reducer, not split
    original: str | None = None  # the text before its reducer cut it (``layout`` then holds the cut text)
    offset: int = 0  # where the slot starts in its text: a text cut around its data blocks is several slots
    block: bool = False  # a data block inside a text (:mod:`promptzip._structured_blocks`), not a whole text
    tokens_cut: tuple[int, int] = (0, 0)  # a reducer's cut: the original's tokens and the cut text's

    @property
    def source_text(self) -> str:
        """The text as the request holds it."""
        return self.original if self.original is not None else self.layout.text


def whole(text: str, kind: str) -> Layout:
    return Layout(text, (Region(kind, 0, len(text), "whole", text.strip() if kind == "question" else ""),))


def layout_of(text: str, role: str, *, last_user: bool, scope: str) -> Layout:
    if "\x00" in text:  # binary junk (a pasted file, say): forwarded byte for byte, the rest still compressed
        return whole(text, "question" if role == "user" and last_user else "protected")
    if role in ("system", "developer"):
        return whole(text, "protected") if scope == "history" else understand(text, role=role, last_user=False)
    if role == "user" and last_user:
        return whole(text, "question") if scope == "history" else understand(text, role="user", last_user=True)
    return understand(text, role=role, last_user=False, history=True)


def plan(msgs: list[Mapping[str, Any]], scope: str, frozen: int = 0) -> list[Slot]:
    """The slots of a chat; the first ``frozen`` messages were sent before in this form and go out byte for byte."""
    last_user = max((i for i, m in enumerate(msgs) if m.get("role") == "user"), default=-1)
    slots: list[Slot] = []
    for i, m in enumerate(msgs):
        pieces = _texts(m)
        for where, text in pieces:
            if i < frozen:
                slots.append(Slot(i, where, whole(text, "protected"), {}))
                continue
            kind = None if "\x00" in text else structured_kind(text, str(m.get("role")), last_user=i == last_user)
            if kind is not None:
                slots.append(Slot(i, where, whole(text, "protected"), {}, kind=kind))
                continue
            slots += text_slots(i, where, text, str(m.get("role")), last_user=i == last_user, scope=scope)
    return slots


def text_slots(i: int, where: Any, text: str, role: str, *, last_user: bool, scope: str) -> list[Slot]:
    """The slots of one text: one, or, around the data blocks pasted in it, one per piece (the words between the
    blocks keep the regions the whole text was understood to have, each block is cut by its reducer)."""
    layout = layout_of(text, role, last_user=last_user, scope=scope)
    blocks: list[Block] = []
    if role in BLOCK_ROLES and "\x00" not in text and not (last_user and scope == "history"):
        blocks = structured_blocks(text)
    if not blocks:
        return [Slot(i, where, layout, region_ids(Slot(i, where, layout, {}), layout))]
    slots = [
        Slot(i, where, whole(text[a:b], "protected"), {}, kind=piece, offset=a, block=True)
        if isinstance(piece, str)
        else Slot(i, where, piece, {}, offset=a)
        for a, b, piece in split_layout(layout, blocks, asking=last_user)
    ]
    # the context regions of the pieces are numbered as those of the whole text would be
    regions = [(n, k) for n, slot in enumerate(slots) for k in slot.layout.context]
    base = base_id(slots[0])
    ids: list[dict[int, str]] = [{} for _ in slots]
    for number, (n, k) in enumerate(regions):
        ids[n][k] = base if len(regions) == 1 else f"{base}#{number}"
    return [replace(slot, ids=found) for slot, found in zip(slots, ids, strict=True)]


def question_in(slots: list[Slot], msgs: list[Mapping[str, Any]]) -> str | None:
    last_user = max((i for i, m in enumerate(msgs) if m.get("role") == "user"), default=-1)
    found = [q for s in slots if s.msg == last_user and (q := s.layout.question)]
    return " ".join(found) or None


def question_of(messages: Sequence[Mapping[str, Any]], scope: str = "all") -> str | None:
    """The question found in the last user turn of a (validated) chat, as :func:`compress_messages` scores against."""
    msgs = list(messages)
    last_user = max((i for i, m in enumerate(msgs) if m.get("role") == "user"), default=-1)
    if last_user < 0:
        return None
    slots = [
        slot
        for where, text in _texts(msgs[last_user])
        for slot in text_slots(last_user, where, text, "user", last_user=True, scope=scope)
    ]
    return question_in(slots, msgs)


def base_id(slot: Slot) -> str:
    return f"messages[{slot.msg}]" + (f".content[{slot.where}]" if slot.where is not None else "")


def slot_id(slot: Slot) -> str:
    # a data block is a source of its own, named by where it starts in its text
    return base_id(slot) + (f"@{slot.offset}" if slot.block else "")


def region_ids(slot: Slot, layout: Layout) -> dict[int, str]:
    base = slot_id(slot)
    context = layout.context
    return {k: base if len(context) == 1 else f"{base}#{n}" for n, k in enumerate(context)}
