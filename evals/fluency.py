"""Fluency of compressed text: its mean per-token NLL under the packaged SmolLM2-135M, relative to the original.

    python -P -m promptzip.evals.fluency                          # gsm8k-qa, and squad-qa when it is fetched
    python -P -m promptzip.evals.fluency --suites gsm8k-qa --n 40 --articles 8

What is scored: the retention run's own outputs. The suite is built with the retention run's size and seed
(:data:`promptzip.evals.run.FULL_SIZES`), the items are its first ``n`` sampled questions whose articles are among
its first ``articles`` distinct ones (:func:`promptzip.evals.run.downstream_items`: a uniform question sample within
a few articles, so few originals need scoring), and every method (:func:`promptzip.evals.methods.create_method`)
compresses each item to the budget of the retention table (:func:`promptzip.evals.runner.budget_for`). Retention
is measured on the same outputs, so each row sets fluency beside what the method kept.

How a text is scored (:class:`NLLScorer`, :mod:`promptzip.evals._fluency_nll`): SmolLM2 tokens, in consecutive
non-overlapping windows of ``window`` tokens (1024), each window opened by ``<|endoftext|>`` (the document separator
of its pre-training) so that its first token is predicted too; the per-token NLL (nats) is averaged over every token
of the text. The original (the whole article context) is scored the same way, once per article. Per item:
``NLL(output) / NLL(original)`` and ``NLL(output) - NLL(original)``; means over items with normal 95% intervals
(items of one article are not independent: the intervals are optimistic).

A 50x output is a fiftieth of the original, so its tokens see less context than the original's (up to a window),
which alone raises its NLL. The *length-matched* reference is the original's mean NLL over the tokens at window
positions below the output's length (the original with as much context as the output had). Rows of one ratio have
the same length, so the comparison the issue asks for, each method against ``random-sentences`` at the same ratio,
is paired per item: the excess of its NLL ratio over random's, and its retention gain over random's (the rows,
verdicts and tables: :mod:`promptzip.evals._fluency_verdict`).

Matmuls run in bfloat16 under CPU autocast (logits and NLL in float32); ``--float32`` turns that off.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from promptzip.evals._fluency_nll import NLLScorer, TokenNLL
from promptzip.evals._fluency_verdict import ANCHOR, MARKED, METHODS, FluencyRow, Scored, markdown, summarize
from promptzip.evals.metrics import answer_retained, mean_interval

__all__ = [
    "METHODS",
    "FluencyConfig",
    "FluencyRow",
    "NLLScorer",
    "Scored",
    "TokenNLL",
    "main",
    "markdown",
    "run_fluency",
    "summarize",
]


@dataclass(slots=True)
class FluencyConfig:
    suites: tuple[str, ...] = ("gsm8k-qa", "squad-qa")
    methods: tuple[str, ...] = METHODS
    n: int = 80
    articles: int = 10
    seed: int = 0
    window: int = 1024
    bf16: bool = True
    threads: int = 1
    out: Path = Path("evals/results")
    progress: bool = True
    command: str = "python -P -m promptzip.evals.fluency"


def _suite_outputs(suite_name: str, config: FluencyConfig, scorer: NLLScorer) -> dict[str, Any]:
    from tqdm import tqdm

    from promptzip._tokenizers import get_tokenizer
    from promptzip.evals.data import DataError
    from promptzip.evals.methods import TOKENIZER, create_method
    from promptzip.evals.run import FULL_SIZES, downstream_items
    from promptzip.evals.runner import budget_for
    from promptzip.evals.suites import build_suite

    suite = build_suite(suite_name, FULL_SIZES[suite_name], seed=config.seed)
    if suite.kind != "qa":
        raise DataError(f"{suite_name} has no answers to retain (a {suite.kind} suite)")
    items = downstream_items(suite.items, config.n, config.articles)
    tok = get_tokenizer(TOKENIZER)
    budgets = {i.id: {r: budget_for(tok.count(i.context), r) for r in suite.ratios} for i in items}
    outputs: list[tuple[str, float, Any, str]] = []
    started = time.perf_counter()
    for name in config.methods:
        method = create_method(name, seed=config.seed)
        try:
            if not method.applies_to(suite.regime, suite.kind):
                continue
            method.prepare()
            for item in tqdm(items, desc=f"{suite_name} · {name}", disable=not config.progress, file=sys.stderr):
                for ratio in suite.ratios:
                    outputs.append((name, ratio, item, method.compress(item, budgets[item.id][ratio]).text))
        finally:
            method.close()
    compress_s = time.perf_counter() - started
    started = time.perf_counter()
    scored: list[Scored] = []
    for name, ratio, item, text in tqdm(outputs, desc=f"{suite_name} · NLL", disable=not config.progress):
        original = scorer.score(item.context)
        mine = scorer.score(text)
        length = min(len(mine.nll), config.window - 1)
        retained = any(answer_retained(text, t.answers) for t in item.targets)
        scored.append(
            Scored(name, ratio, item.id, len(mine.nll), mine.mean, original.mean, original.mean_below(length), retained)
        )
    return {
        "suite": suite_name,
        "description": suite.description,
        "items": len(items),
        "articles": len({i.group for i in items}),
        "original_nll_mean": mean_interval([scorer.mean_nll(c) for c in {i.context for i in items}])[0],
        "compress_s": round(compress_s, 1),
        "score_s": round(time.perf_counter() - started, 1),
        "rows": [asdict(r) for r in summarize(scored)],
    }


def run_fluency(config: FluencyConfig) -> dict[str, Any]:
    """Score every method's outputs on every available suite; write ``fluency.json`` and ``fluency.md``."""
    import torch

    from promptzip.evals.data import DataError

    threads = torch.get_num_threads()
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    scorer = NLLScorer(window=config.window, bf16=config.bf16)
    suites: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    try:
        for name in config.suites:
            try:
                suites[name] = _suite_outputs(name, config, scorer)
            except DataError as exc:  # a withdrawn or unfetched data set: said in the results, never dropped
                skipped[name] = str(exc)
    finally:
        torch.set_num_threads(threads)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    results = {
        "meta": {
            "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": config.command,
            "machine": f"{platform.machine()} CPU, {cpus} cores, Python {platform.python_version()}",
            "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "wall_s": round(time.perf_counter() - started, 1),
            "model": scorer.model_name,
            "window": config.window,
            "dtype": "bfloat16 autocast" if config.bf16 else "float32",
            "torch_threads": config.threads,
            "n": config.n,
            "articles": config.articles,
            "seed": config.seed,
            "anchor": ANCHOR,
            "marked": MARKED,
            "skipped": skipped,
        },
        "suites": suites,
    }
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "fluency.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    (config.out / "fluency.md").write_text(markdown(results), encoding="utf-8")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -P -m promptzip.evals.fluency", description=__doc__.split("\n")[0])
    parser.add_argument("--suites", default="gsm8k-qa,squad-qa", help="comma-separated (a suite without data skips)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--n", type=int, default=80, help="items (questions) per suite")
    parser.add_argument("--articles", type=int, default=10, help="distinct articles those items come from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--window", type=int, default=1024, help="scoring window, in SmolLM2 tokens")
    parser.add_argument("--float32", action="store_true", help="no bfloat16 autocast")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=Path("evals/results"))
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    given = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    config = FluencyConfig(
        suites=tuple(s for s in args.suites.split(",") if s),
        methods=tuple(m for m in args.methods.split(",") if m),
        n=args.n,
        articles=args.articles,
        seed=args.seed,
        window=args.window,
        bf16=not args.float32,
        threads=args.threads,
        out=args.out,
        progress=not args.no_progress,
        command=" ".join(["python -P -m promptzip.evals.fluency", *given]),
    )
    results = run_fluency(config)
    sys.stderr.write(f"wrote {args.out}/fluency.json, fluency.md ({len(results['suites'])} suites)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
