"""LangChain messages as the core's chat (OpenAI's form), and the compressed texts put back into their own blocks.

A message's ``content`` is a string or a list of blocks. Strings and ``text`` blocks are text parts, read by the
request understanding like any chat text. Retrieval blocks are documents (:mod:`._retrieval_blocks`): LangChain's
standard ``text-plain`` block, and Anthropic's ``document`` and ``search_result`` blocks that a LangChain message
carries through to ``ChatAnthropic``; each passage is a part of its own, context as a whole, and what the block holds
beside its passages is counted and kept (a block with citations enabled is kept whole). Every other block (images,
files, tool use, reasoning) is a placeholder part: neither counted nor changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage, convert_to_openai_messages

from promptzip._errors import InputError
from promptzip.integrations import _retrieval_blocks as retrieval

__all__ = ["Place", "as_openai", "content_back"]

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Place:
    """Where a chat part's text came from: block ``block`` of the content, at ``path`` inside a retrieval block
    (``None``: the block is a string or a ``text`` block, whose text it is), sent inside promptzip's tags when
    ``wrapped``."""

    block: int
    path: Path | None
    wrapped: bool = False


def as_openai(message: BaseMessage, i: int) -> tuple[dict[str, Any], list[Place | None]]:
    """The OpenAI dict of a message (role, name, tool calls) with its content as parts, and each part's place (``None``
    for a part nothing is written back to)."""
    try:
        # Only the role, name and tool calls are taken from the conversion; the content is read here, block by
        # block, so a block OpenAI's form has no place for (a text-plain document, an Anthropic search result)
        # neither fails the conversion nor is lost.
        bare = message if isinstance(message.content, str) else message.model_copy(update={"content": ""})
        converted = convert_to_openai_messages(bare)
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise InputError(f"messages[{i}] cannot be read as a chat message: {exc}") from exc
    if isinstance(message.content, str):
        converted["content"] = message.content
        return converted, []
    parts: list[dict[str, Any]] = []
    places: list[Place | None] = []
    for j, block in enumerate(message.content):
        for part, place in _parts(block, j):
            parts.append(part)
            places.append(place)
    converted["content"] = parts
    return converted, places


def _parts(block: object, j: int) -> list[tuple[dict[str, Any], Place | None]]:
    if isinstance(block, str):
        return [({"type": "text", "text": block}, Place(j, None))]
    if not isinstance(block, dict):
        return [({"type": "opaque"}, None)]
    kind = block.get("type")
    if kind == "text" and isinstance(block.get("text"), str):
        return [({"type": "text", "text": block["text"]}, Place(j, None))]
    found = list(retrieval.passages(block, ())) if kind in retrieval.LANGCHAIN_KINDS else []
    if not found:
        return [({"type": kind if isinstance(kind, str) else "opaque"}, None)]  # image, audio, tool use, ...
    out: list[tuple[dict[str, Any], Place | None]] = [
        ({"type": "text", "text": retrieval.protected(value)}, None) for value in retrieval.metadata(block)
    ]
    kept = retrieval.citing(block)  # citations point into the passages by position
    for path, text in found:
        if kept or not retrieval.wrappable(text):
            out.append(({"type": "text", "text": retrieval.protected(text)}, None))
        else:
            out.append(({"type": "text", "text": retrieval.wrap(text)}, Place(j, path, wrapped=True)))
    return out


def content_back(
    original: str | list[Any], sent: Sequence[Any], compressed: Any, places: Sequence[Place | None]
) -> str | list[Any]:
    """``original`` content with the texts the core changed (``compressed`` parts against the ``sent`` ones) put
    back in place; blocks with no change are the caller's own objects."""
    if isinstance(original, str):
        return str(compressed)
    texts: dict[int, dict[Path, str]] = {}
    whole: dict[int, str] = {}
    for k, place in enumerate(places):
        if place is None:
            continue
        new = compressed[k].get("text")
        if not isinstance(new, str) or new == sent[k].get("text"):
            continue
        if place.wrapped:
            new = retrieval.unwrap(new)
        if place.path is None:
            whole[place.block] = new
        else:
            texts.setdefault(place.block, {})[place.path] = new
    out: list[Any] = []
    for j, block in enumerate(original):
        if j in whole:
            out.append(whole[j] if isinstance(block, str) else {**block, "text": whole[j]})
        elif j in texts and isinstance(block, dict):
            out.append(retrieval.rewrite(block, texts[j]))
        else:
            out.append(block)
    return out
