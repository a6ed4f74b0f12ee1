"""Reports: ``results.json`` (aggregates), ``results.md`` (tables) and plots, all rebuilt from the record files.

A rebuild merges per suite: ``results.json`` keeps, under ``runs``, each suite's provenance (when, by which
command, on which machine, with which notes), and a suite whose figures did not change keeps the provenance it had,
so a run of one suite stamps only that suite. A suite that has lost its record files keeps its last entry.

The tables are drawn in :mod:`promptzip.evals._report_markdown` and the plots (``retention.png``, ``latency.png``) in
:mod:`promptzip.evals._report_plots`; both are re-exported here.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from promptzip.evals._report_markdown import markdown, readme_table
from promptzip.evals._report_plots import plot_latency, plot_retention

__all__ = ["NOTES", "build_report", "markdown", "merge_suites", "plot_latency", "plot_retention", "readme_table"]

NOTES = (
    "promptzip counts the question in its budget (the whole prompt must fit), so the harness gives it the context "
    "budget plus the question's cost and measures the context alone; if a token merge across the join leaves the "
    "context a token over, it asks again with that much less (counted in its settings below).",
    "LangChain EmbeddingsFilter has no token budget: k is chosen per item as the largest top-k that fits, and when "
    "even the top document is over the budget it alone is trimmed to the budget (counted below).",
    "llmlingua gets target_token = budget (it counts in its own cl100k tokenizer) and is not trimmed: its overshoot "
    "is reported under 'over budget'; the 'trimmed to budget' column shows what retention would be if the output "
    "were cut to the budget. Selective Context has no token target: its masking percentile is bisected to fit.",
    "Slow baselines run in their own environment (transformers 4.46.3, llmlingua 0.2.2, selective-context 0.1.3) "
    "on the converted SmolLM2-135M-Instruct; llmlingua's coarse ranking is memoized across the three ratios of an "
    "item (identical output), and latency is reported only for calls that computed it.",
    "promptzip (its in-memory cache) and the LangChain filter (an embeddings cache in the wrapper) keep sentence "
    "or document embeddings across the questions of one article, as a deployment would: their eval latency is "
    "mostly warm (the first question on an article pays the encoding); `promptzip bench` separates cold and warm.",
    "Latencies were measured on a 2-core machine shared with other jobs, one torch thread per process: absolute "
    "times are pessimistic, comparisons between rows of one run are fair; each suite's run line says when it ran "
    "and under what load.",
)


def build_report(
    out: Path, *, command: str = "promptzip eval", notes: list[str] | None = None, readme: Path | None = None
) -> dict[str, Any]:
    """Aggregate every record file under ``out`` and write ``results.json``, ``results.md``, the plots and, with
    ``readme``, the README's Results table (:func:`update_readme`)."""
    from promptzip.evals.runner import aggregate, load_records

    metas, records = load_records(out)
    stamp = {
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "machine": _machine(),
        "notes": list(notes or []),
    }
    previous_path = out / "results.json"
    previous = json.loads(previous_path.read_text(encoding="utf-8")) if previous_path.is_file() else {}
    suites, runs = merge_suites(previous, aggregate(metas, records), stamp)
    results: dict[str, Any] = {
        "meta": {**{k: v for k, v in stamp.items() if k != "notes"}, "notes": list(NOTES)},
        "suites": suites,
        "runs": runs,
    }
    downstream = out / "downstream.json"
    if downstream.is_file():
        results["downstream"] = json.loads(downstream.read_text(encoding="utf-8"))
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    (out / "results.md").write_text(markdown(results), encoding="utf-8")
    if results["suites"]:
        plot_retention(results, out / "retention.png")
        plot_latency(records, out / "latency.png")
    if readme is not None:
        update_readme(readme, results)
    return results


def merge_suites(
    previous: Mapping[str, Any], suites: Mapping[str, Any], stamp: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(suites, runs)``: the freshly aggregated ``suites`` plus every suite of the ``previous`` results that has no
    records any more (kept verbatim), and each suite's provenance: ``stamp`` where its entry is new or changed, else
    the one it had (for results written before provenance was kept per suite: their meta, with the notes that
    were not the standing :data:`NOTES`)."""
    old_suites: Mapping[str, Any] = previous.get("suites", {})
    old_runs: Mapping[str, Any] = previous.get("runs", {})
    meta = previous.get("meta", {})
    legacy = {
        "generated": meta.get("generated", "unknown"),
        "command": meta.get("command", "unknown"),
        "machine": meta.get("machine", "unknown"),
        "notes": [n for n in meta.get("notes", []) if n not in NOTES],
    }
    merged: dict[str, Any] = {}
    runs: dict[str, Any] = {}
    for name, entry in suites.items():
        plain = json.loads(json.dumps(entry))  # as it reads back from results.json (tuples as lists)
        merged[name] = plain
        unchanged = name in old_suites and old_suites[name] == plain
        runs[name] = dict(old_runs.get(name, legacy)) if unchanged else dict(stamp)
    for name, entry in old_suites.items():
        if name not in merged:
            merged[name] = entry
            runs[name] = dict(old_runs.get(name, legacy))
    return merged, runs


README_START = "<!-- results:squad-qa:start (written by promptzip eval) -->"
README_END = "<!-- results:squad-qa:end -->"


def update_readme(readme: Path, results: Mapping[str, Any]) -> bool:
    """Replace the block between the README's results markers with :func:`readme_table`; ``False`` when the README
    or its markers are missing (an installed package has no README to update)."""
    if not readme.is_file():
        return False
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(README_START), text.find(README_END)
    table = readme_table(results)
    if start < 0 or end < start or not table:
        return False
    updated = text[: start + len(README_START)] + "\n" + table + "\n" + text[end:]
    if updated != text:
        readme.write_text(updated, encoding="utf-8")
    return True


def _machine() -> str:
    import os

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{platform.machine()} CPU, {cpus} cores, Python {platform.python_version()}"
