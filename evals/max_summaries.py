"""Does ``max`` earn its time? ``balanced`` and ``max`` with its summaries on (``summaries=True``: ``balanced`` +
fidelity-checked SmolLM2 summaries; off by default since this check) on the same query-aware items at the same
budgets: answer retention, seconds per item, and what became of the summaries (generated, rejected by reason,
chosen by the knapsack).

Run: ``python -P -m promptzip.evals.max_summaries --suite gsm8k-qa --n 16``. Writes
``evals/results/max_summaries.{md,json}``. The items are the suite's slow subset (one question per article), so
``max`` summarizes each article's chunks once per question, as it would in use.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from promptzip._tokenizers import get_tokenizer
from promptzip.evals.methods import TOKENIZER, create_method
from promptzip.evals.metrics import answer_retained
from promptzip.evals.suites import build_suite, slow_subset

__all__ = ["main", "run_max_check"]

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("promptzip-balanced", "promptzip-max-summaries")


def _abstractive(method: Any) -> Any:
    from promptzip.compressors.abstractive import AbstractiveCompressor

    method.prepare()
    node = method.zipper.compressor
    while node is not None and not isinstance(node, AbstractiveCompressor):
        node = getattr(node, "inner", None)
    return node


def _count_summaries(method: Any, tally: collections.Counter[str]) -> None:
    """Count what the abstractive stage does, on this instance only: summaries generated, rejected by reason."""
    stage = _abstractive(method)
    if stage is None:
        return
    summaries, report = stage._summaries, stage._report

    def counted_summaries(*args: Any, **kwargs: Any) -> Any:
        found = summaries(*args, **kwargs)
        tally["generated"] += len(found)
        return found

    def counted_report(reason: str, message: str, detail: str) -> None:
        if reason.startswith("rejected:"):
            tally[reason] += 1
        report(reason, message, detail)

    stage._summaries, stage._report = counted_summaries, counted_report


def _remember_results(method: Any, results: list[Any]) -> None:
    """Keep each Result the method's Zipper returns (the harness's Output has only the text)."""
    method.prepare()
    compress = method.zipper.compress

    def remembered(*args: Any, **kwargs: Any) -> Any:
        result = compress(*args, **kwargs)
        results.append(result)
        return result

    method.zipper.compress = remembered


def run_max_check(suite_name: str, n: int, *, seed: int = 0) -> dict[str, Any]:
    suite = build_suite(suite_name, max(n * 8, 200), seed=seed)
    items = slow_subset(suite.items, n)
    tok = get_tokenizer(TOKENIZER).count
    load_before = os.getloadavg()
    rows: dict[str, Any] = {}
    for name in METHODS:
        method = create_method(name)
        tally: collections.Counter[str] = collections.Counter()
        _count_summaries(method, tally)
        results: list[Any] = []
        _remember_results(method, results)
        kept = dict.fromkeys(suite.ratios, 0)
        chosen = 0
        seconds: list[float] = []
        for item in items:
            started = time.perf_counter()
            for ratio in suite.ratios:
                budget = max(1, int(tok(item.context) // ratio))
                del results[:]
                out = method.compress(item, budget)
                kept[ratio] += any(answer_retained(out.text, t.answers) for t in item.targets)
                if results:  # the last call is the one whose output counts (a join-merge retry comes after)
                    chosen += sum(c.kind.startswith("summary@") for c in results[-1].chunks)
            seconds.append(time.perf_counter() - started)
        rows[name] = {
            "retention": {f"{r:g}x": kept[r] / len(items) for r in suite.ratios},
            "seconds_per_item": sum(seconds) / len(seconds),
            "summaries": dict(tally),
            "summaries_chosen": chosen,
        }
        method.close()
    return {
        "suite": suite_name,
        "items": len(items),
        "ratios": [f"{r:g}x" for r in suite.ratios],
        "methods": rows,
        "meta": {
            "command": f"python -P -m promptzip.evals.max_summaries --suite {suite_name} --n {n}",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, Python {platform.python_version()}",
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()],
        },
    }


def markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    lines = [
        "# Does `max` earn its time?",
        "",
        f"Command: `{meta['command']}` · {meta['date']} · {meta['machine']} · load average "
        f"{', '.join(map(str, meta['load_before']))} before, {', '.join(map(str, meta['load_after']))} after · "
        "one torch thread.",
        "",
        f"{report['items']} items of `{report['suite']}` (one question per article), budgets "
        "`floor(o200k tokens of the context / ratio)`, the same items and budgets for both presets. Retention: a "
        "gold answer string survives. Summaries: generated by SmolLM2-135M for the most relevant chunks (25% and "
        "50% of a chunk), checked for fidelity, and offered to the knapsack beside the extractive variants.",
        "",
        "| method | " + " | ".join(report["ratios"]) + " | seconds per item (3 budgets) | summaries generated | "
        "rejected (reason: n) | chosen |",
        "|---|" + "---:|" * len(report["ratios"]) + "---:|---:|---|---:|",
    ]
    for name, row in report["methods"].items():
        s = dict(row["summaries"])
        generated = s.pop("generated", 0)
        rejected = ", ".join(f"{k.removeprefix('rejected:')}: {v}" for k, v in sorted(s.items())) or "none"
        cells = " | ".join(f"{100 * row['retention'][r]:.1f}" for r in report["ratios"])
        lines.append(
            f"| {name} | {cells} | {row['seconds_per_item']:.1f} | {generated} | {rejected} | "
            f"{row['summaries_chosen']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--suite", default="gsm8k-qa")
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - the models extra brings torch
        pass
    report = run_max_check(args.suite, args.n)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "max_summaries.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "max_summaries.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
