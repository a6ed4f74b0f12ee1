"""``python -m promptzip.evals.bench --warm-breakdown``: the warm path alone, stage by stage (see
:mod:`promptzip.evals.bench` for what is measured and how); writes ``warm_path.md`` and ``.json``. Each (preset, size)
runs in a fresh process, dispatched by the bench's ``--child`` to :func:`_child_warm`."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from promptzip.evals._bench_inputs import RATIO, cpus, spawn, warm_input

__all__ = ["WARM_SIZES", "run_warm", "warm_markdown"]

WARM_SIZES = (1000, 4000, 10_000, 30_000, 100_000)
WARM_STAGES = (  # (Result.timings key, label); indented labels are parts of the stage above them
    ("split", "split (+ counting the input)"),
    ("propose", "propose"),
    ("sentences", "· sentences"),
    ("relevance", "· relevance (dense + BM25)"),
    ("query_embedding", "·· of which the question's embedding"),
    ("chunk_relevance", "· chunk relevance (pooled)"),
    ("dedup", "· dedup"),
    ("variants", "· variants (built and counted)"),
    ("clauses", "· clause variants"),
    ("select", "select (knapsack)"),
    ("assemble", "assemble + fit + count"),
    ("total", "total"),
)


def _dense_scorers(obj: Any, seen: set[int] | None = None) -> Iterator[Any]:
    """The dense scorers inside a compressor (through its scorer, inner and extractive compressors)."""
    from promptzip.retrievers.dense import DenseScorer

    seen = set() if seen is None else seen
    if obj is None or id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, DenseScorer):
        yield obj
        return
    for name in ("scorer", "dense", "first", "inner", "extractive"):
        yield from _dense_scorers(getattr(obj, name, None), seen)


def _child_warm(preset: str, size: int, repeats: int) -> dict[str, Any]:
    import promptzip as pz
    from promptzip._cache import MemoryCache
    from promptzip._pipeline import record_timing
    from promptzip._tokenizers import text_memos_disabled
    from promptzip._warm import warm_texts

    text, questions, source = warm_input(size)
    started = time.perf_counter()
    pz.Zipper.from_preset(preset, target="o200k_base", cache="memory").compress(
        "Models load once. Then they stay.", question="What loads?", budget=50
    )
    load_s = time.perf_counter() - started
    cold_zipper = pz.Zipper.from_preset(preset, target="o200k_base", cache=MemoryCache(max_bytes=1 << 30))
    tokens = cold_zipper.tokenizer.count(text)
    budget = max(1, tokens // RATIO)
    t = time.perf_counter()
    cold = cold_zipper.compress(text, question=questions[0], budget=budget)
    cold_s = time.perf_counter() - t
    # The warm calls run on a Zipper whose empty cache the index-time warm-up (promptzip warm) filled: every
    # sentence's vector and every long sentence's clause vectors, which a new question may need.
    zipper = pz.Zipper.from_preset(preset, target="o200k_base", cache=MemoryCache(max_bytes=1 << 30))
    warmed = warm_texts(zipper, [text])
    for dense in _dense_scorers(zipper.compressor):  # the question's embedding as a stage of its own
        embed = dense.embed_query

        def timed(query: str, embed: Any = embed) -> Any:
            t = time.perf_counter()
            try:
                return embed(query)
            finally:
                record_timing("query_embedding", time.perf_counter() - t)

        dense.embed_query = timed
    asked = iter(_distinct(questions[1:] or questions, 2 * repeats))
    runs: dict[str, list[dict[str, float]]] = {"no_memo": [], "memo": []}
    for _ in range(repeats):  # the two modes in turn, so that both see the same load
        with text_memos_disabled():
            runs["no_memo"].append(dict(zipper.compress(text, question=next(asked), budget=budget).timings))
        runs["memo"].append(dict(zipper.compress(text, question=next(asked), budget=budget).timings))
    return {
        "method": f"promptzip-{preset}",
        "tokens": tokens,
        "budget": budget,
        "source": source,
        "chunks": len(cold.chunks),
        "load_s": load_s,
        "cold_s": cold_s,
        "warm_up_s": warmed.seconds,
        "warm_up_sentences": warmed.sentences,
        "runs": runs,
        "median_ms": {mode: _medians(r) for mode, r in runs.items()},
    }


def _distinct(questions: Sequence[str], n: int) -> list[str]:
    """``n`` different questions, cycling through ``questions`` (marked with a round number after the first round),
    so that no warm call finds its question's embedding remembered."""
    cycled = itertools.islice(itertools.cycle(questions), n)
    return [q if k < len(questions) else f"{q} ({k // len(questions)})" for k, q in enumerate(cycled)]


def _medians(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = {k for r in runs for k in r}
    return {k: 1000 * statistics.median(r.get(k, 0.0) for r in runs) for k in sorted(keys)}


def run_warm(
    sizes: Sequence[int] = WARM_SIZES,
    *,
    presets: Sequence[str] = ("fast",),
    repeats: int = 7,
    threads: int = 1,
    timeout: float = 900,
    command: str = "",
    progress: bool = True,
) -> dict[str, Any]:
    """The warm path, stage by stage, for each preset and size (see the module docstring)."""
    from tqdm import tqdm

    load_before = os.getloadavg()
    specs = [
        {"kind": "warm", "name": p, "size": s, "repeats": repeats, "threads": threads} for p in presets for s in sizes
    ]
    rows = []
    for spec in tqdm(specs, desc="warm path", disable=not progress, file=sys.stderr):
        row = spawn(spec, timeout)
        rows.append(row)
        if progress and "error" not in row:
            memo, plain = row["median_ms"]["memo"], row["median_ms"]["no_memo"]
            print(
                f"{row['method']} {row['tokens']} tokens: {memo['total']:.1f} ms warm "
                f"({plain['total']:.1f} ms without memos)",
                file=sys.stderr,
            )
        elif progress:
            print(json.dumps(row), file=sys.stderr)
    return {
        "command": command,
        "machine": f"{platform.machine()} CPU, {cpus()} cores (shared), Python {platform.python_version()}",
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "threads": threads,
        "ratio": RATIO,
        "repeats": repeats,
        "rows": rows,
    }


def warm_markdown(report: dict[str, Any]) -> str:
    rows = [r for r in report["rows"] if "error" not in r]
    source = rows[0]["source"] if rows else "–"
    lines = [
        "# promptzip warm path",
        "",
        f"Command: `{report['command']}` · {report['machine']} · {report['threads']} thread(s) (torch and BLAS) · "
        f"load average {', '.join(map(str, report['loadavg_before']))} before, "
        f"{', '.join(map(str, report['loadavg_after']))} after.",
        "",
        f"Text: {source}; budget = input / {report['ratio']}. Each size runs in a fresh process: models loaded, one "
        "cold call (fills the score cache), the index-time warm-up of the text (`promptzip warm`: every long "
        f"sentence's clause vectors too), then {report['repeats']} warm calls with new questions in each mode, "
        "the modes in turn. **memo**: as shipped; **no memo**: the token counts and splits of earlier requests "
        "forgotten (`text_memos_disabled`), the rest the same. Milliseconds, medians over the warm calls (fastest: "
        "the quickest memo call, the least disturbed by other work on a shared machine). Warm-up: sentences "
        "prepared per second by the index-time warm-up from an empty cache, one thread.",
        "",
        "## Warm curve",
        "",
        "| preset | tokens | chunks | warm ms (memo) | fastest | warm ms (no memo) | no memo / memo | "
        "µs per token (memo) | cold s | warm-up sentences/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        memo, plain = r["median_ms"]["memo"]["total"], r["median_ms"]["no_memo"]["total"]
        fastest = 1000 * min(run["total"] for run in r["runs"]["memo"])
        lines.append(
            f"| {r['method']} | {r['tokens']} | {r['chunks']} | {memo:.1f} | {fastest:.1f} | {plain:.1f} | "
            f"{plain / memo:.2f} | {1000 * memo / r['tokens']:.2f} | {r['cold_s']:.2f} | "
            f"{r['warm_up_sentences'] / max(r['warm_up_s'], 1e-9):.0f} |"
        )
    for r in report["rows"]:
        if "error" in r:
            lines.append(f"| {r['method']} | ~{r['size']} | error: {r['error'][:80]} | | | | | | | |")
    for r in rows:
        lines += [
            "",
            f"## {r['method']}, {r['tokens']} tokens, per stage (ms)",
            "",
            "| stage | memo | no memo |",
            "|---|---:|---:|",
        ]
        memo, plain = r["median_ms"]["memo"], r["median_ms"]["no_memo"]
        for key, label in WARM_STAGES:
            if key in memo or key in plain:
                lines.append(f"| {label} | {memo.get(key, 0.0):.2f} | {plain.get(key, 0.0):.2f} |")
    lines.append("")
    return "\n".join(lines)


def _warm_from_args(args: argparse.Namespace, out: Any) -> int:
    sizes = [int(s) for s in (args.sizes or ",".join(map(str, WARM_SIZES))).split(",") if s]
    presets = [p for p in args.presets.split(",") if p] or ["fast"]
    command = (
        f"python -P -m promptzip.evals.bench --warm-breakdown --sizes {','.join(map(str, sizes))} "
        f"--presets {','.join(presets)} --repeats {args.repeats} --threads {args.threads}"
    )
    report = run_warm(
        sizes, presets=presets, repeats=args.repeats, threads=args.threads, timeout=args.timeout, command=command
    )
    folder: Path = args.out
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "warm_path.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    text = warm_markdown(report)
    (folder / "warm_path.md").write_text(text, encoding="utf-8")
    out.write(text)
    return 0
