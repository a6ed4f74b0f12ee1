"""The ``promptzip`` command line.

promptzip compress FILE... --question Q --budget 800 [--target gpt-4o] [--json]
cat doc.txt | promptzip compress - --rate 0.25
promptzip models
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from promptzip._errors import InputError, PromptZipError
from promptzip._inputs import check_text
from promptzip._types import Budget, Chunk, Result
from promptzip._version import __version__

__all__ = ["main"]


def _read(path: str, stdin: TextIO | None) -> tuple[str, str]:
    if path == "-":
        if stdin is None or stdin.closed:
            raise InputError("standard input is closed: give a file, or pipe the text in")
        try:
            data = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read().encode()
        except (OSError, ValueError) as exc:  # ValueError: "I/O operation on closed file"
            raise InputError(f"cannot read standard input: {exc}") from exc
        return "stdin", check_text(data, "standard input")
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return path, check_text(raw, path)


def check_arg(value: str | None, flag: str) -> str | None:
    """A text option as given: bytes that are not UTF-8 reach Python as unpaired surrogates, so say which option
    holds them in the terms of the command line."""
    if value is None or value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"{flag} is not valid UTF-8 (character {exc.start}): check the terminal's encoding") from None
    return value


def check_files(files: Sequence[str]) -> list[str]:
    """The files to read (standard input when none); '-' at most once, since a second read of it finds nothing."""
    if list(files).count("-") > 1:
        raise InputError("standard input ('-') can be read only once: give '-' once")
    return list(files) or ["-"]


def _summary(name: str, r: Result) -> str:
    ratio = f"{r.ratio:.1f}x" if r.tokens_out else "all dropped"
    return f"{name}: {r.tokens_in} → {r.tokens_out} tokens ({ratio}, {r.decision}) in {r.timings.get('total', 0):.2f} s"


def _compress(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from tqdm import tqdm

    from promptzip._pipeline import Zipper

    budget = Budget.coerce(args.budget, rate=args.rate)
    files = check_files(args.files)
    question, instruction = check_arg(args.question, "--question"), check_arg(args.instruction, "--instruction")
    show = not args.quiet and err.isatty()
    zipper = Zipper.from_preset(args.preset, target=args.target, cache=args.cache, reorder=args.reorder, progress=show)
    docs = [_read(f, sys.stdin) for f in tqdm(files, desc="reading", disable=not show or len(files) < 2, file=err)]
    started = time.perf_counter()
    if args.each:
        results = [
            (name, zipper.compress(text, question=question, instruction=instruction, budget=budget))
            for name, text in tqdm(docs, desc="compressing", disable=not show or len(docs) < 2, file=err)
        ]
    else:
        chunks = [Chunk(text, source_id=name) for name, text in docs]
        r = zipper.compress(chunks, question=question, instruction=instruction, budget=budget)
        results = [(", ".join(n for n, _ in docs), r)]
    if args.json:
        payload = [{"input": name, **r.to_dict()} for name, r in results]
        json.dump(payload if args.each else payload[0], out, ensure_ascii=False, indent=2)
        out.write("\n")
    else:
        for name, r in results:
            if args.each:
                out.write(f"==> {name} <==\n")
            out.write(r.text + "\n")
    if not args.quiet:
        for name, r in results:
            err.write(_summary(name, r) + "\n")
        if len(results) > 1:
            err.write(f"{len(results)} files in {time.perf_counter() - started:.2f} s\n")
    return 0


_TIKTOKEN_HINT = (
    "pip install --no-deps litellm==1.109.1 (it ships the o200k_base, cl100k_base and p50k_base files), or let "
    "tiktoken download the file into TIKTOKEN_CACHE_DIR where the network is reachable"
)


def _models(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from promptzip._models import ModelSpec, resolve_model
    from promptzip._registry import registries
    from promptzip._tokenizers import TIKTOKEN_ENCODINGS, tiktoken_rank_file

    # Every registered model: the packaged ones (minilm, smollm2-135m, minilm-tc, minilm-qa, soft-minilm-smollm2)
    # and the hub-only names, each with where it would load from now.
    rows: list[dict[str, Any]] = []
    for key in registries.models.names():
        spec: ModelSpec = registries.models.get(key)()
        row: dict[str, Any] = {"name": key, "kind": spec.kind, "hub_id": spec.hub_id, "license": spec.license}
        try:
            resolved = resolve_model(key)
            row.update(status="available", origin=resolved.origin, path=str(resolved.path))
        except PromptZipError as exc:
            row.update(status="missing", origin=None, path=None, hint=str(exc))
        rows.append(row)
    for enc in TIKTOKEN_ENCODINGS:
        found = tiktoken_rank_file(enc)  # litellm ships some encodings' files, not all (no r50k_base)
        rows.append(
            {
                "name": enc,
                "kind": "tiktoken-encoding",
                "status": "available" if found else "missing",
                "origin": found[0] if found else None,
                "path": str(found[1]) if found else None,
                **({} if found else {"hint": _TIKTOKEN_HINT}),
            }
        )
    if args.json:
        json.dump(rows, out, indent=2)
        out.write("\n")
        return 0
    for row in rows:
        where = f"{row['origin']}: {row['path']}" if row["status"] == "available" else row.get("hint", "")
        out.write(f"{row['name']:<42} {row['kind']:<18} {row['status']:<10} {where}\n")
    return 0


def _parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="promptzip", description="Compress LLM context to a token budget.")
    parser.add_argument("--version", action="version", version=f"promptzip {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compress", help="compress files (or standard input) for a question")
    c.add_argument("files", nargs="*", help="text files; '-' or nothing reads standard input")
    c.add_argument("-q", "--question", help="the question the context must answer (query-aware compression)")
    c.add_argument("--instruction", help="an instruction kept verbatim before the context")
    group = c.add_mutually_exclusive_group(required=True)
    group.add_argument("-b", "--budget", type=int, help="hard cap on output tokens in the target tokenizer")
    group.add_argument("-r", "--rate", type=float, help="kept fraction of the input tokens, e.g. 0.25")
    c.add_argument("-t", "--target", default="gpt-4o", help="target model or tokenizer (default: gpt-4o)")
    c.add_argument("-p", "--preset", default="fast", help="compression preset (default: fast)")
    c.add_argument("--cache", default=None, help="cache URL: sqlite:///path, memory, none (default: user cache)")
    c.add_argument("--reorder", default="original", choices=["original", "relevance", "lost_in_the_middle"])
    c.add_argument("--each", action="store_true", help="compress each file on its own instead of together")
    c.add_argument("--json", action="store_true", help="print the result as JSON (text, tokens, provenance)")
    c.add_argument("--quiet", action="store_true", help="no progress bars or summary on standard error")
    c.set_defaults(func=_compress)

    m = sub.add_parser("models", help="list the models promptzip can load and where they come from")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=_models)

    from promptzip._diff import add_diff_command

    add_diff_command(sub)

    from promptzip._warm import add_warm_command

    add_warm_command(sub)

    from promptzip.integrations.proxy._cli import add_proxy_command

    add_proxy_command(sub)

    from promptzip.evals._cli import COMMANDS, add_eval_commands, add_eval_names

    if list(argv[:1]) and argv[0] in COMMANDS:  # the suites' options load only for `promptzip eval` / `bench`
        add_eval_commands(sub)
    else:
        add_eval_names(sub)

    if list(argv[:1]) == ["train"]:  # the trainers (promptzip.training, peft) load only for `promptzip train`
        from promptzip.training.cli import add_train_command

        add_train_command(sub)
    else:
        sub.add_parser("train", help="train promptzip's own models (the train extra; see promptzip train --help)")
    return parser


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser(argv).parse_args(argv)
    func: Callable[[argparse.Namespace, TextIO, TextIO], int] = args.func
    try:
        code = func(args, out, err)
        out.flush()  # a reader that went away (| head) is found here, not at interpreter shutdown
        return code
    except PromptZipError as exc:
        err.write(f"promptzip: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        err.write("promptzip: interrupted\n")
        return 130
    except BrokenPipeError:
        return _reader_gone(out)


_SIGPIPE_STATUS = 128 + 13  # what a shell reports for a tool that SIGPIPE ended (Windows has no signal.SIGPIPE)


def _reader_gone(out: TextIO) -> int:
    """The reader of standard output closed it (``promptzip … | head -1``): stop quietly, as Unix tools do.

    Python ignores SIGPIPE, so the write raised instead of ending the process. What is still buffered would raise
    again when the interpreter flushes standard output at exit (``Exception ignored … BrokenPipeError``, status 120),
    so standard output now points at the null device (the recipe of Python's ``signal`` documentation). A stream
    that a caller of :func:`main` passed in is left as it is: the process's standard output is not ours to move.
    """
    if out is sys.stdout:
        # OSError, ValueError: no file descriptor (io.UnsupportedOperation is both), or no null device to open
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
    return _SIGPIPE_STATUS


if __name__ == "__main__":
    raise SystemExit(main())
