"""``make bench``: latency and throughput of the ``fast`` preset on the bundled ~10k-token speech.

Cold = an empty cache (the encoder already loaded; its load time is reported on its own); warm = the same text
again (every sentence embedding comes from the cache) and a different question on the warm cache. Sizes are
prefixes of the speech. Figures are printed and written to ``evals/results/bench.json``; they are measurements
of this machine, not assertions.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["main", "run"]


def _sample() -> tuple[str, str]:
    folder = resources.files("promptzip") / "_sample"
    meta = json.loads((folder / "sample.json").read_text(encoding="utf-8"))
    return (folder / meta["file"]).read_text(encoding="utf-8"), str(meta["question"])


def _timed(fn: Any, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def run(sizes: Sequence[int] = (1000, 4000, 10_000), *, budget_ratio: int = 10, repeat: int = 3) -> dict[str, Any]:
    import promptzip as pz
    from promptzip._cache import MemoryCache
    from promptzip._models import load_sentence_encoder

    text, question = _sample()
    tok = pz.get_tokenizer("gpt-4o")
    t = time.perf_counter()
    load_sentence_encoder("minilm")
    load_s = time.perf_counter() - t
    rows = []
    for size in sizes:
        ids = tok.encode(text)[:size]
        doc = tok.decode(ids)
        cut = doc.rfind("\n\n")
        doc = doc[:cut] if cut > len(doc) // 2 else doc
        n = tok.count(doc)
        budget = max(50, n // budget_ratio)
        cold = []
        for _ in range(repeat):
            zipper = pz.Zipper.from_preset("fast", cache=MemoryCache(max_bytes=1 << 30))
            t = time.perf_counter()
            zipper.compress(doc, question=question, budget=budget)
            cold.append(time.perf_counter() - t)
        warm = _timed(lambda z=zipper, d=doc, b=budget: z.compress(d, question=question, budget=b), repeat)
        other = _timed(lambda z=zipper, d=doc, b=budget: z.compress(d, question="What about schools?", budget=b), 1)
        rows.append(
            {
                "tokens": n,
                "budget": budget,
                "cold_s": statistics.median(cold),
                "warm_s": statistics.median(warm),
                "warm_new_question_s": other[0],
                "cold_tokens_per_s": n / statistics.median(cold),
                "warm_tokens_per_s": n / statistics.median(warm),
                "warm_speedup": statistics.median(cold) / statistics.median(warm),
            }
        )
    return {
        "machine": f"{platform.processor() or platform.machine()}, {_cpus()} CPUs",
        "model_load_s": load_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rows": rows,
    }


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m promptzip.evals.bench", description=__doc__)
    parser.add_argument("--sizes", default="1000,4000,10000", help="input sizes in o200k tokens")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default="evals/results/bench.json")
    args = parser.parse_args(argv)
    report = run([int(s) for s in args.sizes.split(",")], repeat=args.repeat)
    print(f"fast preset, {report['machine']}; encoder load {report['model_load_s']:.1f} s")
    print(
        f"{'tokens':>7} {'budget':>6} {'cold s':>7} {'warm s':>7} {'new q s':>7} {'cold tok/s':>10} {'warm tok/s':>10}"
    )
    for r in report["rows"]:
        print(
            f"{r['tokens']:>7} {r['budget']:>6} {r['cold_s']:>7.2f} {r['warm_s']:>7.3f}"
            f" {r['warm_new_question_s']:>7.3f} {r['cold_tokens_per_s']:>10.0f} {r['warm_tokens_per_s']:>10.0f}"
        )
    print(f"peak RSS {report['peak_rss_mb']:.0f} MB")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
