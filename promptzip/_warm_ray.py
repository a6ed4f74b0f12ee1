"""Index-time warm-up on Ray Data, for corpora bigger than one machine: the job of :func:`promptzip._warm.warm_texts`
spread over an actor pool that writes to one shared cache (Redis; SQLite only when every worker is on one machine).

::

    read     files: ray.data.read_binary_files (each worker reads its own); texts: ray.data.from_items
      │
    split    map_batches(_split_rows), stateless tasks: UTF-8 check and chunk_source, as warm_texts splits;
      │      a text that cannot be read or split becomes one "skipped" row instead of its chunks
    warm     map_batches(_WarmActor), a pool of ``workers`` actors: each builds the preset's Zipper on the cache
      │      URL once (the models load once per worker) and hands its batches to warm_compressor
    report   the driver sums the small per-batch rows into a RayWarmReport, with each worker's own rate

Ray is imported here only, and only when :func:`warm_on_ray` runs (``promptzip warm --ray``): ``import promptzip``
never loads it and nothing starts a cluster at import. ``warm_on_ray`` joins the cluster the caller started
(``ray.init`` first), else the one at ``address`` (``"auto"``: the running cluster), else starts a local one that
it shuts down at the end.

    promptzip warm corpus/ --glob '*.md' --cache redis://cache-host:6379/0?ttl=0 --ray --address auto --workers 64

The read and split stages ask for no CPU (``split_cpus``) so they run next to a pool that holds every CPU: with a
CPU of their own, a pool of one actor per CPU leaves them nothing and Ray Data waits forever. The encoder is the
work; reading and splitting are a few percent of it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from promptzip._cache import cache_from_url
from promptzip._errors import ConfigError, InputError
from promptzip._inputs import check_text
from promptzip._split import chunk_source
from promptzip._types import Budget, Chunk
from promptzip._warm import BATCH_CHUNKS, WarmReport, find_files, warm_compressor

__all__ = ["RayWarmReport", "WorkerStats", "warm_on_ray", "warm_on_ray_command"]

SPLIT_CPUS = 0.0  # what a read or split task asks for: none, they share the CPUs the encoder actors hold
# Environment a started cluster's workers need to see as the driver does (offline model hubs, promptzip's options).
_FORWARDED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM")
_LOAD_TEXT, _LOAD_QUESTION = "Models load once. Then they stay.", "What loads?"
_NOT_KEPT = ("none", "off", "memory")


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """One actor's share: its batches, chunks and sentences, the seconds inside its warm calls (the model load
    excluded, given as ``load_seconds``), the cache writes or reads that failed, and its encoder's threads
    (0 when the preset loads no torch model)."""

    worker: str
    batches: int
    chunks: int
    sentences: int
    seconds: float
    load_seconds: float
    cache_errors: int
    threads: int

    @property
    def sentences_per_second(self) -> float:
        return self.sentences / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class RayWarmReport(WarmReport):
    """A :class:`~promptzip._warm.WarmReport` (``seconds`` is the whole job's wall time, model loads included)
    with each worker's :class:`WorkerStats` and the cache operations that failed (each is a vector not stored)."""

    workers: tuple[WorkerStats, ...] = ()
    cache_errors: int = 0
    ray_seconds: float = 0.0  # joining or starting the cluster, before the job

    def summary(self) -> str:
        rates = ", ".join(f"{w.sentences_per_second:.0f}" for w in self.workers)
        errors = f"; {self.cache_errors} cache operation(s) FAILED" if self.cache_errors else ""
        return f"{WarmReport.summary(self)} on {len(self.workers)} Ray worker(s) ({rates} sentences/s each){errors}"


def warm_on_ray(
    paths: Sequence[str | Path] = (),
    *,
    texts: Iterable[str | tuple[str, str]] = (),
    cache_url: str,
    preset: str = "fast",
    target: str = "gpt-4o",
    workers: int = 2,
    batch_size: int = BATCH_CHUNKS,
    glob: str = "*",
    address: str | None = None,
    cpus_per_worker: float = 1.0,
    split_cpus: float = SPLIT_CPUS,
    progress: bool = False,
) -> RayWarmReport:
    """Warm ``preset``'s cache at ``cache_url`` for the files under ``paths`` (folders searched with ``glob``, as
    ``promptzip warm`` does) and for ``texts`` (strings, or ``(source id, text)`` pairs), on Ray Data with a pool
    of ``workers`` actors of ``cpus_per_worker`` CPUs each, ``batch_size`` chunks per warm call.

    ``cache_url`` must outlive the job and be reachable from every worker: ``redis://`` for a cluster,
    ``sqlite:///`` for workers on one machine. A :class:`ConfigError` for a cache that keeps nothing, an unknown
    preset or a bad pool size; an :class:`InputError` for a path that does not exist."""
    _check_options(cache_url, workers, batch_size, cpus_per_worker, split_cpus)
    from promptzip._pipeline import Zipper

    probe = Zipper.from_preset(preset, target=target, cache="memory")  # cheap: fails early on a bad preset
    cache_from_url(cache_url).close()  # and on a misspelled cache URL, before any cluster starts
    files = [str(p.resolve()) for p in find_files([str(p) for p in paths], glob)]
    given = [(str(i), t) if isinstance(t, str) else t for i, t in enumerate(texts)]
    if not files and not given:
        return RayWarmReport(0, 0, 0, 0.0)

    import ray
    import ray.data

    started = time.perf_counter()
    own_cluster = not ray.is_initialized()
    if own_cluster:
        env = {k: v for k, v in os.environ.items() if k in _FORWARDED_ENV or k.startswith("PROMPTZIP_")}
        # Ray puts the driver's working directory on every worker's sys.path, ahead of the installed packages: run
        # in a promptzip checkout, its promptzip/ folder (whose subpackages live in top-level folders) would shadow
        # the installed package. The job needs nothing from there, so Ray is joined from the temporary folder.
        with contextlib.chdir(tempfile.gettempdir()):
            ray.init(address=address, include_dashboard=False, runtime_env={"env_vars": env}, log_to_driver=False)
    ray_s = time.perf_counter() - started
    context = _data_context(ray.data)
    bars, context.enable_progress_bars = context.enable_progress_bars, progress
    try:
        split = _split(ray.data, files, given, max_chunk_chars=probe.max_chunk_chars, cpus=split_cpus)
        warmed = split.map_batches(
            _WarmActor,
            fn_constructor_kwargs={"preset": preset, "target": target, "cache_url": cache_url},
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=cpus_per_worker,
        )
        return _report(warmed.iter_batches(batch_size=None, batch_format="numpy"), started, ray_s)
    finally:
        context.enable_progress_bars = bars
        if own_cluster:
            ray.shutdown()


def _data_context(data: Any) -> Any:
    """Ray Data's context, built here first: Ray 2.60 warns (DeprecationWarning) about its own defaults
    (``use_push_based_shuffle``, ``use_polars``, ...) as it builds it, which a program running with warnings as
    errors would die of. Only that construction is silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return data.DataContext.get_current()


def _check_options(cache_url: str, workers: int, batch_size: int, cpus: float, split_cpus: float) -> None:
    if not isinstance(cache_url, str) or cache_url.split(":", 1)[0] in _NOT_KEPT:
        raise ConfigError(f"cache {cache_url!r} is not shared by the workers: give a redis:// or sqlite:/// URL")
    for name, value in (("workers", workers), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if not (cpus > 0 and split_cpus >= 0):  # NaN fails too
        raise ConfigError(f"cpus_per_worker must be positive and split_cpus not negative: {cpus!r}, {split_cpus!r}")


def _split(data: Any, files: list[str], texts: list[tuple[str, str]], *, max_chunk_chars: int, cpus: float) -> Any:
    """The read and split stages: files read by the workers, given texts sent from here, both as UTF-8 bytes."""
    parts = []
    options = {"batch_format": "numpy", "num_cpus": cpus}
    if files:
        read = data.read_binary_files(files, include_paths=True, num_cpus=cpus)
        parts.append(read.map_batches(_split_rows, fn_kwargs={"max_chunk_chars": max_chunk_chars}, **options))
    if texts:
        rows = [{"path": source_id, "bytes": text.encode("utf-8")} for source_id, text in texts]
        given = {"max_chunk_chars": max_chunk_chars, "files": False}
        parts.append(data.from_items(rows).map_batches(_split_rows, fn_kwargs=given, **options))
    return parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])


_COLUMNS = ("text", "source_id", "start", "protected", "metadata", "opened", "skipped")


def _split_rows(batch: Mapping[str, np.ndarray], *, max_chunk_chars: int, files: bool = True) -> dict[str, np.ndarray]:
    """One row per chunk of each text, split as :func:`~promptzip._warm.warm_texts` splits it. ``opened`` counts a
    file on its first row; a text that is not UTF-8 or whose ``<pz>`` tags do not parse is one row with
    ``skipped`` set (as is an empty text, with nothing to warm), so no input vanishes without a row."""
    rows: dict[str, list[Any]] = {name: [] for name in _COLUMNS}
    for path, raw in zip(batch["path"], batch["bytes"], strict=True):
        source_id, opened = str(path), int(files)
        try:
            chunks = chunk_source(check_text(bytes(raw), "the file"), source_id, max_chunk_chars=max_chunk_chars)
            why = ""
        except InputError as exc:
            chunks, why, opened = [], f"{source_id}: {exc}", 0
        if not chunks:  # a placeholder row, so the text is still counted (or reported)
            chunks = [Chunk("", source_id, protected=True)]
        for j, chunk in enumerate(chunks):
            rows["text"].append(chunk.text)
            rows["source_id"].append(chunk.source_id)
            rows["start"].append(chunk.start)
            rows["protected"].append(chunk.protected)
            rows["metadata"].append(json.dumps(dict(chunk.metadata), sort_keys=True))
            rows["opened"].append(opened if j == 0 else 0)
            rows["skipped"].append(why if j == 0 else "")
    return {
        "text": np.array(rows["text"], dtype=object),
        "source_id": np.array(rows["source_id"], dtype=object),
        "start": np.array(rows["start"], dtype=np.int64),
        "protected": np.array(rows["protected"], dtype=bool),
        "metadata": np.array(rows["metadata"], dtype=object),
        "opened": np.array(rows["opened"], dtype=np.int64),
        "skipped": np.array(rows["skipped"], dtype=object),
    }


class _WarmActor:
    """One worker of the pool: the preset's Zipper on the shared cache, built once; one warm call per batch."""

    def __init__(self, *, preset: str, target: str, cache_url: str) -> None:
        from promptzip._pipeline import Zipper

        started = time.perf_counter()
        # The models load through a throwaway memory cache (as `promptzip warm` does), so the rate is the warm-up's.
        Zipper.from_preset(preset, target=target, cache="memory").compress(
            _LOAD_TEXT, question=_LOAD_QUESTION, budget=Budget(rate=0.5)
        )
        self.load_seconds = time.perf_counter() - started
        self.zipper = Zipper.from_preset(preset, target=target, cache=cache_url)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        torch = sys.modules.get("torch")
        self.threads = int(torch.get_num_threads()) if torch is not None else 0
        self.first = True

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        chunks = [
            Chunk(str(text), str(source_id), int(start), metadata=json.loads(str(meta)), protected=bool(protected))
            for text, source_id, start, meta, protected in zip(
                batch["text"], batch["source_id"], batch["start"], batch["metadata"], batch["protected"], strict=True
            )
        ]
        placeholders = sum(1 for c in chunks if not c.text)
        errors_before = self.zipper.cache.errors
        started = time.perf_counter()
        open_chunks = [c for c in chunks if not c.protected]
        sentences = warm_compressor(self.zipper.compressor, open_chunks) if open_chunks else 0
        seconds = time.perf_counter() - started
        load, self.first = (self.load_seconds if self.first else 0.0), False
        skipped = [str(s) for s in batch["skipped"] if s]
        return {
            "worker": np.array([self.name], dtype=object),
            "chunks": np.array([len(chunks) - placeholders], dtype=np.int64),
            "sentences": np.array([sentences], dtype=np.int64),
            "seconds": np.array([seconds]),
            "load_seconds": np.array([load]),
            "cache_errors": np.array([self.zipper.cache.errors - errors_before], dtype=np.int64),
            "threads": np.array([self.threads], dtype=np.int64),
            "opened": np.array([int(batch["opened"].sum())], dtype=np.int64),
            "skipped": np.array([json.dumps(skipped)], dtype=object),
        }

    def __del__(self) -> None:
        zipper = getattr(self, "zipper", None)
        if zipper is not None:
            zipper.cache.close()


def _report(batches: Iterator[Mapping[str, np.ndarray]], started: float, ray_s: float) -> RayWarmReport:
    per: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    opened = 0
    for batch in batches:
        for i, name in enumerate(batch["worker"]):
            w = per.setdefault(str(name), {"batches": 0, "chunks": 0, "sentences": 0, "seconds": 0.0, "load": 0.0})
            w["batches"] += 1
            w["chunks"] += int(batch["chunks"][i])
            w["sentences"] += int(batch["sentences"][i])
            w["seconds"] += float(batch["seconds"][i])
            w["load"] += float(batch["load_seconds"][i])
            w["errors"] = w.get("errors", 0) + int(batch["cache_errors"][i])
            w["threads"] = int(batch["threads"][i])
            opened += int(batch["opened"][i])
            skipped.extend(json.loads(str(batch["skipped"][i])))
    workers = tuple(
        WorkerStats(name, w["batches"], w["chunks"], w["sentences"], w["seconds"], w["load"], w["errors"], w["threads"])
        for name, w in sorted(per.items())
    )
    return RayWarmReport(
        files=opened,
        chunks=sum(w.chunks for w in workers),
        sentences=sum(w.sentences for w in workers),
        seconds=time.perf_counter() - started,
        skipped=tuple(sorted(skipped)),
        workers=workers,
        cache_errors=sum(w.cache_errors for w in workers),
        ray_seconds=ray_s,
    )


def warm_on_ray_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``promptzip warm --ray``: the options of ``promptzip warm`` (:func:`~promptzip._warm.add_warm_command`) on
    :func:`warm_on_ray`. Exits 1 when a cache operation failed (those vectors were not stored)."""
    if args.cache is None:
        raise ConfigError("--ray needs --cache: a redis:// URL every worker reaches (sqlite:/// on one machine)")
    try:
        import ray  # noqa: F401
    except ImportError as exc:
        raise ConfigError("--ray needs Ray Data: pip install 'promptzip[ray]'") from exc
    report = warm_on_ray(
        args.paths,
        cache_url=args.cache,
        preset=args.preset,
        target=args.target,
        workers=2 if args.workers is None else args.workers,
        glob=args.glob,
        address=args.address,
        progress=not args.quiet and err.isatty(),
    )
    if args.json:
        summary = {**asdict(report), "sentences_per_second": report.sentences_per_second}
        summary["workers"] = [{**asdict(w), "sentences_per_second": w.sentences_per_second} for w in report.workers]
        json.dump(summary, out, indent=2)
        out.write("\n")
    if not args.quiet:
        err.write(report.summary() + "\n")
        for why in report.skipped[:10]:
            err.write(f"  skipped {why}\n")
        if len(report.skipped) > 10:
            err.write(f"  ... and {len(report.skipped) - 10} more\n")
    if report.cache_errors:
        err.write(f"promptzip: error: {report.cache_errors} cache operation(s) failed; run the warm-up again\n")
        return 1
    return 0
