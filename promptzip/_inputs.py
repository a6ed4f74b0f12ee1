"""Turn what a user passes as context into checked :class:`Source`s. Every rejection is an :class:`InputError`."""

from __future__ import annotations

from collections.abc import Sequence

from promptzip._errors import InputError
from promptzip._types import Chunk, Source

__all__ = ["Context", "as_sources", "check_text"]

Context = str | bytes | Chunk | Sequence[str | bytes | Chunk]


def _decode(value: bytes, where: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{where} is not valid UTF-8 (byte {exc.start}: {value[exc.start : exc.start + 1]!r}); "
            "decode it yourself with the right encoding",
            position=exc.start,
        ) from exc


def check_text(value: object, where: str, *, allow_empty: bool = False, allow_nul: bool = False) -> str:
    """A str (or UTF-8 bytes) that is not empty or whitespace only (and holds no NUL unless ``allow_nul``). A str
    with an unpaired surrogate (``"\\ud800"``, from JSON or from undecodable bytes in a command line) is not text: no
    provider accepts it and tokenizers refuse it, so it is an error here, as on the proxy's routes."""
    if isinstance(value, bytes | bytearray | memoryview):
        value = _decode(bytes(value), where)
    if not isinstance(value, str):
        raise InputError(f"{where} must be str, not {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise InputError(f"{where} is empty or whitespace only")
    if not allow_nul and "\x00" in value:
        raise InputError(f"{where} contains a NUL character at position {value.index(chr(0))}")
    if not value.isascii():
        _check_surrogates(value, where)
    return value


def _check_surrogates(value: str, where: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(
            f"{where} contains an unpaired surrogate {value[exc.start]!r} at position {exc.start} (invalid Unicode)",
            position=exc.start,
        ) from None


def as_sources(context: object) -> list[tuple[Source, int]]:
    """Sources with the offset of their text inside the user's original source (non-zero for Chunks)."""
    if isinstance(context, str | bytes | bytearray | memoryview | Chunk):
        items: Sequence[object] = [context]
    elif isinstance(context, Sequence):
        items = context
    else:
        raise InputError(f"context must be a str, Chunk or a sequence of them, not {type(context).__name__}")
    if not items:
        raise InputError("context is empty: give at least one non-empty text")
    sources: list[tuple[Source, int]] = []
    for i, item in enumerate(items):
        where = "context" if len(items) == 1 else f"context item {i}"
        if isinstance(item, Chunk):
            lenient = bool(item.metadata.get("lenient_tags")) if item.metadata else False
            source = Source(item.source_id, check_text(item.text, where), item.protected, lenient)
            sources.append((source, item.start))
        else:
            sources.append((Source(str(i), check_text(item, where)), 0))
    return sources
