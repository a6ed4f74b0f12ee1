"""Index-time warm-up: put what compressing a text reads about it, whatever the question, into a preset's cache.

A RAG corpus is known before its questions are. ``promptzip warm PATH...`` reads files and folders, and
``DenseRetriever.add(chunks, warm_cache=True)`` takes the chunks it indexes; both go through :func:`warm_texts`,
which splits each text as the pipeline does (:func:`~promptzip._split.chunk_source`) and hands the chunks, in
batches, to the compressor's ``warm`` (:class:`Warmable`). For the ``fast`` stack that is every sentence's vector
and every long sentence's clause vectors, under the keys the compression path reads, so a later compression of
those texts runs no encoder pass over them: only the question is embedded. The ``balanced`` stack also stores
each chunk's token scores.

A compressor warms up by having a ``warm(chunks) -> int`` method (the number of sentences it prepared). The
built-in wrappers of another compressor (``balanced``'s pruning, ``max``'s summaries) are reached through
:data:`WRAPPERS`, a registry from class name to warmer; a plug-in compressor adds its own ``warm``.

    promptzip warm docs/ --glob '*.md' --preset fast --cache sqlite:///~/.cache/promptzip/cache.db
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO, runtime_checkable

from promptzip._errors import ConfigError, InputError
from promptzip._inputs import check_text
from promptzip._split import chunk_source
from promptzip._types import Budget, Chunk

if TYPE_CHECKING:
    from promptzip._pipeline import Zipper

__all__ = ["WRAPPERS", "WarmReport", "Warmable", "add_warm_command", "warm_compressor", "warm_texts"]

BATCH_CHUNKS = 64  # chunks per warm call: about 400 sentences, whose token vectors the dense scorer still holds


@runtime_checkable
class Warmable(Protocol):
    """A compressor that can prepare its cache for texts before any question: one required method."""

    def warm(self, chunks: Sequence[Chunk]) -> int: ...


@dataclass(frozen=True, slots=True)
class WarmReport:
    """What a warm-up did: texts read (``files``; 0 when texts were given directly), chunks and sentences
    prepared, seconds, and the texts skipped, each as ``"<id>: <why>"``."""

    files: int
    chunks: int
    sentences: int
    seconds: float
    skipped: tuple[str, ...] = ()

    @property
    def sentences_per_second(self) -> float:
        return self.sentences / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        skipped = f", {len(self.skipped)} skipped" if self.skipped else ""
        return (
            f"warmed {self.files} file(s): {self.chunks} chunks, {self.sentences} sentences in {self.seconds:.2f} s "
            f"({self.sentences_per_second:.0f} sentences/s){skipped}"
        )


def _warm_pruned(compressor: Any, chunks: Sequence[Chunk]) -> int:
    from promptzip.compressors.token_scores import cached_token_scores

    sentences = warm_compressor(compressor.extractive, chunks)
    cached_token_scores(compressor.scorer, [c.text for c in chunks if not c.protected], compressor.cache)
    return sentences


def _warm_inner(compressor: Any, chunks: Sequence[Chunk]) -> int:
    # Summaries are query-focused by default and generated only for the chunks a question makes relevant.
    return warm_compressor(compressor.inner, chunks)


WRAPPERS: dict[str, Callable[[Any, Sequence[Chunk]], int]] = {
    "promptzip.compressors.token_prune.PrunedExtractiveCompressor": _warm_pruned,
    "promptzip.compressors.abstractive.AbstractiveCompressor": _warm_inner,
}
"""Warmers of the built-in compressors that wrap another one, by ``module.QualifiedName`` (found along the MRO)."""


def warm_compressor(compressor: object, chunks: Sequence[Chunk]) -> int:
    """Warm ``compressor`` for ``chunks``; the number of sentences prepared. A :class:`ConfigError` when the
    compressor has no way to warm up."""
    if isinstance(compressor, Warmable):
        return compressor.warm(chunks)
    for cls in type(compressor).__mro__:
        warmer = WRAPPERS.get(f"{cls.__module__}.{cls.__qualname__}")
        if warmer is not None:
            return warmer(compressor, chunks)
    raise ConfigError(f"compressor {getattr(compressor, 'name', type(compressor).__name__)!r} cannot warm a cache")


def _batches(chunks: Iterable[Chunk], size: int) -> Iterator[list[Chunk]]:
    batch: list[Chunk] = []
    for chunk in chunks:
        batch.append(chunk)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def warm_texts(
    zipper: Zipper,
    texts: Iterable[str | tuple[str, str]],
    *,
    progress: bool = False,
    batch_chunks: int = BATCH_CHUNKS,
    files: int = 0,
    skipped: Sequence[str] = (),
) -> WarmReport:
    """Warm ``zipper``'s cache for ``texts`` (strings, or ``(source id, text)`` pairs), split as
    ``zipper.compress`` splits them. A text whose ``<pz>`` tags do not parse is skipped, as its compression would
    fail; ``skipped`` adds what the caller skipped already. ``progress`` draws a bar over the chunks on standard
    error."""
    from tqdm import tqdm

    started = time.perf_counter()
    chunks: list[Chunk] = []
    left_out = list(skipped)
    for i, item in enumerate(texts):
        source_id, text = item if isinstance(item, tuple) else (str(i), item)
        try:
            chunks.extend(chunk_source(text, source_id, max_chunk_chars=zipper.max_chunk_chars))
        except InputError as exc:
            left_out.append(f"{source_id}: {exc}")
    sentences = 0
    with tqdm(total=len(chunks), desc="warming", unit="chunk", disable=not progress, leave=False) as bar:
        for batch in _batches((c for c in chunks if not c.protected), max(1, batch_chunks)):
            sentences += warm_compressor(zipper.compressor, batch)
            bar.update(len(batch))
            bar.set_postfix(sentences=sentences, refresh=False)
        bar.update(len(chunks) - bar.n)
    return WarmReport(files, len(chunks), sentences, time.perf_counter() - started, tuple(left_out))


def find_files(paths: Sequence[str], pattern: str) -> list[Path]:
    """The files named, and the files under the folders named that match ``pattern`` (a ``Path.glob`` pattern,
    applied under each folder and its subfolders), without hidden ones, in a stable order."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            matches = sorted(p for p in path.rglob(pattern) if p.is_file())
            found.extend(p for p in matches if not any(part.startswith(".") for part in p.relative_to(path).parts))
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(f"no such file or folder: {raw}")
    return list(dict.fromkeys(found))


def read_texts(files: Sequence[Path], skipped: list[str]) -> Iterator[tuple[str, str]]:
    """``(path, text)`` of each file that reads as UTF-8 text; the others are appended to ``skipped`` with why."""
    for path in files:
        try:
            yield str(path), check_text(path.read_bytes(), "the file")
        except OSError as exc:
            skipped.append(f"{path}: {exc.strerror or exc}")
        except InputError as exc:
            skipped.append(f"{path}: {exc}")


def add_warm_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``warm`` to an ``argparse`` sub-parser group; the handler is ``args.func(args, out, err) -> int``."""
    w: argparse.ArgumentParser = subparsers.add_parser(
        "warm",
        help="put every sentence's scores of files and folders into a preset's cache (index-time warm-up)",
        description="Split text files as compression would and store every sentence's query-agnostic scores "
        "(vectors) in the preset's cache, so that compressing them later only embeds the question.",
    )
    w.add_argument("paths", nargs="+", help="text files and folders (folders are searched with --glob)")
    w.add_argument("--glob", default="*", help="file pattern inside folders, e.g. '*.md' (default: every file)")
    w.add_argument("-p", "--preset", default="fast", help="compression preset whose cache to fill (default: fast)")
    w.add_argument("-t", "--target", default="gpt-4o", help="target model or tokenizer (default: gpt-4o)")
    w.add_argument("--cache", default=None, help="cache URL: sqlite:///path, redis://host/0 (default: user cache)")
    w.add_argument("--json", action="store_true", help="print the summary as JSON on standard output")
    w.add_argument("--quiet", action="store_true", help="no progress bar or summary on standard error")
    ray = w.add_argument_group("Ray Data (the ray extra), for corpora bigger than one machine")
    ray.add_argument("--ray", action="store_true", help="run on Ray Data: an actor pool writing to the shared cache")
    ray.add_argument("--workers", type=int, default=None, help="actors in the pool, one model each (default: 2)")
    ray.add_argument("--address", default=None, help="Ray cluster to join, e.g. 'auto' (default: start a local one)")
    w.set_defaults(func=_warm_command)
    return w


def _warm_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from promptzip._pipeline import Zipper

    if args.cache in ("none", "off", "memory"):
        raise ConfigError(f"--cache {args.cache} keeps nothing after this command: give a sqlite:// or redis:// URL")
    if args.ray:  # Ray is imported there only
        from promptzip._warm_ray import warm_on_ray_command

        return warm_on_ray_command(args, out, err)
    if args.workers is not None or args.address is not None:
        raise ConfigError("--workers and --address go with --ray")
    files = find_files(args.paths, args.glob)
    show = not args.quiet and err.isatty()
    # The models load first, through a throwaway memory cache, so the summary's rate is the warm-up's own.
    started = time.perf_counter()
    Zipper.from_preset(args.preset, target=args.target, cache="memory").compress(
        "Models load once. Then they stay.", question="What loads?", budget=Budget(rate=0.5)
    )
    load_s = time.perf_counter() - started
    zipper = Zipper.from_preset(args.preset, target=args.target, cache=args.cache)  # one bar: warm_texts'
    unread: list[str] = []
    try:
        texts = list(read_texts(files, unread))
        report = warm_texts(zipper, texts, progress=show, files=len(texts), skipped=unread)
    finally:
        zipper.cache.close()
    if args.json:
        summary = {**asdict(report), "sentences_per_second": report.sentences_per_second, "load_seconds": load_s}
        json.dump(summary, out, indent=2)
        out.write("\n")
    if not args.quiet:
        err.write(f"models loaded in {load_s:.2f} s; " + report.summary() + "\n")
        for why in report.skipped[:10]:
            err.write(f"  skipped {why}\n")
        if len(report.skipped) > 10:
            err.write(f"  ... and {len(report.skipped) - 10} more\n")
    return 0
