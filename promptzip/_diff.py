"""``promptzip diff``: each source as it was, with what the model did not get marked.

Kept text is printed as it is; dropped text (:attr:`Result.dropped`) is red and struck through in a terminal, or
wrapped as ``[-…-]`` without colour (as wdiff marks a deletion), so the view stays readable in a pipe or a file.
Text the model got that is not in the source verbatim, a summary standing in for a chunk, follows that chunk as
``{+…+}`` (green in a terminal). A footer gives tokens in and out, the ratio and how much was dropped.

    promptzip diff report.txt -q "What failed?" -b 300
    promptzip diff a.md b.md -q "..." -r 0.3 --color never | less
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

from promptzip._types import Budget, Chunk, ChunkResult, Result, Source, source_chunks

__all__ = ["add_diff_command", "render_diff"]

STRIKE_RED = "\x1b[9;31m"
GREEN = "\x1b[32m"
RESET = "\x1b[0m"


def _plain(opening: str, closing: str) -> Callable[[str], str]:
    return lambda text: f"{opening}{text}{closing}"


def _colour(code: str) -> Callable[[str], str]:
    # Each line is wrapped on its own, so a pager that resets attributes at line ends (less -R) still shows them.
    return lambda text: "\n".join(f"{code}{line}{RESET}" if line else line for line in text.split("\n"))


def render_diff(result: Result, *, color: bool) -> str:
    """Every source of ``result`` with its dropped spans marked, then a footer line.

    Sources are headed ``==> id <==`` when there are several. ``color=True`` marks dropped text with ANSI
    strikethrough red (``ESC[9;31m``…``ESC[0m``), else with ``[-…-]``; a chunk's text that has no verbatim source
    spans (a summary) follows the chunk as ``{+…+}``, green with ``color``.
    """
    deleted = _colour(STRIKE_RED) if color else _plain("[-", "-]")
    inserted = _colour(GREEN) if color else _plain("{+", "+}")
    views = source_chunks(result.sources, result.chunks)
    parts: list[str] = []
    for view in views:
        source, offset, chunks = view
        if len(views) > 1:
            parts.append(f"==> {source.id}{' (protected)' if source.protected else ''} <==\n")
        size = len(source.text)
        inserts = [(c.end - offset, c.text) for c in chunks if c.text and not c.kept and 0 <= c.end - offset <= size]
        # Marks in source order: (position, order at that position, rendered text, length of source text covered).
        # A summary follows its chunk even inside a longer dropped span, which is cut there; at one position it comes
        # before a dropped span that starts there (it belongs to the chunk that ends there).
        marks: list[tuple[int, int, str, int]] = [(at, 0, " " + inserted(text), 0) for at, text in inserts]
        for a, b in _dropped(result, view):
            a, b = a - offset, b - offset
            if not 0 <= a < b <= size:
                continue
            cuts = [a, *sorted({at for at, _ in inserts if a < at < b}), b]
            for x, y in itertools.pairwise(cuts):
                piece = source.text[x:y]
                lead = len(piece) - len(piece.lstrip())  # the whitespace around a piece stays plain
                piece = piece.strip()
                if piece:
                    marks.append((x + lead, 1, deleted(piece), len(piece)))
        pos = 0
        for at, _, rendered, length in sorted(marks, key=lambda m: (m[0], m[1])):
            if at < pos:  # overlaps what is printed already: only a hand-made Result's spans of one id can overlap
                continue
            parts.append(source.text[pos:at])
            parts.append(rendered)
            pos = at + length
        parts.append(source.text[pos:])
        if not parts[-1].endswith("\n"):
            parts.append("\n")
    parts.append("\n" + footer(result) + "\n")
    return "".join(parts)


def _dropped(result: Result, view: tuple[Source, int, list[ChunkResult]]) -> list[tuple[int, int]]:
    """The dropped spans of the source of ``view`` (one of :func:`source_chunks`), in the chunks' coordinates.

    ``Result.dropped`` names a span's source by id only, and ids repeat (one file given twice, a ``Chunk`` whose id
    is another source's automatic ``"0"``): keyed by id, each source showed every such source's cuts, and a source
    dropped whole marked its twin dropped whole too. So the spans come from a Result of this source and its own
    chunks alone, through the same ``dropped`` rule, and the view and the footer agree on what was dropped.
    """
    source, _, chunks = view
    own = dataclasses.replace(result, sources=(source,), chunks=tuple(chunks))
    if source_chunks(own.sources, own.chunks) == [view]:
        return [(d.start, d.end) for d in own.dropped]
    # A Result made by hand with its chunks out of source order pairs differently on its own: every span of the id
    # then, which is right whenever the id is unique.
    return [(d.start, d.end) for d in result.dropped if d.source_id == source.id]


def footer(result: Result) -> str:
    """``412 → 60 tokens (6.9x), 7 spans dropped (1,234 characters)``."""
    ratio = f"{result.ratio:.1f}x" if result.tokens_out else "all dropped"
    dropped = result.dropped
    chars = sum(d.end - d.start for d in dropped)
    spans = "span" if len(dropped) == 1 else "spans"
    return (
        f"{result.tokens_in} → {result.tokens_out} tokens ({ratio}), "
        f"{len(dropped)} {spans} dropped ({chars:,} characters)"
    )


def _use_colour(choice: str, out: TextIO) -> bool:
    if choice != "auto":
        return choice == "always"
    # https://no-color.org: NO_COLOR set to anything non-empty turns colour off; so does a dumb terminal.
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return bool(getattr(out, "isatty", lambda: False)())


def _diff(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from promptzip._pipeline import Zipper
    from promptzip.cli import _read, check_arg, check_files  # the compress command's reading: files or '-', checked

    budget = Budget.coerce(args.budget, rate=args.rate)
    question = check_arg(args.question, "--question")
    files = check_files(args.files)
    zipper = Zipper.from_preset(args.preset, target=args.target, cache=args.cache, progress=err.isatty())
    docs = [_read(f, sys.stdin) for f in files]
    chunks = [Chunk(text, source_id=name) for name, text in docs]
    result = zipper.compress(chunks, question=question, budget=budget)
    if args.json:
        payload: dict[str, Any] = {"input": ", ".join(name for name, _ in docs), **result.to_dict()}
        json.dump(payload, out, ensure_ascii=False, indent=2)
        out.write("\n")
    else:
        out.write(render_diff(result, color=_use_colour(args.color, out)))
    return 0


def add_diff_command(sub: Any) -> None:
    """Add ``promptzip diff`` to the CLI's subparsers."""
    d = sub.add_parser("diff", help="compress files for a question and show what was kept and what was dropped")
    d.add_argument("files", nargs="*", help="text files; '-' or nothing reads standard input")
    d.add_argument("-q", "--question", required=True, help="the question the context must answer")
    group = d.add_mutually_exclusive_group(required=True)
    group.add_argument("-b", "--budget", type=int, help="hard cap on output tokens in the target tokenizer")
    group.add_argument("-r", "--rate", type=float, help="kept fraction of the input tokens, e.g. 0.25")
    d.add_argument("-t", "--target", default="gpt-4o", help="target model or tokenizer (default: gpt-4o)")
    d.add_argument("-p", "--preset", default="fast", help="compression preset (default: fast)")
    d.add_argument("--cache", default=None, help="cache URL: sqlite:///path, memory, none (default: user cache)")
    d.add_argument(
        "--color",
        "--colour",
        choices=["auto", "always", "never"],
        default="auto",
        help="mark dropped text in red, struck through (auto: when writing to a terminal and NO_COLOR is unset)",
    )
    d.add_argument("--json", action="store_true", help="print the result as JSON, with its dropped spans")
    d.set_defaults(func=_diff)
