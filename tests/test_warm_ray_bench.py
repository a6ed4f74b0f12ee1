"""``python -P -m promptzip.evals.warm_ray_bench``: the plan's arithmetic and the page from given measurements, the
corpus writer, and (slow) one tiny real run: a real ``redis-server`` (SQLite when absent), the one-process warm-up
and a one-worker local Ray cluster, each in its own process.

The slow test skips without Ray, except under CI (``CI`` set), where the ``ray`` extra is installed and a missing
Ray fails, as in ``tests/test_warm_ray.py``."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from promptzip._split import chunk_source, sentence_spans
from promptzip.evals._warm_ray_report import Measured, markdown, measured, plan
from promptzip.evals.warm_ray_bench import main, write_corpus

VECTOR = {"dim": 384, "dtype": "float32", "value_bytes": 1664, "header_bytes": 128, "float16_value_bytes": 896}


def _cache(per_entry: float) -> dict[str, Any]:
    return {
        "entries": 8000,
        "sampled_keys": 300,
        "memory_usage_mean": 1912.0,
        "value_bytes_mean": 1664.0,
        "value_bytes_range": [1664, 1664],
        "key_bytes_mean": 74.0,
        "used_memory_delta": int(per_entry * 8000),
        "used_memory_per_entry": per_entry,
        "vector": VECTOR,
    }


def _worker(name: str, sentences: int, seconds: float, load: float) -> dict[str, Any]:
    return {
        "worker": name,
        "batches": 8,
        "chunks": 1000,
        "sentences": sentences,
        "seconds": seconds,
        "load_seconds": load,
        "cache_errors": 0,
        "threads": 1,
    }


def _ray_run(workers: list[dict[str, Any]], seconds: float, per_entry: float) -> dict[str, Any]:
    summary = {"files": 16, "chunks": 1000, "sentences": 6000, "seconds": seconds, "skipped": []}
    summary |= {"sentences_per_second": 6000 / seconds, "workers": workers, "cache_errors": 0, "ray_seconds": 3.0}
    return {
        "summary": summary,
        "process_s": seconds + 4,
        "peak_rss_bytes": [950_000_000] * len(workers),
        "workers_asked": len(workers),
        "cache": _cache(per_entry),
    }


def _report() -> dict[str, Any]:
    """A report as run_bench writes it: 125-token chunks of 6 sentences and 8 vectors; one worker alone at 1000
    sentences/s, two together at 800 each; 2000 bytes per entry as the median of the three runs."""
    one = {"files": 16, "chunks": 1000, "sentences": 6000, "seconds": 7.5, "skipped": []}
    one |= {"sentences_per_second": 800.0, "load_seconds": 4.0}
    return {
        "command": "python -P -m promptzip.evals.warm_ray_bench --tokens 125000",
        "date": "2026-01-01T00:00:00+00:00",
        "machine": "x86_64 CPU, 2 cores (shared), Python 3.11.7",
        "cpus": 2,
        "versions": {"torch": "2.13.0+cpu", "ray": "2.60.0"},
        "loadavg_before": [0.61, 0.72, 0.83],
        "loadavg_after": [1.91, 1.22, 0.93],
        "seconds": 80.0,
        "backend": "redis",
        "corpus": {"source": "test text", "tokens_asked": 125_000, "tokens": 125_000, "files": 16},
        "runs": [
            {"summary": one, "process_s": 13.0, "peak_rss_bytes": [900_000_000], "workers_asked": None},
            _ray_run([_worker("h:1", 6000, 6.0, 5.0)], 20.0, 1990.0),
            _ray_run([_worker("h:2", 3000, 3.75, 5.5), _worker("h:3", 3000, 3.75, 6.0)], 16.0, 2010.0),
        ],
    }


def _with_one_process_cache(report: dict[str, Any]) -> dict[str, Any]:
    report["runs"][0]["cache"] = _cache(2000.0)
    return report


def test_measured_takes_the_ratios_the_largest_pool_and_the_median_bytes() -> None:
    m = measured(_with_one_process_cache(_report()))
    assert m == Measured(
        tokens_per_chunk=125.0,
        sentences_per_chunk=6.0,
        vectors_per_chunk=8.0,
        rate=800.0,  # the two-worker pool's mean, not the lone worker's 1000
        entry_bytes=2000.0,
        value_bytes=1664.0,
        float16_value_bytes=896.0,
        key_bytes=74.0,
        load_s=6.0,
        worker_rss_bytes=950_000_000.0,
    )


def test_the_plan_is_arithmetic_on_the_measurements() -> None:
    m = measured(_with_one_process_cache(_report()))
    p = plan(m)
    assert p.chunks == 100_000_000
    assert p.long_factor == 4.0
    assert (p.sentences, p.vectors) == (600e6, 800e6)
    assert p.cpu_s == 750_000
    assert p.wall_s == ((64, 750_000 / 64), (256, 750_000 / 256))
    assert p.memory_bytes == 800e6 * 2000
    assert p.value_bytes == 800e6 * 1664
    assert math.isclose(p.sets_per_s, 256 * 800 * 8 / 6)
    assert math.isclose(p.write_bytes_per_s, p.sets_per_s * (1664 + 74))
    assert p.shards == 13  # 1.6 TB over 128 GB is 12.5
    assert (p.vectors_per_instance, p.chunks_per_instance) == (64e6, 8e6)
    assert p.float16_entry_bytes == 2000 - 1664 + 896
    assert p.float16_memory_bytes == 800e6 * 1232
    assert p.sentence_only_memory_bytes == 600e6 * 2000
    assert p.both_memory_bytes == 600e6 * 1232
    assert p.driver_rows == 100_000_000 / 64
    assert math.isclose(p.load_share, 6.0 / (750_000 / 64))
    assert plan(m, chunks=1_000_000, pools=(8,)).wall_s == ((8, 7500 / 8),)


def test_the_page_has_every_figure() -> None:
    page = markdown(_with_one_process_cache(_report()))
    for figure in (
        "`python -P -m promptzip.evals.warm_ray_bench --tokens 125000`",
        "x86_64 CPU, 2 cores (shared)",
        "0.61, 0.72, 0.83 before, 1.91, 1.22, 0.93 after",
        "warm_input(125,000)",
        "1,000 chunks (about 125 tokens each), 6,000 sentences",
        "8,000 cache entries: 1.33 vectors per sentence, 8.00 per chunk",
        "| **1000** |",  # the lone worker's rate
        "| **800, 800** |",  # each worker of two
        "| 3.8, 3.8 |",
        "| 5.5, 6.0 |",
        "| 11.5 | 522 |",  # one process: model load plus warm-up, and its job rate
        "1600 sentences/s together, 1.60× one worker",
        "1,912 bytes",
        "1,990, 2,010 bytes",
        "uses 2,000 bytes per vector",
        "6.00 sentences and 8.00 vectors per chunk. Rate: 800 sentences/s",
        "| 100M × 6.00 | 600M | 2.4G |",
        "| 100M × 8.00 | 800M | 3.2G |",
        "750,000 s = 208 worker-hours",
        "| 3.3 h | 13 h |",
        "| 49 min | 3.3 h |",
        "**1.6 TB** (1.46 TiB)",
        "about 13 shards of 128 GB",
        "64M vectors, so about 8M chunks",
        "about 1,232 B per entry",
        "Together they give about 739 GB",
        "273k SET/s",
        "1.56M rows",
        "0.95 GB of resident memory per actor",
    ):
        assert figure in page, figure


def test_the_page_says_when_the_cache_was_sqlite() -> None:
    report = _report()
    report["backend"] = "sqlite"
    for run in report["runs"]:
        run["cache"] = {"entries": 8000, "value_bytes_mean": 1664.0, "file_bytes": 17_600_000, "vector": VECTOR}
        run["cache"]["file_bytes_per_entry"] = 2200.0
    page = markdown(report)
    assert "`redis-server` was not found" in page
    assert "uses 2,200 bytes per vector**, a SQLite stand-in" in page
    assert "MEMORY USAGE` reports" not in page


def test_the_corpus_is_written_as_files_of_whole_paragraphs_in_order(tmp_path: Path) -> None:
    paragraphs = [f"Paragraph {i}. It has two sentences." for i in range(10)]
    paths = write_corpus("\n\n".join(paragraphs), tmp_path / "corpus", 4)
    assert [p.name for p in paths] == ["part-00.txt", "part-01.txt", "part-02.txt", "part-03.txt"]
    read = [q for p in paths for q in p.read_text(encoding="utf-8").strip().split("\n\n")]
    assert read == paragraphs
    assert all(p.read_text(encoding="utf-8").strip() for p in paths)
    assert len(write_corpus("One.\n\nTwo.", tmp_path / "few", 16)) == 2  # no empty files


def test_bad_pool_sizes_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("0", "1,x", ""):
        with pytest.raises(SystemExit) as exit_:
            main(["--workers", bad])
        assert exit_.value.code == 2
    assert "worker counts" in capsys.readouterr().err


@pytest.mark.slow
def test_a_tiny_run_measures_both_paths_into_one_cache_server(tmp_path: Path) -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("ray is not installed (pip install 'promptzip[ray]')")
    out = tmp_path / "results"
    assert main(["--tokens", "2000", "--workers", "1", "--files", "3", "--out", str(out)]) == 0

    report = json.loads((out / "warm_ray.json").read_text(encoding="utf-8"))
    assert report["backend"] == ("redis" if shutil.which("redis-server") else "sqlite")
    assert report["corpus"]["files"] == 3
    one, ray_run = report["runs"]
    assert (one["workers_asked"], ray_run["workers_asked"]) == (None, 1)
    # the same corpus warmed on both paths, every sentence counted, the same entries stored
    from promptzip.evals._bench_inputs import warm_input

    text = warm_input(2000)[0]
    sentences = sum(len(sentence_spans(c.text)) for c in chunk_source(text, "x") if not c.protected)
    assert one["summary"]["sentences"] == ray_run["summary"]["sentences"] == sentences
    assert [w["sentences"] for w in ray_run["summary"]["workers"]] == [sentences]
    assert ray_run["summary"]["cache_errors"] == 0
    assert one["cache"]["entries"] == ray_run["cache"]["entries"] >= sentences
    assert one["cache"]["vector"]["dim"] == 384
    assert len(ray_run["peak_rss_bytes"]) == 1  # the one actor was found and sampled

    page = (out / "warm_ray.md").read_text(encoding="utf-8")
    rate = ray_run["summary"]["workers"][0]["sentences"] / ray_run["summary"]["workers"][0]["seconds"]
    assert f"| **{rate:.0f}** |" in page
    assert f"{one['cache']['entries']:,} cache entries" in page
    assert "## Plan for 100M chunks" in page


def test_the_sqlite_fallback_reads_the_entries_and_a_vector_from_the_cache_file(tmp_path: Path) -> None:
    import numpy as np

    from promptzip._cache import cache_from_url, encode_array
    from promptzip.evals.warm_ray_bench import _sqlite_figures

    cache = cache_from_url(f"sqlite:///{tmp_path / 'cache.db'}")
    cache.put_many({f"k{i}": encode_array(np.full(384, i, dtype=np.float32)) for i in range(5)})
    cache.close()
    figures = _sqlite_figures(tmp_path / "cache.db")
    assert figures["entries"] == 5
    assert figures["value_bytes_mean"] == 1664
    assert figures["vector"] == VECTOR
    assert figures["file_bytes_per_entry"] == figures["file_bytes"] / 5 > 0
