"""Anthropic's retrieval blocks, read as passages: ``document`` blocks (a plain-text ``source`` or a ``content``
source of text blocks) and ``search_result`` blocks (text blocks under ``content``), in a turn or in a tool result.

Their texts are retrieved documents, so each goes to the core as context as a whole: wrapped in promptzip's own
``<pz>`` tags (rule 2 of the request understanding, whose output drops the tags), so a short passage or one that
opens with a question is not read as an instruction to keep. What a block carries beside its texts (``title``,
``context``, a search result's ``source``) is counted and kept. A block with citations enabled is counted and
kept byte for byte: its citations point into its texts by position. A document of another source (a PDF, a URL,
a file id) holds no text the proxy can read and is neither counted nor changed, as images are.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

__all__ = ["KINDS", "citing", "metadata", "passages", "unwrap", "wrap", "wrappable"]

KINDS = frozenset({"document", "search_result"})
_OPEN, _CLOSE = "<pz>", "</pz>"
# Any text that already holds something tag-like for promptzip would change meaning inside the wrapper.
_PZ_LIKE = re.compile(r"<\s*/?\s*pz(?=[\s>/])", re.IGNORECASE)

Path = tuple[str | int, ...]


def citing(block: dict[str, Any]) -> bool:
    citations = block.get("citations")
    return isinstance(citations, dict) and citations.get("enabled") is True


def metadata(block: dict[str, Any]) -> Iterator[str]:
    """The strings a block sends beside its passages."""
    keys = ("title", "context", "source") if block.get("type") == "search_result" else ("title", "context")
    for key in keys:
        value = block.get(key)
        if isinstance(value, str) and value:
            yield value


def passages(block: dict[str, Any], path: Path) -> Iterator[tuple[Path, str]]:
    """``(path, text)`` of each passage of a document or search result block at ``path``."""
    if block.get("type") == "search_result":
        yield from _text_blocks(block.get("content"), (*path, "content"))
        return
    source = block.get("source")
    if not isinstance(source, dict):
        return
    if source.get("type") == "text" and isinstance(source.get("data"), str):
        yield (*path, "source", "data"), source["data"]
    elif source.get("type") == "content":
        content = source.get("content")
        if isinstance(content, str):
            yield (*path, "source", "content"), content
        else:
            yield from _text_blocks(content, (*path, "source", "content"))


def _text_blocks(blocks: object, path: Path) -> Iterator[tuple[Path, str]]:
    for k, inner in enumerate(blocks if isinstance(blocks, list) else ()):
        if isinstance(inner, dict) and inner.get("type") == "text" and isinstance(inner.get("text"), str):
            yield (*path, k, "text"), inner["text"]


def wrappable(text: str) -> bool:
    return _PZ_LIKE.search(text) is None


def wrap(text: str) -> str:
    return f"{_OPEN}{text}{_CLOSE}"


def unwrap(text: str) -> str:
    """A passage as the core gave it back: without the wrapper, should a text the core left alone still carry it."""
    if text.startswith(_OPEN) and text.endswith(_CLOSE):
        return text[len(_OPEN) : -len(_CLOSE)]
    return text
