"""The report of :mod:`promptzip.evals.warm_ray_bench`: the figures it measured (:func:`measured`), the plan for
100M chunks computed from them (:func:`plan`), and the Markdown page (:func:`markdown`). Pure: no model, Ray or
Redis here, so the arithmetic and the page are tested on given measurements."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Measured", "Plan", "markdown", "measured", "plan"]

PLAN_CHUNKS = 100_000_000
LONG_CHUNK_TOKENS = 500  # the plan's second column: chunks of this many tokens, scaled from the measured ones
POOLS = (64, 256)  # workers the plan's wall times are given for; the last also sets the write rate
SHARD_BYTES = 128 * 10**9  # one Redis instance's memory in the plan
BATCH_CHUNKS = 64  # promptzip._warm.BATCH_CHUNKS: the driver receives one row per batch


@dataclass(frozen=True, slots=True)
class Measured:
    """What the plan needs from a run: the corpus's ratios, one worker's rate (sentences/s), and the cache's bytes
    per entry, per value (float32 and float16) and per key; the largest model load and worker memory."""

    tokens_per_chunk: float
    sentences_per_chunk: float
    vectors_per_chunk: float
    rate: float
    entry_bytes: float
    value_bytes: float
    float16_value_bytes: float
    key_bytes: float
    load_s: float
    worker_rss_bytes: float


@dataclass(frozen=True, slots=True)
class Plan:
    """:func:`plan`'s arithmetic; counts and bytes for ``chunks`` chunks of the measured size, seconds per pool."""

    chunks: int
    long_factor: float  # LONG_CHUNK_TOKENS chunks hold this many times the measured chunk's sentences and vectors
    sentences: float
    vectors: float
    cpu_s: float
    wall_s: tuple[tuple[int, float], ...]
    memory_bytes: float
    value_bytes: float
    sets_per_s: float
    write_bytes_per_s: float
    shards: int
    vectors_per_instance: float
    chunks_per_instance: float
    float16_entry_bytes: float
    float16_memory_bytes: float
    sentence_only_memory_bytes: float
    both_memory_bytes: float
    driver_rows: float
    load_share: float


def plan(m: Measured, *, chunks: int = PLAN_CHUNKS, pools: Sequence[int] = POOLS) -> Plan:
    """Warming ``chunks`` chunks like the measured ones, by workers at the measured rate, into Redis instances of
    :data:`SHARD_BYTES`."""
    sentences, vectors = chunks * m.sentences_per_chunk, chunks * m.vectors_per_chunk
    cpu_s = sentences / m.rate
    sets = max(pools) * m.rate * m.vectors_per_chunk / m.sentences_per_chunk
    memory = vectors * m.entry_bytes
    f16_entry = m.entry_bytes - m.value_bytes + m.float16_value_bytes
    return Plan(
        chunks=chunks,
        long_factor=LONG_CHUNK_TOKENS / m.tokens_per_chunk,
        sentences=sentences,
        vectors=vectors,
        cpu_s=cpu_s,
        wall_s=tuple((p, cpu_s / p) for p in pools),
        memory_bytes=memory,
        value_bytes=vectors * m.value_bytes,
        sets_per_s=sets,
        write_bytes_per_s=sets * (m.value_bytes + m.key_bytes),
        shards=math.ceil(memory / SHARD_BYTES),
        vectors_per_instance=SHARD_BYTES / m.entry_bytes,
        chunks_per_instance=SHARD_BYTES / m.entry_bytes / m.vectors_per_chunk,
        float16_entry_bytes=f16_entry,
        float16_memory_bytes=vectors * f16_entry,
        sentence_only_memory_bytes=sentences * m.entry_bytes,
        both_memory_bytes=sentences * f16_entry,
        driver_rows=chunks / BATCH_CHUNKS,
        load_share=m.load_s / (cpu_s / min(pools)),
    )


def _ray_runs(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [r for r in report["runs"] if r["workers_asked"] is not None]


def _worker_rate(w: Mapping[str, Any]) -> float:
    return float(w["sentences"]) / float(w["seconds"]) if w["seconds"] else 0.0


def measured(report: Mapping[str, Any]) -> Measured:
    """The plan's inputs from a report: the ratios of the one-process run, the mean worker rate of the largest Ray
    pool (every core busy, as on a cluster node), the median bytes per entry over the runs."""
    base = report["runs"][0]
    s, cache = base["summary"], base["cache"]
    largest = max(_ray_runs(report), key=lambda r: len(r["summary"]["workers"]))
    rates = [_worker_rate(w) for w in largest["summary"]["workers"]]
    per_entry = "used_memory_per_entry" if report["backend"] == "redis" else "file_bytes_per_entry"
    vector = next(r["cache"]["vector"] for r in report["runs"] if "vector" in r["cache"])
    loads = [float(w["load_seconds"]) for r in _ray_runs(report) for w in r["summary"]["workers"]]
    rss = [b for r in _ray_runs(report) for b in r["peak_rss_bytes"]]
    return Measured(
        tokens_per_chunk=report["corpus"]["tokens"] / s["chunks"],
        sentences_per_chunk=s["sentences"] / s["chunks"],
        vectors_per_chunk=cache["entries"] / s["chunks"],
        rate=statistics.fmean(rates),
        entry_bytes=statistics.median(r["cache"][per_entry] for r in report["runs"]),
        value_bytes=float(vector["value_bytes"]),
        float16_value_bytes=float(vector["float16_value_bytes"]),
        key_bytes=float(cache.get("key_bytes_mean", 0.0)),
        load_s=max(loads, default=0.0),
        worker_rss_bytes=float(max(rss, default=0)),
    )


# -- formatting ----------------------------------------------------------------------------------------------------
def _count(n: float) -> str:
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.0f}"


def _bytes(n: float) -> str:
    for div, unit in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if n >= div:
            return f"{n / div:.3g} {unit}"
    return f"{n:.0f} B"


def _duration(s: float) -> str:
    return f"{s / 3600:.2g} h" if s >= 5400 else f"{s / 60:.0f} min" if s >= 90 else f"{s:.0f} s"


def _label(run: Mapping[str, Any]) -> str:
    w = run["workers_asked"]
    return "`promptzip warm`, `OMP_NUM_THREADS=1`" if w is None else f"`--ray --workers {w}`"


def _row(run: Mapping[str, Any]) -> str:
    s, cache = run["summary"], run["cache"]
    rss = " / ".join(f"{b / 1e9:.2f}" for b in run["peak_rss_bytes"]) or "–"
    if run["workers_asked"] is None:
        job = s["seconds"] + s["load_seconds"]
        rate, busy, load = f"{s['sentences_per_second']:.0f}", f"{s['seconds']:.1f}", f"{s['load_seconds']:.1f}"
        shape, ray, errors = "1 × 1", "–", "–"
    else:
        job, ws = s["seconds"], s["workers"]
        rate = "**" + ", ".join(f"{_worker_rate(w):.0f}" for w in ws) + "**"
        busy = ", ".join(f"{w['seconds']:.1f}" for w in ws)
        load = ", ".join(f"{w['load_seconds']:.1f}" for w in ws)
        shape = f"{len(ws)} × {'/'.join(sorted({str(w['threads']) for w in ws}))}"
        ray, errors = f"{s['ray_seconds']:.1f}", str(s["cache_errors"])
    return (
        f"| {_label(run)} | {shape} | {rate} | {busy} | {job:.1f} | {s['sentences'] / job:.0f} | {load} | {ray} | "
        f"{run['process_s']:.1f} | {cache['entries']:,} | {errors} | {rss} |"
    )


def _shows(report: Mapping[str, Any], m: Measured) -> list[str]:
    base, rays = report["runs"][0]["summary"], _ray_runs(report)
    lines = ["What the table shows:", ""]
    lines.append(f"- **Per worker (one CPU, one torch thread): {m.rate:.0f} sentences/s** (the largest pool's mean).")
    for run in rays:
        ws, n = run["summary"]["workers"], run["workers_asked"]
        rates = [_worker_rate(w) for w in ws]
        if len(ws) == 1:
            ratio = rates[0] / base["sentences_per_second"]
            lines.append(
                f"  - One worker: {rates[0]:.0f}, against {base['sentences_per_second']:.0f} for the one-process "
                f"warm-up on one thread ({ratio:.2f}×): the Ray wrapping's effect per sentence, under this run's load."
            )
        else:
            one = next((_worker_rate(r["summary"]["workers"][0]) for r in rays if len(r["summary"]["workers"]) == 1), 0)
            times = f", {sum(rates) / one:.2f}× one worker" if one else ""
            asked = "" if len(ws) == n else f" (of {n} asked)"
            lines.append(
                f"  - {len(ws)} workers{asked} on this machine's {report['cpus']} cores: "
                f"{', '.join(f'{r:.0f}' for r in rates)} each, {sum(rates):.0f} sentences/s together{times}."
            )
    for run in rays:
        s = run["summary"]
        fixed = s["seconds"] - max(w["seconds"] for w in s["workers"])
        load = max(w["load_seconds"] for w in s["workers"])
        rest = fixed - s["ray_seconds"] - load
        lines.append(
            f"- `--workers {run['workers_asked']}`: a fixed cost of {fixed:.1f} s beside the longest worker's busy "
            f"time: {s['ray_seconds']:.1f} s to start Ray, {load:.1f} s to load the models (in parallel across "
            f"workers), {rest:.1f} s for Ray Data to start the executor and actors and to read and split the files. "
            f"On {s['sentences']:,} sentences it brings the job to {s['sentences_per_second']:.0f} sentences/s; "
            "on a real corpus it is noise beside hours."
        )
    entries = sorted({r["cache"]["entries"] for r in report["runs"]})
    errors = sum(r["summary"].get("cache_errors", 0) for r in rays)
    same = (
        f"the same {entries[0]:,} entries" if len(entries) == 1 else f"{', '.join(f'{e:,}' for e in entries)} entries"
    )
    lines.append(f"- The runs stored {same}, with {errors} cache errors on Ray.")
    return lines


def _cost(report: Mapping[str, Any], m: Measured) -> list[str]:
    runs = report["runs"]
    vector = next(r["cache"]["vector"] for r in runs if "vector" in r["cache"])
    lines = [
        "## What one vector costs in the cache",
        "",
        f"- The value is `encode_array` (`promptzip/_cache.py`): the `.npy` of a {vector['dtype']} vector of "
        f"{vector['dim']} dimensions, a {vector['header_bytes']}-byte header plus the data, so "
        f"**{vector['value_bytes']:,} bytes**.",
    ]
    if report["backend"] != "redis":
        per = ", ".join(f"{r['cache']['file_bytes_per_entry']:,.0f}" for r in runs)
        return [
            *lines,
            "- `redis-server` was not found, so each run wrote a SQLite file. Its size over its entries was "
            f"{per} bytes. **The plan below uses {m.entry_bytes:,.0f} bytes per vector**, a SQLite stand-in "
            "for Redis's figure: run again with `redis-server` on the PATH for that.",
        ]
    strlen = sorted({v for r in runs for v in r["cache"]["value_bytes_range"]})
    usage = statistics.fmean(r["cache"]["memory_usage_mean"] for r in runs)
    per = ", ".join(f"{r['cache']['used_memory_per_entry']:,.0f}" for r in runs)
    return [
        *lines,
        f"  `STRLEN` read {'–'.join(f'{v:,}' for v in strlen)} on the sampled keys "
        f"({runs[0]['cache']['sampled_keys']} per run).",
        f"- A key is `promptzip:` plus 64 hex characters, {m.key_bytes:.0f} bytes. `MEMORY USAGE` reports "
        f"**{usage:,.0f} bytes** per entry on average: the value, the key, Redis's object and dictionary overhead, "
        "and jemalloc's size classes.",
        f"- The change in `used_memory` divided by the keys was {per} bytes (one run each). **The plan below uses "
        f"{m.entry_bytes:,.0f} bytes per vector**, the median.",
        "- These runs used `?ttl=0`, which stores no expiry. With the default `ttl` (7 days) each key also carries "
        "an entry in Redis's expiry table, and the whole corpus goes cold a week later. An index-time warm-up "
        "should use `ttl=0`.",
    ]


def _plan(m: Measured) -> list[str]:
    p, f = plan(m), plan(m).long_factor
    long_tokens, (small, small_s), (big, big_s) = LONG_CHUNK_TOKENS, p.wall_s[0], p.wall_s[-1]
    vps = m.vectors_per_chunk / m.sentences_per_chunk
    n = _count(p.chunks)
    return [
        "## Plan for 100M chunks",
        "",
        f"Measured ratios (this corpus, chunks of about {m.tokens_per_chunk:.0f} tokens): "
        f"{m.sentences_per_chunk:.2f} sentences and {m.vectors_per_chunk:.2f} vectors per chunk. Rate: "
        f"{m.rate:.0f} sentences/s per 1-CPU worker.",
        "",
        f"| quantity | arithmetic | {n} chunks of ~{m.tokens_per_chunk:.0f} tokens | {n} chunks of ~{long_tokens} "
        f"tokens (× {f:.2f}) |",
        "|---|---|---:|---:|",
        f"| sentences | {n} × {m.sentences_per_chunk:.2f} | {_count(p.sentences)} | {_count(p.sentences * f)} |",
        f"| vectors stored | {n} × {m.vectors_per_chunk:.2f} | {_count(p.vectors)} | {_count(p.vectors * f)} |",
        f"| CPU time | {_count(p.sentences)} ÷ {m.rate:.0f} /s | {p.cpu_s:,.0f} s = {p.cpu_s / 3600:,.0f} "
        f"worker-hours | {p.cpu_s * f / 3600:,.0f} worker-hours |",
        f"| wall time, {small} workers | {p.cpu_s:,.0f} s ÷ {small} | {_duration(small_s)} | "
        f"{_duration(small_s * f)} |",
        f"| wall time, {big} workers | {p.cpu_s:,.0f} s ÷ {big} | {_duration(big_s)} | {_duration(big_s * f)} |",
        f"| Redis memory | {_count(p.vectors)} × {m.entry_bytes:,.0f} B | **{_bytes(p.memory_bytes)}** "
        f"({p.memory_bytes / 2**40:.3g} TiB) | {_bytes(p.memory_bytes * f)} |",
        f"| of which vector values | {_count(p.vectors)} × {m.value_bytes:,.0f} B | {_bytes(p.value_bytes)} | "
        f"{_bytes(p.value_bytes * f)} |",
        f"| Redis writes at {big} workers | {big} × {m.rate:.0f} × {vps:.2f} vectors/s | {_count(p.sets_per_s)} "
        f"SET/s, ~{_bytes(p.write_bytes_per_s)}/s of keys and values | the same rate, {f:.2f}× longer |",
        "",
        "Cost of the fixed parts:",
        "",
        f"- Model loads: at most {m.load_s:.1f} s per worker, in parallel. That is {100 * p.load_share:.2g}% of a "
        f"{_duration(small_s)} job on {small} workers.",
        f"- The driver lists files and streams the results: one small row per {BATCH_CHUNKS}-chunk batch, so "
        f"{_count(p.driver_rows)} rows for {n} chunks, summed as they arrive.",
        f"- Each worker holds one MiniLM: at most {m.worker_rss_bytes / 1e9:.2f} GB of resident memory per actor "
        f"in these runs, so a 16-core node running 16 workers needs about {16 * m.worker_rss_bytes / 1e9:.0f} GB "
        "for them.",
        "",
        "The plan:",
        "",
        f"1. **Workers.** {small} workers warm {n} chunks of this size in about {_duration(small_s)}, or {big} "
        f"workers in about {_duration(big_s)}. The work scales linearly with workers: there is no shared state "
        "besides the cache, and the split runs on the same nodes at 0 requested CPU.",
        f"2. **Redis is the constraint, not compute.** {_bytes(p.memory_bytes)} does not fit one Redis. It needs "
        f"about {p.shards} shards of {_bytes(SHARD_BYTES)}, which means Redis Cluster. The write rate at {big} "
        f"workers, {_count(p.sets_per_s)} SET/s and about {_bytes(p.write_bytes_per_s)}/s, is also past one "
        "single-threaded Redis and one 1 GbE link.",
        "   - **promptzip's `RedisCache` does not speak Redis Cluster today.** It uses `redis.Redis.from_url`, and "
        "a cluster would also need `MGET`s that cross slots to be split. This is a change to `promptzip/_redis.py` "
        "(not made here).",
        f"   - Until then the plan caps at what one Redis holds: {_bytes(SHARD_BYTES)} ÷ {m.entry_bytes:,.0f} B = "
        f"{_count(p.vectors_per_instance)} vectors, so about {_count(p.chunks_per_instance)} chunks of this size "
        "per instance.",
        "   - Alternatively, shard by corpus: each tenant or collection gets its own `redis://` URL and its own "
        "warm job.",
        "3. **Ways to shrink it** (not done here; each changes what the cache stores):",
        f"   - Store the vectors as float16: a value of {m.float16_value_bytes:,.0f} bytes, about "
        f"{p.float16_entry_bytes:,.0f} B per entry in Redis. That cuts the memory by "
        f"{100 * (1 - p.float16_memory_bytes / p.memory_bytes):.0f}%, to {_bytes(p.float16_memory_bytes)}.",
        f"   - Warm only the sentence vectors: {_count(p.sentences)} entries instead of {_count(p.vectors)}, "
        f"{100 * (1 - p.sentences / p.vectors):.0f}% fewer ({_bytes(p.sentence_only_memory_bytes)}), giving up "
        "the clause vectors of long sentences.",
        f"   - Together they give about {_bytes(p.both_memory_bytes)}.",
        "4. **Settings for the job.**",
        '   - Use `--cache "redis://HOST/0?ttl=0&timeout=5"`. With `ttl=0` nothing expires. The `timeout` matters '
        f"because the 0.25 s default can fail a pipelined {BATCH_CHUNKS}-chunk write on a busy server. A failed "
        "write is counted: `RayWarmReport.cache_errors`, and `promptzip warm --ray` exits 1.",
        "   - Set Redis's `maxmemory` above the plan's figure, with `maxmemory-policy noeviction` for the warm-up, "
        "so a full Redis fails writes loudly instead of evicting earlier vectors.",
    ]


def markdown(report: Mapping[str, Any]) -> str:
    """The report as the page ``evals/results/warm_ray.md``."""
    m, base, corpus = measured(report), report["runs"][0], report["corpus"]
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    before, after = (", ".join(f"{x:.2f}" for x in report[k]) for k in ("loadavg_before", "loadavg_after"))
    s = base["summary"]
    cache = (
        "a local `redis-server` (persistence off), one fresh database per run: "
        "`redis://127.0.0.1:PORT/N?ttl=0&timeout=5`"
        if report["backend"] == "redis"
        else "a fresh SQLite file per run (`redis-server` was not found)"
    )
    lines = [
        "# promptzip warm on Ray Data: throughput per worker, and a plan for 100M chunks",
        "",
        f"Command: `{report['command']}` · {report['date']} · {report['seconds']} s · {report['machine']}, "
        f"{versions} · load average (1/5/15 min) {before} before, {after} after. On shared cores, take the rates "
        "as a lower bound for a dedicated core.",
        "",
        "`promptzip warm PATH... --ray [--workers N] [--address auto]` (`promptzip/_warm_ray.py`, extra `ray`) runs "
        "the index-time warm-up as a Ray Data pipeline: `read_binary_files` → `map_batches` (split, as "
        "`warm_texts` splits) → `map_batches` with an actor pool of N workers (`ActorPoolStrategy(size=N)`, 1 CPU "
        f"each). Each worker builds the preset's Zipper on the shared cache URL once, and calls `warm_compressor` "
        f"on batches of {BATCH_CHUNKS} chunks.",
        "",
        "## Set-up",
        "",
        f"- Corpus: `promptzip.evals._bench_inputs.warm_input({corpus['tokens_asked']:,})` ({corpus['source']}): "
        f"{corpus['tokens']:,} o200k tokens, written as {corpus['files']} files. No paragraph repeats, so every "
        "vector is new work.",
        f"  - {s['chunks']:,} chunks (about {m.tokens_per_chunk:.0f} tokens each), {s['sentences']:,} sentences.",
        f"  - {base['cache']['entries']:,} cache entries: {m.vectors_per_chunk / m.sentences_per_chunk:.2f} "
        f"vectors per sentence, {m.vectors_per_chunk:.2f} per chunk (the sentence vectors plus the clause vectors "
        "of long sentences).",
        f"- Cache: {cache}.",
        "- Runs, one after another, each in a fresh process: `promptzip warm FOLDER --cache URL --json --quiet` "
        "with `OMP_NUM_THREADS=1`, then the same with `--ray --workers W` for each pool size, each starting its own "
        "local Ray cluster. After each run the harness read the cache (`DBSIZE`, `MEMORY USAGE` and `STRLEN` of "
        "sampled keys, the change in `INFO memory` `used_memory`) and sampled each encoder process's resident "
        "memory.",
        "",
        "## Throughput",
        "",
        "- A worker's rate counts sentences per second inside its warm calls. Model load and idle time are left out.",
        "- The job rate counts sentences per second over the whole job: on Ray it includes starting Ray, loading the "
        "models and Ray Data's start-up; the one-process job is its model load plus its warm-up. Process s is the "
        "whole command, interpreter and imports included.",
        "",
        "| run | workers × threads | per-worker sentences/s | busy s per worker | job s | job sentences/s | "
        "model load s | Ray start s | process s | entries | cache errors | peak GB per worker |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(_row(r) for r in report["runs"]),
        "",
        *_shows(report, m),
        "",
        *_cost(report, m),
        "",
        *_plan(m),
        "",
        "## Reproduce",
        "",
        "```bash",
        "make install   # the default EXTRAS include ray; redis-server on the PATH for Redis's figures",
        f"{report['command']}   # or all of make bench",
        "```",
        "",
    ]
    return "\n".join(lines)
