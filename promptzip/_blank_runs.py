"""Encoding a text that holds a long run of blanks.

tiktoken splits a text with a backtracking regex before its byte-pair merges. On a run of about a million blanks
that regex overflows its stack and tiktoken panics (a ``PanicException``, a ``BaseException`` that ``except
Exception`` does not catch). Such a run is junk, but one request must not take down the call that reads it.

So, when the encoder panics, the text is encoded in parts cut inside its runs of one blank character at least
``2 * PART`` long, every ``PART`` characters from the run's start, leaving at least ``PART`` of it after the last cut.
The encoding of the parts joined is the encoding of the whole: a run of one blank is one piece of the pre-tokenizer
(its last blank may go to the next word, and a line break after it joins it; both lie past the last cut), and within
the piece the merges of a uniform run go in blocks from its start whose lengths divide ``PART`` (128 spaces, 16 tabs
in o200k and cl100k), so a cut at a multiple of ``PART`` from the start falls between tokens.
``tests/test_tokenizers_blank_runs.py`` checks this against the whole encoding for every tiktoken encoding
installed, blanks of seven kinds and the characters that may stand on either side of the run. A run of mixed blanks
(spaces and tabs in turn) is not cut: where it makes tiktoken panic, the text is an :class:`InputError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from promptzip._errors import InputError

__all__ = ["PART", "encode_guarded", "parts"]

PART = 1024
# A run of horizontal blanks (a line break ends one: tiktoken reads line breaks with a pattern of their own) at least
# 2 * PART long, found from its first blank only, so that the search costs the text's length however long its runs.
_LONG = re.compile(rf"(?<![^\S\r\n])[^\S\r\n]{{{2 * PART},}}")


def parts(text: str) -> list[str]:
    """``text`` cut inside each run of one blank character at least ``2 * PART`` long (see the module docstring)."""
    out: list[str] = []
    pos = 0
    for m in _LONG.finditer(text):
        start, end = m.span()
        if text.count(text[start], start, end) != end - start:
            continue
        cut = start + PART
        while cut + PART <= end:
            out.append(text[pos:cut])
            pos = cut
            cut += PART
    out.append(text[pos:])
    return out


def _panicked(exc: BaseException) -> bool:
    # pyo3 turns a Rust panic into pyo3_runtime.PanicException, a BaseException not importable by name
    return type(exc).__name__ == "PanicException"


def encode_guarded(encode: Callable[[str], list[int]], text: str, name: str) -> list[int]:
    """``encode(text)``, or, when the encoder panics on it, the encoding of its :func:`parts` joined; a text that
    still makes it panic is an :class:`InputError` (``name``: the encoding, for the message).

    Cutting only after a panic keeps the search for long runs off the path of every other text (it would cost about
    as much as encoding a text of ordinary words)."""
    try:
        return encode(text)
    except BaseException as exc:
        if not _panicked(exc):
            raise
    pieces = parts(text)
    try:
        if len(pieces) > 1:
            return [i for piece in pieces for i in encode(piece)]
    except BaseException as exc:
        if not _panicked(exc):
            raise
    raise InputError(
        f"tiktoken's {name} cannot encode this text ({len(text)} characters): its pre-tokenizer overflowed on a run "
        "of blanks"
    )
