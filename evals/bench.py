"""``make bench``: how compression cost grows with input length, for every promptzip preset and for llmlingua.

Inputs of about 1k, 4k, 16k and 64k o200k tokens are built by concatenating *different* SQuAD v1.1 dev articles
(whole paragraphs, never repeated text), with a question about the first article; where SQuAD cannot be fetched
(its release was withdrawn), from the packaged State of the Union sample continued by its own word pairs, and the
report says which. Each (method, size) runs in a
fresh subprocess, so its peak memory (RSS) is its own:

* promptzip presets: the models are loaded first (load time reported apart); **cold** = a new Zipper with an empty
  in-memory cache; **warm** = the same text again with a different question (every sentence embedding comes from
  the cache: the "compress once, cache, reuse" path). Budget = input / 10. The :data:`VARIANTS` run beside their
  preset (``fast-cascade``: ``fast`` with ``cascade=True``), and the report sets each against its preset.
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
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from promptzip._errors import ConfigError, PromptZipError
from promptzip.evals._bench_inputs import RATIO, build_input, cpus, input_source, spawn, warm_input
from promptzip.evals._bench_variants import VARIANTS, variant_lines
from promptzip.evals.warm_path import WARM_SIZES, _child_warm, _warm_from_args

__all__ = ["main", "run"]

SIZES = (1000, 4000, 16_000, 64_000)
LLMLINGUA_SIZES = (1000, 4000)
LLMLINGUA_METHODS = ("llmlingua", "longllmlingua", "llmlingua2")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child_preset(name: str, size: int) -> dict[str, Any]:
    import promptzip as pz
    from promptzip._cache import MemoryCache
    from promptzip._warm import warm_texts

    preset, options = VARIANTS.get(name, (name, {}))
    text, question, other = build_input(size)
    started = time.perf_counter()
    warmup = pz.Zipper.from_preset(preset, target="o200k_base", cache="memory", **options)
    # more than the budget, so that the stack runs and loads its models (a text that fits is kept as it is)
    warmup.compress(
        "Models load once. Then they stay. Every later call reuses them. None loads twice.", question="What?", budget=12
    )
    load_s = time.perf_counter() - started
    rss_loaded = _peak_rss_mb()
    zipper = pz.Zipper.from_preset(preset, target="o200k_base", cache=MemoryCache(max_bytes=1 << 30), **options)
    tokens = zipper.tokenizer.count(text)
    budget = tokens // RATIO
    t = time.perf_counter()
    cold = zipper.compress(text, question=question, budget=budget)
    cold_s = time.perf_counter() - t
    t = time.perf_counter()
    warm = zipper.compress(text, question=other, budget=budget)
    warm_s = time.perf_counter() - t
    # index-time warm-up (``promptzip warm``): every sentence's vector cached, then a third question
    warm_texts(zipper, [text])
    t = time.perf_counter()
    zipper.compress(text, question=warm_input(size)[1][2], budget=budget)
    indexed_s = time.perf_counter() - t
    return {
        "method": f"promptzip-{name}",
        "tokens": tokens,
        "budget": budget,
        "load_s": load_s,
        "cold_s": cold_s,
        "warm_s": warm_s,
        "indexed_s": indexed_s,
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
    from promptzip.compressors.token_classifier import exported_classifier
    from promptzip.evals.baselines import BaselineWorker

    text, question, _ = build_input(size)
    tok = get_tokenizer("o200k_base")
    tokens = tok.count(text)
    budget = tokens // RATIO
    worker = BaselineWorker()
    # LLMLingua-2 runs on promptzip's distilled classifier, exported where llmlingua's name routing accepts it
    model = {"model": str(exported_classifier())} if method == "llmlingua2" else {}
    try:
        load = worker.ask({"op": "load", "method": method, **model})
        rss_loaded = worker.ask({"op": "rss"})["peak_rss_mb"]
        contexts = text.split("\n\n")
        answer = worker.ask(
            {"op": "compress", "method": method, "contexts": contexts, "question": question, "budget": budget, **model}
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


def run(
    sizes: Sequence[int] = SIZES,
    *,
    presets: Sequence[str] | None = None,
    llmlingua: Sequence[str] = LLMLINGUA_METHODS,
    llmlingua_sizes: Sequence[int] = LLMLINGUA_SIZES,
    timeout: float = 900,
    threads: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    from tqdm import tqdm

    from promptzip._registry import registries

    if presets is not None:
        names = [p for p in presets if p != "none"]
        known = [*registries.presets.names(), *VARIANTS]
        unknown = [p for p in names if p not in known]
        if unknown:
            raise ConfigError(f"unknown preset {unknown[0]!r}; use one of {', '.join(known)} or none")
    else:  # every preset but the slow ones (``max`` generates text per chunk: name it to bench it), and the variants
        names = [p for p in registries.presets.names() if not getattr(registries.presets.get(p), "slow", False)]
        names += [v for v, (p, _) in VARIANTS.items() if p in names]
    wrong = [m for m in llmlingua if m not in LLMLINGUA_METHODS]
    if wrong:
        raise ConfigError(f"unknown llmlingua method {wrong[0]!r}; use some of {', '.join(LLMLINGUA_METHODS)}")
    specs: list[dict[str, Any]] = [{"kind": "preset", "name": p, "size": s} for p in names for s in sizes]
    specs += [{"kind": "llmlingua", "name": m, "size": s} for m in llmlingua for s in llmlingua_sizes]
    for spec in specs:
        spec["threads"] = threads
    rows = []
    load_before = os.getloadavg()
    for spec in tqdm(specs, desc="bench", disable=not progress, file=sys.stderr):
        row = spawn(spec, timeout)
        row["source"], row["date"] = input_source(), time.strftime("%Y-%m-%d")
        rows.append(row)
        if progress:
            shown = {k: row.get(k) for k in ("method", "size", "cold_s", "warm_s", "peak_rss_mb", "error")}
            print(json.dumps(shown), file=sys.stderr)
    return {
        "machine": f"{platform.machine()} CPU, {cpus()} cores (shared), Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "load_average": [load_before, os.getloadavg()],
        "ratio": RATIO,
        "source": input_source(),
        "threads": threads,
        "sizes": list(sizes),
        "llmlingua_sizes": list(llmlingua_sizes),
        "rows": rows,
    }


def _fmt(x: float | None, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def _load(report: dict[str, Any]) -> str:
    loads = report.get("load_average")
    if not loads:
        return ""
    before, after = (" / ".join(f"{x:.2f}" for x in pair) for pair in loads)
    return f" Load average (1/5/15 min) {before} before the run, {after} after."


def markdown(report: dict[str, Any]) -> str:
    source = report.get("source", "concatenated SQuAD dev articles")
    lines = [
        "# promptzip bench",
        "",
        f"{report['machine']}, {report.get('threads', 1)} torch thread(s) per process"
        f"{', ' + report['date'] if report.get('date') else ''}.{_load(report)} Query-aware compression at "
        f"{report['ratio']}x of {source}; "
        "each row is a fresh process (models loaded first; load time and RSS after load shown apart). Cold: empty "
        "cache. Warm: same text, new question, warm cache. llmlingua 0.2.2 (LLMLingua and LongLLMLingua on "
        "SmolLM2-135M; llmlingua2: its LLMLingua-2 path on promptzip's distilled token classifier) has no cache (no "
        "warm figure) and runs at "
        f"{', '.join(f'{s // 1000}k' for s in report['llmlingua_sizes'])} only (16k+ takes minutes per call here). "
        "promptzip-fast-cascade is `fast` with `cascade=True`: its warm call encodes the sentences that only the new "
        "question makes candidates (those of the first question are cached).",
        "",
        "| method | tokens | cold s | warm s | cold tok/s | warm tok/s | ratio (cold/warm) | peak RSS MB | "
        "RSS after load MB | load s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    earlier = set()
    for r in report["rows"]:
        mark = ""
        if r.get("source", source) != source:
            mark = " †"
            earlier.add((r["source"], r.get("date") or ""))
        if "error" in r:
            lines.append(f"| {r['method']}{mark} | ~{r['size']} | error: {r['error'][:80]} | | | | | | | |")
            continue
        ratio = f"{_fmt(r['ratio_cold'], '.1f')}/{_fmt(r['ratio_warm'], '.1f')}"
        lines.append(
            f"| {r['method']}{mark} | {r['tokens']} | {r['cold_s']:.2f} | {_fmt(r['warm_s'], '.3f')} | "
            f"{r['cold_tokens_per_s']:.0f} | {_fmt(r['warm_tokens_per_s'], '.0f')} | {ratio} | "
            f"{r['peak_rss_mb']:.0f} | {r['rss_after_load_mb']:.0f} | {r['load_s']:.1f} |"
        )
    lines.append("")
    if earlier:
        runs = "; ".join(s + (f" ({d})" if d else "") for s, d in sorted(earlier))
        lines += [f"† from an earlier run on {runs}.", ""]
    lines += variant_lines(report, source)
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


def _sizes(text: str, flag: str) -> list[int]:
    """Comma-separated positive token counts."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"{flag} takes comma-separated positive ints (tokens), not {text!r}")
    return [int(p) for p in parts]


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
    parser.add_argument(
        "--llmlingua", default="llmlingua,longllmlingua,llmlingua2", help="llmlingua methods ('' for none)"
    )
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
    err = err or sys.stderr
    try:
        report = run(
            _sizes(args.sizes or ",".join(map(str, SIZES)), "--sizes"),
            presets=[p for p in args.presets.split(",") if p] or None,
            llmlingua=[m for m in args.llmlingua.split(",") if m],
            llmlingua_sizes=_sizes(args.llmlingua_sizes, "--llmlingua-sizes"),
            timeout=args.timeout,
            threads=args.threads,
        )
    except PromptZipError as exc:  # before anything ran or was written
        err.write(f"promptzip bench: error: {exc}\n")
        return 2
    folder: Path = args.out
    folder.mkdir(parents=True, exist_ok=True)
    previous = folder / "bench.json"
    if args.append and previous.is_file():  # add rows to an earlier run (e.g. llmlingua at one more size)
        old = json.loads(previous.read_text(encoding="utf-8"))
        for r in old["rows"]:  # where and when they were measured, for the report's marks
            r.setdefault("source", old.get("source", "concatenated SQuAD dev articles"))
            r.setdefault("date", old.get("date"))
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


if __name__ == "__main__":
    raise SystemExit(main())
