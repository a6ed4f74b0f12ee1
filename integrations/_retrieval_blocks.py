"""Retrieval blocks, read as passages: Anthropic's ``document`` blocks (a plain-text ``source`` or a ``content``
source of text blocks) and ``search_result`` blocks (text blocks under ``content``), in a turn or in a tool result,
and LangChain's standard ``text-plain`` block (a plain-text document in a message's content).

Their texts are retrieved documents, so each goes to the core as context as a whole: wrapped in promptzip's own
``<pz>`` tags (rule 2 of the request understanding, whose output drops the tags), so a short passage or one that
opens with a question is not read as an instruction to keep. What a block carries beside its texts (``title``,
``context``, a search result's ``source``) is counted and kept. A block with citations enabled is counted and
kept byte for byte: its citations point into its texts by position. A document of another source (a PDF, a URL,
a file id) holds no text the proxy can read and is neither counted nor changed, as images are.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from promptzip._messages import MINIMAL_TEXT

__all__ = [
    "KINDS",
    "LANGCHAIN_KINDS",
    "citing",
    "metadata",
    "passages",
    "protected",
    "put_texts",
    "rewrite",
    "unwrap",
    "wrap",
    "wrappable",
]

KINDS = frozenset({"document", "search_result"})  # Anthropic's API
LANGCHAIN_KINDS = KINDS | {"text-plain"}  # what a LangChain message may carry (Anthropic's pass through it)
_OPEN, _CLOSE = "<pz>", "</pz>"
# Any text that already holds something tag-like for promptzip would change meaning inside the wrapper.
_PZ_LIKE = re.compile(r"<\s*/?\s*pz(?=[\s>/])", re.IGNORECASE)

Path = tuple[str | int, ...]


def citing(block: Mapping[str, Any]) -> bool:
    citations = block.get("citations")
    return isinstance(citations, dict) and citations.get("enabled") is True


def metadata(block: Mapping[str, Any]) -> Iterator[str]:
    """The strings a block sends beside its passages."""
    keys = ("title", "context", "source") if block.get("type") == "search_result" else ("title", "context")
    for key in keys:
        value = block.get(key)
        if isinstance(value, str) and value:
            yield value


def passages(block: Mapping[str, Any], path: Path) -> Iterator[tuple[Path, str]]:
    """``(path, text)`` of each passage of a retrieval block at ``path``."""
    if block.get("type") == "text-plain":
        if isinstance(block.get("text"), str):
            yield (*path, "text"), block["text"]
        return
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


def protected(text: str) -> str:
    """``text`` as the core counts and keeps it: one JSON value, which request understanding protects."""
    return json.dumps([text], ensure_ascii=False)


def rewrite(block: Mapping[str, Any], texts: Mapping[Path, str]) -> dict[str, Any]:
    """A copy of ``block`` with the passages at ``texts``' paths (relative to the block) replaced
    (:func:`put_texts`)."""
    out: dict[str, Any] = copy.deepcopy(dict(block))
    put_texts(out, texts)
    return out


def put_texts(root: Any, texts: Mapping[Path, str]) -> None:
    """Put each text at its path under ``root``, in place. An emptied text block leaves its list when another block
    stays, else it becomes :data:`MINIMAL_TEXT` (providers refuse empty texts), as does any other emptied text."""
    emptied: dict[Path, list[int]] = {}  # a list of blocks → the blocks in it that were emptied
    for path, text in texts.items():
        if text.strip():
            _at(root, path[:-1])[path[-1]] = text
        elif len(path) > 1 and path[-1] == "text" and isinstance(path[-2], int):
            emptied.setdefault(path[:-2], []).append(path[-2])
        else:
            _at(root, path[:-1])[path[-1]] = MINIMAL_TEXT
    for container in sorted(emptied, key=len, reverse=True):  # inner lists first: outer indexes stay valid
        blocks, gone = _at(root, container), sorted(emptied[container])
        if len(gone) >= len(blocks):  # nothing else left: keep the first, minimal
            blocks[gone.pop(0)]["text"] = MINIMAL_TEXT
        for j in reversed(gone):
            del blocks[j]


def _at(value: Any, path: Path) -> Any:
    for key in path:
        value = value[key]
    return value


def wrappable(text: str) -> bool:
    return _PZ_LIKE.search(text) is None


def wrap(text: str) -> str:
    return f"{_OPEN}{text}{_CLOSE}"


def unwrap(text: str) -> str:
    """A passage as the core gave it back: without the wrapper, should a text the core left alone still carry it."""
    if text.startswith(_OPEN) and text.endswith(_CLOSE):
        return text[len(_OPEN) : -len(_CLOSE)]
    return text
