"""``make bench``: how compression cost grows with input length, for every promptzip preset and for llmlingua.

Inputs of about 1k, 4k, 16k and 64k o200k tokens are built by concatenating *different* SQuAD v1.1 dev articles
(whole paragraphs, never repeated text), with a question about the first article; where SQuAD cannot be fetched
(its release was withdrawn), from the packaged State of the Union sample continued by its own word pairs, and the
report says which. Each (method, size) runs in a
fresh subprocess, so its peak memory (RSS) is its own:

* promptzip presets: the models are loaded first (load time reported apart); **cold** = a new Zipper with an empty
  in-memory cache; **warm** = the same text again with a different question (every sentence embedding comes from
  the cache: the "compress once, cache, reuse" path). Budget = input / 10.
* llmlingua (LLMLingua-1, LongLLMLingua; SmolLM2-135M, their own environment, see ``baselines.py``): one call per
  size (it has no cache, so there is no warm figure), at the sizes given by ``--llmlingua-sizes`` (default 1k and
  4k: a 16k LongLLMLingua call takes several minutes on this 2-core CPU, and 64k tens of minutes).

Ratios are the achieved ``tokens in / tokens out`` of the same calls. Writes ``evals/results/bench.json``,
``bench.md`` and ``bench.png``; the figures are measurements of this machine, not assertions.

``--warm-breakdown`` measures the warm path alone, stage by stage (``Result.timings`` plus the question's embedding),
at 1k-100k tokens (``WARM_SIZES``), one fresh process per (preset, size), one thread everywhere (torch, BLAS): after
a cold call, ``--repeats`` warm calls with new questions, each run twice in turn, with the remembered token counts and
splits of earlier requests (``memo``) and without them (``no memo``, :func:`promptzip._tokenizers.text_memos_disabled`),
so both see the same load. The text is SQuAD dev as above when it is fetched, else the packaged State of the Union
sample, continued past its 10.7k tokens by word-bigram text drawn from it (never repeating a paragraph). Writes
``evals/results/warm_path.md`` and ``.json`` with the command and the load average.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["build_input", "main", "run", "run_warm", "warm_input"]

SIZES = (1000, 4000, 16_000, 64_000)
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
# Questions about the State of the Union sample, for the warm path when SQuAD is not fetched.
SAMPLE_QUESTIONS = (
    "How much private-sector capital did the President say his proposed new markets tax credit would spur?",
    "What did the President propose to make college more affordable?",
    "How many new jobs had the economy created?",
    "What did the President ask Congress to do about the minimum wage?",
    "Which program did Congress pass in 1997 for children's health insurance?",
    "What did the President say about the hottest decade on record?",
    "How many years until there is no majority race in California?",
    "What did the President say about Social Security and Medicare?",
    "Who did the President ask to stand up in the chamber?",
    "What are researchers about to complete this year?",
    "What did the President propose for retirement savings accounts?",
    "How did the President describe the state of the Union?",
)
LLMLINGUA_SIZES = (1000, 4000)
RATIO = 10


def build_input(size: int) -> tuple[str, str, str]:
    """About ``size`` o200k tokens and two questions about its start: ``(text, question, other_question)``: SQuAD
    dev articles when fetched, else the packaged sample continued as :func:`warm_input` does (the bench's report
    names which, :func:`input_source`)."""
    text, questions, _ = warm_input(size)
    return text, questions[0], questions[1]


def input_source() -> str:
    """Where :func:`build_input` takes its text from on this machine."""
    from promptzip.evals import data

    return "concatenated SQuAD dev articles" if data.available("squad") else "the packaged State of the Union sample"


def _fill(size: int, paragraphs: Iterator[str], what: str) -> str:
    """Whole paragraphs, joined by blank lines, up to about ``size`` o200k tokens."""
    from promptzip._tokenizers import get_tokenizer
    from promptzip.evals import data

    tok = get_tokenizer("o200k_base")
    parts: list[str] = []
    used = 0
    for paragraph in paragraphs:
        cost = tok.count(paragraph) + (1 if parts else 0)
        if used + cost > size and parts:
            return "\n\n".join(parts)
        parts.append(paragraph)
        used += cost
    raise data.DataError(f"{what} has fewer than {size} tokens")


def warm_input(size: int) -> tuple[str, list[str], str]:
    """About ``size`` o200k tokens, questions about its start, and where the text is from: SQuAD dev articles
    (as :func:`build_input`) when fetched, else the packaged State of the Union sample, continued by
    :func:`_bigram_paragraphs`."""
    from promptzip.evals import data

    try:
        articles = data.load_squad_dev()
    except data.DataError:
        from importlib import resources

        sample = (resources.files("promptzip") / "_sample" / "sotu.txt").read_text(encoding="utf-8")
        paragraphs = [p.strip() for p in sample.split("\n\n") if p.strip()]
        text = _fill(size, _chain(paragraphs, _bigram_paragraphs(sample)), "the sample")
        return text, list(SAMPLE_QUESTIONS), "promptzip/_sample/sotu.txt, continued by word-bigram text drawn from it"
    text = _fill(size, (p.text for a in articles for p in a.paragraphs), "SQuAD dev")
    return text, [q.question for q in articles[0].questions], "SQuAD v1.1 dev articles"


def _chain(first: list[str], rest: Iterator[str]) -> Iterator[str]:
    yield from first
    yield from rest


def _bigram_paragraphs(sample: str, *, seed: int = 0) -> Iterator[str]:
    """Endless paragraphs of 4-8 sentences from a word-bigram chain of ``sample`` (seeded, so the same every run):
    the sample's words, sentence lengths and punctuation, in sentences that do not repeat."""
    words = sample.split()
    follow: dict[str, list[str]] = {}
    for a, b in itertools.pairwise(words):
        follow.setdefault(a, []).append(b)
    starts = [b for a, b in itertools.pairwise(words) if a.endswith((".", "?", "!")) and b[:1].isupper()]
    rng = random.Random(seed)
    while True:
        sentences = []
        for _ in range(rng.randint(4, 8)):
            word = rng.choice(starts)
            sentence = [word]
            while not word.endswith((".", "?", "!")) and len(sentence) < 40:
                word = rng.choice(follow.get(word) or starts)
                sentence.append(word)
            sentences.append(" ".join(sentence).rstrip(".?!,;:") + ".")
        yield " ".join(sentences)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child_preset(preset: str, size: int) -> dict[str, Any]:
    import promptzip as pz
    from promptzip._cache import MemoryCache

    text, question, other = build_input(size)
    started = time.perf_counter()
    warmup = pz.Zipper.from_preset(preset, target="o200k_base", cache="memory")
    warmup.compress("Models load once. Then they stay.", question="What loads?", budget=50)
    load_s = time.perf_counter() - started
    rss_loaded = _peak_rss_mb()
    zipper = pz.Zipper.from_preset(preset, target="o200k_base", cache=MemoryCache(max_bytes=1 << 30))
    tokens = zipper.tokenizer.count(text)
    budget = tokens // RATIO
    t = time.perf_counter()
    cold = zipper.compress(text, question=question, budget=budget)
    cold_s = time.perf_counter() - t
    t = time.perf_counter()
    warm = zipper.compress(text, question=other, budget=budget)
    warm_s = time.perf_counter() - t
    return {
        "method": f"promptzip-{preset}",
        "tokens": tokens,
        "budget": budget,
        "load_s": load_s,
        "cold_s": cold_s,
        "warm_s": warm_s,
        "cold_tokens_per_s": tokens / cold_s,
        "warm_tokens_per_s": tokens / warm_s,
        "ratio_cold": cold.ratio,
        "ratio_warm": warm.ratio,
        "tokens_out": cold.tokens_out,
        "peak_rss_mb": _peak_rss_mb(),
        "rss_after_load_mb": rss_loaded,
    }


def _child_llmlingua(method: str, size: int) -> dict[str, Any]:
    from promptzip._tokenizers import get_tokenizer
    from promptzip.evals.baselines import BaselineWorker

    text, question, _ = build_input(size)
    tok = get_tokenizer("o200k_base")
    tokens = tok.count(text)
    budget = tokens // RATIO
    worker = BaselineWorker()
    try:
        load = worker.ask({"op": "load", "method": method})
        rss_loaded = worker.ask({"op": "rss"})["peak_rss_mb"]
        answer = worker.ask(
            {"op": "compress", "method": method, "contexts": text.split("\n\n"), "question": question, "budget": budget}
        )
        rss = worker.ask({"op": "rss"})["peak_rss_mb"]
    finally:
        worker.close()
    out_tokens = tok.count(str(answer["text"]))
    return {
        "method": method,
        "tokens": tokens,
        "budget": budget,
        "load_s": float(load["seconds"]),
        "cold_s": float(answer["seconds"]),
        "warm_s": None,
        "cold_tokens_per_s": tokens / float(answer["seconds"]),
        "warm_tokens_per_s": None,
        "ratio_cold": tokens / out_tokens if out_tokens else None,
        "ratio_warm": None,
        "tokens_out": out_tokens,
        "peak_rss_mb": rss,
        "rss_after_load_mb": rss_loaded,
    }


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


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    threads = int(spec.get("threads", 1))
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
        os.environ["PZ_BASELINE_THREADS"] = str(threads)
    if spec["kind"] == "preset":
        return _child_preset(spec["name"], int(spec["size"]))
    if spec["kind"] == "warm":
        return _child_warm(spec["name"], int(spec["size"]), int(spec.get("repeats", 7)))
    return _child_llmlingua(spec["name"], int(spec["size"]))


def _spawn(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-P", "-m", "promptzip.evals.bench", "--child", json.dumps(spec)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    if spec["kind"] == "warm" and int(spec.get("threads", 1)) > 0:  # numpy's BLAS too, not only torch
        threads = str(spec["threads"])
        env.update(dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), threads))
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    except subprocess.TimeoutExpired:
        return {"method": spec["name"], "size": spec["size"], "error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"method": spec["name"], "size": spec["size"], "error": " | ".join(tail) or f"exit {done.returncode}"}
    row: dict[str, Any] = json.loads(lines[-1])
    row["size"] = spec["size"]
    return row


def run(
    sizes: Sequence[int] = SIZES,
    *,
    presets: Sequence[str] | None = None,
    llmlingua: Sequence[str] = ("llmlingua", "longllmlingua"),
    llmlingua_sizes: Sequence[int] = LLMLINGUA_SIZES,
    timeout: float = 900,
    threads: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    from tqdm import tqdm

    from promptzip._registry import registries

    if presets is not None:
        names = [p for p in presets if p != "none"]
    else:  # every preset but the slow ones (``max`` generates text per chunk: name it to bench it)
        names = [p for p in registries.presets.names() if not getattr(registries.presets.get(p), "slow", False)]
    specs: list[dict[str, Any]] = [{"kind": "preset", "name": p, "size": s} for p in names for s in sizes]
    specs += [{"kind": "llmlingua", "name": m, "size": s} for m in llmlingua for s in llmlingua_sizes]
    for spec in specs:
        spec["threads"] = threads
    rows = []
    for spec in tqdm(specs, desc="bench", disable=not progress, file=sys.stderr):
        row = _spawn(spec, timeout)
        rows.append(row)
        if progress:
            shown = {k: row.get(k) for k in ("method", "size", "cold_s", "warm_s", "peak_rss_mb", "error")}
            print(json.dumps(shown), file=sys.stderr)
    return {
        "machine": f"{platform.machine()} CPU, {_cpus()} cores (shared), Python {platform.python_version()}",
        "ratio": RATIO,
        "source": input_source(),
        "threads": threads,
        "sizes": list(sizes),
        "llmlingua_sizes": list(llmlingua_sizes),
        "rows": rows,
    }


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _fmt(x: float | None, spec: str) -> str:
    return "–" if x is None else format(x, spec)


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
        row = _spawn(spec, timeout)
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
        "machine": f"{platform.machine()} CPU, {_cpus()} cores (shared), Python {platform.python_version()}",
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


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# promptzip bench",
        "",
        f"{report['machine']}, {report.get('threads', 1)} torch thread(s) per process. Query-aware compression at "
        f"{report['ratio']}x of {report.get('source', 'concatenated SQuAD dev articles')}; "
        "each row is a fresh process (models loaded first; load time and RSS after load shown apart). Cold: empty "
        "cache. Warm: same text, new question, warm cache. llmlingua has no cache (no warm figure) and runs at "
        f"{', '.join(f'{s // 1000}k' for s in report['llmlingua_sizes'])} only (16k+ takes minutes per call here).",
        "",
        "| method | tokens | cold s | warm s | cold tok/s | warm tok/s | ratio (cold/warm) | peak RSS MB | "
        "RSS after load MB | load s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        if "error" in r:
            lines.append(f"| {r['method']} | ~{r['size']} | error: {r['error'][:80]} | | | | | | | |")
            continue
        ratio = f"{_fmt(r['ratio_cold'], '.1f')}/{_fmt(r['ratio_warm'], '.1f')}"
        lines.append(
            f"| {r['method']} | {r['tokens']} | {r['cold_s']:.2f} | {_fmt(r['warm_s'], '.3f')} | "
            f"{r['cold_tokens_per_s']:.0f} | {_fmt(r['warm_tokens_per_s'], '.0f')} | {ratio} | "
            f"{r['peak_rss_mb']:.0f} | {r['rss_after_load_mb']:.0f} | {r['load_s']:.1f} |"
        )
    lines.append("")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    methods = sorted({r["method"] for r in report["rows"] if "error" not in r})
    for method in methods:
        rows = sorted(
            (r for r in report["rows"] if r["method"] == method and "error" not in r), key=lambda r: r["tokens"]
        )
        xs = [r["tokens"] for r in rows]
        ax.plot(xs, [r["cold_s"] for r in rows], "o-", label=f"{method} cold")
        warm = [(r["tokens"], r["warm_s"]) for r in rows if r["warm_s"] is not None]
        if warm:
            ax.plot([x for x, _ in warm], [y for _, y in warm], "s--", label=f"{method} warm")
    anchor = min(
        (r for r in report["rows"] if "error" not in r), key=lambda r: (r["tokens"], r["cold_s"]), default=None
    )
    if anchor is not None:
        xs = sorted({r["tokens"] for r in report["rows"] if "error" not in r})
        ys = [anchor["cold_s"] * x / anchor["tokens"] for x in xs]
        ax.plot(xs, ys, ":", color="grey", label="linear growth (slope 1)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("input length, o200k tokens")
    ax.set_ylabel("seconds per call")
    ax.set_title(f"compression latency vs input length ({report['ratio']}x, query-aware)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m promptzip.evals.bench", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes",
        default=None,
        help=f"input sizes in o200k tokens (default {','.join(map(str, SIZES))}; "
        f"with --warm-breakdown {','.join(map(str, WARM_SIZES))})",
    )
    parser.add_argument(
        "--presets", default="", help="comma-separated presets (default: all but slow ones; 'none': none)"
    )
    parser.add_argument("--llmlingua", default="llmlingua,longllmlingua", help="llmlingua methods ('' for none)")
    parser.add_argument("--llmlingua-sizes", default=",".join(map(str, LLMLINGUA_SIZES)))
    parser.add_argument("--timeout", type=float, default=900, help="seconds per (method, size) subprocess")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (0: torch's default)")
    parser.add_argument("--out", type=Path, default=Path("evals/results"))
    parser.add_argument("--append", action="store_true", help="add these rows to the bench.json already there")
    parser.add_argument(
        "--warm-breakdown",
        action="store_true",
        help="only the warm path, per stage, with and without the text memos (warm_path.md/.json; default preset fast)",
    )
    parser.add_argument("--repeats", type=int, default=7, help="warm calls per mode and size with --warm-breakdown")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)


def run_from_args(args: argparse.Namespace, out: Any = None, err: Any = None) -> int:
    out = out or sys.stdout
    if args.child:
        print(json.dumps(_child(json.loads(args.child))), file=out, flush=True)
        return 0
    if args.warm_breakdown:
        return _warm_from_args(args, out)
    report = run(
        [int(s) for s in (args.sizes or ",".join(map(str, SIZES))).split(",") if s],
        presets=[p for p in args.presets.split(",") if p] or None,
        llmlingua=[m for m in args.llmlingua.split(",") if m],
        llmlingua_sizes=[int(s) for s in args.llmlingua_sizes.split(",") if s],
        timeout=args.timeout,
        threads=args.threads,
    )
    folder: Path = args.out
    folder.mkdir(parents=True, exist_ok=True)
    previous = folder / "bench.json"
    if args.append and previous.is_file():  # add rows to an earlier run (e.g. llmlingua at one more size)
        old = json.loads(previous.read_text(encoding="utf-8"))
        fresh = {(r["method"], r["size"]) for r in report["rows"]}
        report["rows"] = [r for r in old["rows"] if (r["method"], r["size"]) not in fresh] + report["rows"]
        report["sizes"] = sorted(set(old.get("sizes", [])) | set(report["sizes"]))
        report["llmlingua_sizes"] = sorted(set(old.get("llmlingua_sizes", [])) | set(report["llmlingua_sizes"]))
        report["rows"].sort(key=lambda r: (r["method"] != "promptzip-fast", r["method"], r["size"]))
    (folder / "bench.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    text = markdown(report)
    (folder / "bench.md").write_text(text, encoding="utf-8")
    plot(report, folder / "bench.png")
    out.write(text)
    return 0


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


if __name__ == "__main__":
    raise SystemExit(main())
