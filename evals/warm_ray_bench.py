"""``warm_ray_bench``: the index-time warm-up's throughput per worker, on one process and on Ray Data, into one
cache server, and the plan for 100M chunks computed from what it measured.

    python -P -m promptzip.evals.warm_ray_bench [--tokens N] [--workers 1,2] [--files F] [--out DIR]

Writes :func:`~promptzip.evals._bench_inputs.warm_input` ``(N)`` as ``F`` files in a temporary folder, starts a
``redis-server`` on a free port (persistence off; a SQLite file per run when the binary is absent), then runs, one
after another, each in a fresh process on a fresh cache database (Redis database 0, 1, ...):

* ``promptzip warm FOLDER --cache URL --json --quiet`` with ``OMP_NUM_THREADS=1``: the one-process warm-up on one
  thread;
* the same with ``--ray --workers W`` for each ``W``: each starts its own local Ray cluster, whose actors Ray gives
  one torch thread each.

After each run it reads the cache: entries stored (``DBSIZE``), ``MEMORY USAGE`` and ``STRLEN`` of sampled keys,
the change of ``used_memory``; and one stored vector (its dimension, the ``.npy`` header). A sampler records each
worker process's peak resident memory. The report (:mod:`promptzip.evals._warm_ray_report`) goes to
``warm_ray.json`` and ``warm_ray.md`` under ``--out`` (default ``evals/results``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from promptzip.evals._bench_inputs import cpus, warm_input
from promptzip.evals._redis_server import redis_server
from promptzip.evals._warm_ray_report import markdown

__all__ = ["DEFAULT_TOKENS", "main", "run_bench", "write_corpus", "write_report"]

# Small enough that the three default runs, each with its own model loads and Ray start, fit about two minutes on
# two shared cores; large enough that each worker of two gets several batches of the warm-up's 64 chunks.
DEFAULT_TOKENS = 150_000
DEFAULT_FILES = 16
KEY_SAMPLES = 300  # keys whose MEMORY USAGE and STRLEN are read after each run
RUN_TIMEOUT = 1800.0
_PROG = "python -P -m promptzip.evals.warm_ray_bench"
_ONE_THREAD = dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), "1")


def write_corpus(text: str, folder: Path, files: int) -> list[Path]:
    """``text``'s paragraphs (blank-line separated) in ``files`` files of consecutive paragraphs (fewer when there
    are fewer paragraphs), as ``part-NN.txt`` under ``folder``; the paths in order."""
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    n = max(1, min(files, len(paragraphs)))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        part = paragraphs[i * len(paragraphs) // n : (i + 1) * len(paragraphs) // n]
        path = folder / f"part-{i:02d}.txt"
        path.write_text("\n\n".join(part) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


class _PeakMemory:
    """Peak resident memory of the warm-up's encoder processes: the command's own process for the one-process run,
    else the Ray actors under it (their command line names the actor class); sampled twice a second from ``/proc``
    (nothing where there is none)."""

    def __init__(self, pid: int, *, ray: bool) -> None:
        self.pid, self.ray, self.peaks = pid, ray, dict[int, int]()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        while not self._stop.wait(0.5):
            for pid in _descendants(self.pid) if self.ray else [self.pid]:
                with contextlib.suppress(OSError, ValueError, IndexError):
                    if self.ray and b"_WarmActor" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                        continue
                    rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
                    self.peaks[pid] = max(self.peaks.get(pid, 0), rss)

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join(5)
        return sorted(self.peaks.values(), reverse=True)


def _descendants(root: int) -> list[int]:
    """The processes under ``root``, from each ``/proc/PID/stat``'s parent field."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # after the command name, which may hold spaces
            children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _warm(corpus: Path, url: str, workers: int | None) -> dict[str, Any]:
    """One ``promptzip warm`` in a new process (on Ray when ``workers``): its JSON summary, wall seconds and the
    peak memory of its encoder processes."""
    command = [sys.executable, "-P", "-m", "promptzip.cli", "warm", str(corpus), "--cache", url, "--json", "--quiet"]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if workers is None:
        env.update(_ONE_THREAD)
    else:
        command += ["--ray", "--workers", str(workers)]
        for name in _ONE_THREAD:  # Ray sets each actor's threads to its CPUs unless the environment says otherwise
            env.pop(name, None)
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=corpus.parent
    )
    memory = _PeakMemory(process.pid, ray=workers is not None)
    try:
        out, err = process.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    finally:
        peaks = memory.stop()
    wall = time.perf_counter() - started
    if process.returncode != 0 or not out.strip():
        raise RuntimeError(f"{' '.join(command[3:])} failed ({process.returncode}): {err.strip()[-2000:]}")
    summary: dict[str, Any] = json.loads(out)
    return {"summary": summary, "process_s": round(wall, 2), "peak_rss_bytes": peaks}


def _redis_figures(port: int, db: int, used_before: int) -> dict[str, Any]:
    import redis

    from promptzip._cache import decode_array

    client = redis.Redis(port=port, db=db, socket_timeout=10)
    try:
        keys = client.dbsize()
        used = int(client.info("memory")["used_memory"]) - used_before
        picked = dict.fromkeys(client.randomkey() for _ in range(KEY_SAMPLES))
        sample = [k for k in picked if isinstance(k, bytes)]  # bytes: the client does not decode responses
        usage = [int(client.memory_usage(k, samples=0) or 0) for k in sample]
        strlen = [int(client.strlen(k)) for k in sample]
        value = client.get(sample[0]) if sample else None
    finally:
        client.close()
    figures: dict[str, Any] = {
        "entries": int(keys),
        "sampled_keys": len(sample),
        "memory_usage_mean": sum(usage) / len(usage) if usage else 0.0,
        "value_bytes_mean": sum(strlen) / len(strlen) if strlen else 0.0,
        "value_bytes_range": [min(strlen), max(strlen)] if strlen else [],
        "key_bytes_mean": sum(len(k) for k in sample) / len(sample) if sample else 0.0,
        "used_memory_delta": used,
        "used_memory_per_entry": used / keys if keys else 0.0,
    }
    if isinstance(value, bytes):
        figures["vector"] = _vector(decode_array(value))
    return figures


def _sqlite_figures(path: Path) -> dict[str, Any]:
    from promptzip._cache import decode_array

    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        entries, size = conn.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM promptzip_cache").fetchone()
        row = conn.execute("SELECT value FROM promptzip_cache LIMIT 1").fetchone()
    file_bytes = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    figures: dict[str, Any] = {
        "entries": int(entries),
        "value_bytes_mean": size / entries if entries else 0.0,
        "file_bytes": file_bytes,
        "file_bytes_per_entry": file_bytes / entries if entries else 0.0,
    }
    if row is not None:
        figures["vector"] = _vector(decode_array(bytes(row[0])))
    return figures


def _vector(array: Any) -> dict[str, Any]:
    """A stored vector's layout, and the value the same vector would be as float16."""
    import numpy as np

    from promptzip._cache import encode_array

    value = len(encode_array(array))
    return {
        "dim": int(array.size),
        "dtype": str(array.dtype),
        "value_bytes": value,
        "header_bytes": value - int(array.nbytes),
        "float16_value_bytes": len(encode_array(array.astype(np.float16))),
    }


def _used_memory(port: int) -> int:
    import redis

    client = redis.Redis(port=port, socket_timeout=10)
    try:
        return int(client.info("memory")["used_memory"])
    finally:
        client.close()


def run_bench(
    *,
    tokens: int = DEFAULT_TOKENS,
    workers: Sequence[int] = (1, 2),
    files: int = DEFAULT_FILES,
    command: str = "",
    progress: bool = True,
) -> dict[str, Any]:
    """The runs of the module docstring, in order; the report :func:`~promptzip.evals._warm_ray_report.markdown`
    renders."""
    started, load_before = time.time(), os.getloadavg()
    text, _, source = warm_input(tokens)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="promptzip-warm-ray-") as tmp:
        root = Path(tmp)
        paths = write_corpus(text, root / "corpus", files)
        with redis_server(root) as port:
            for db, pool in enumerate([None, *workers]):
                if port is not None:
                    url, used_before = f"redis://127.0.0.1:{port}/{db}?ttl=0&timeout=5", _used_memory(port)
                else:
                    url = f"sqlite:///{root / f'cache-{db}.db'}"
                run = _warm(root / "corpus", url, pool)
                run["workers_asked"] = pool
                if port is not None:
                    run["cache"] = _redis_figures(port, db, used_before)
                else:
                    run["cache"] = _sqlite_figures(root / f"cache-{db}.db")
                runs.append(run)
                if progress:
                    s = run["summary"]
                    print(
                        f"{'one process' if pool is None else f'ray, {pool} worker(s)'}: {s['sentences']} sentences, "
                        f"{s['seconds']:.1f} s, {run['cache']['entries']} entries",
                        file=sys.stderr,
                    )
    return {
        "command": command or _PROG,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} CPU, {cpus()} cores (shared), Python {platform.python_version()}",
        "cpus": cpus(),
        "versions": _versions(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "seconds": round(time.time() - started, 1),
        "backend": "redis" if runs and "used_memory_delta" in runs[0]["cache"] else "sqlite",
        "corpus": {
            "source": source,
            "tokens_asked": tokens,
            "tokens": _count_tokens(text),
            "files": len(paths),
        },
        "runs": runs,
    }


def _count_tokens(text: str) -> int:
    from promptzip._tokenizers import get_tokenizer

    return get_tokenizer("o200k_base").count(text)


def _versions() -> dict[str, str]:
    from importlib import metadata

    found = {}
    for name in ("torch", "ray", "redis"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def write_report(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "warm_ray.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    (out / "warm_ray.md").write_text(markdown(report), encoding="utf-8")


def _pools(raw: str) -> list[int]:
    try:
        pools = [int(w) for w in raw.split(",") if w.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of worker counts: {raw!r}") from None
    if not pools or min(pools) < 1 or len(pools) > 15:  # one Redis database per run, sixteen in all
        raise argparse.ArgumentTypeError(f"give 1 to 15 positive worker counts, e.g. 1,2: {raw!r}")
    return pools


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=_PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=DEFAULT_TOKENS, help=f"corpus size (default {DEFAULT_TOKENS})")
    parser.add_argument("--workers", type=_pools, default=[1, 2], help="Ray pool sizes, one run each (default 1,2)")
    parser.add_argument("--files", type=int, default=DEFAULT_FILES, help=f"corpus files (default {DEFAULT_FILES})")
    parser.add_argument("--out", type=Path, default=Path("evals/results"), help="folder (default evals/results)")
    args = parser.parse_args(argv)
    if args.tokens < 100 or args.files < 1:
        parser.error("--tokens must be at least 100 and --files at least 1")
    try:
        import ray  # noqa: F401
    except ImportError:
        parser.error("needs Ray Data: pip install 'promptzip[ray]'")
    given = list(sys.argv[1:] if argv is None else argv)
    report = run_bench(tokens=args.tokens, workers=args.workers, files=args.files, command=" ".join([_PROG, *given]))
    write_report(report, args.out)
    print(markdown(report))
    print(f"wrote {args.out}/warm_ray.json, {args.out}/warm_ray.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
