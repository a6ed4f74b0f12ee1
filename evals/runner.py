"""Run methods over suites, measure every output the same way, and aggregate.

Each (suite, method) writes its own record file ``records/<suite>/<method>.jsonl.gz`` under the results folder:
a first line with the method's settings, then one line per (item, ratio). Separate processes can therefore run
different methods at the same time (the fast ones and the slow baselines), and :func:`aggregate` reads every
record file there is. A failure is a record with ``error`` set: counted and reported per method, never skipped.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from promptzip._tokenizers import get_tokenizer
from promptzip.evals.methods import TOKENIZER, Method, trim_to_budget
from promptzip.evals.metrics import (
    RETENTION_METRIC,
    answer_retained,
    mean_interval,
    scored_with_current_metric,
    spans_overlap,
    summary_recall,
    wilson_interval,
)
from promptzip.evals.suites import Item, Suite, slow_subset

__all__ = ["Record", "aggregate", "budget_for", "load_records", "run_method"]


@dataclass(frozen=True, slots=True)
class Record:
    """One method's output for one item at one ratio, measured."""

    suite: str
    method: str
    ratio: float
    item: str
    group: str
    tokens_in: int
    budget: int
    tokens_out: int = 0
    seconds: float = 0.0
    targets: int = 0
    retained: int = 0
    retained_trimmed: int = 0
    gold_hits: int | None = None
    summary: dict[str, float] | None = None
    summary_trimmed: dict[str, float] | None = None
    timing_excluded: bool = False
    error: str | None = None


def budget_for(tokens_in: int, ratio: float) -> int:
    """The context budget for a target ratio: ``floor(tokens_in / ratio)``, at least one token."""
    return max(1, math.floor(tokens_in / ratio))


def _measure(suite: Suite, method: Method, item: Item, ratio: float, tokens_in: int) -> Record:
    tok = get_tokenizer(TOKENIZER)
    budget = budget_for(tokens_in, ratio)
    base: dict[str, Any] = {
        "suite": suite.name,
        "method": method.name,
        "ratio": ratio,
        "item": item.id,
        "group": item.group,
    }
    try:
        out = method.compress(item, budget)
    except Exception as exc:  # counted and reported per method; the run goes on
        error = f"{type(exc).__name__}: {exc}"[:500]
        targets = len(item.targets) if suite.kind == "qa" else 0  # a failure loses every target of the item
        return Record(**base, tokens_in=tokens_in, budget=budget, targets=targets, error=error)
    tokens_out = tok.count(out.text)
    trimmed = out.text if tokens_out <= budget else trim_to_budget(out.text, budget, tok)
    fields: dict[str, Any] = {
        "tokens_out": tokens_out,
        "seconds": float(out.seconds or 0.0),
        # a call that reused a per-item memo (the baselines' coarse ranking / self-information) is not timed
        "timing_excluded": bool(out.info.get("rank_cached") or out.info.get("memo_hit")),
    }
    if suite.kind == "qa":
        fields["targets"] = len(item.targets)
        fields["retained"] = sum(answer_retained(out.text, t.answers) for t in item.targets)
        fields["retained_trimmed"] = sum(answer_retained(trimmed, t.answers) for t in item.targets)
        if out.kept is not None:
            fields["gold_hits"] = sum(t.gold is not None and spans_overlap(out.kept, t.gold) for t in item.targets)
    else:
        fields["summary"] = summary_recall(out.text, item.reference or "")
        fields["summary_trimmed"] = summary_recall(trimmed, item.reference or "")
    return Record(**base, tokens_in=tokens_in, budget=budget, **fields)


def _record_path(out: Path, suite: str, method: str) -> Path:
    return out / "records" / suite / f"{method}.jsonl.gz"


def run_method(
    suite: Suite,
    method: Method,
    out: Path,
    *,
    n_slow: int,
    progress: bool = True,
    meta: dict[str, Any] | None = None,
    resume: bool = False,
) -> list[Record]:
    """Run ``method`` on ``suite`` (items outer, ratios inner, so per-item caches serve all ratios) and write its
    record file atomically. Slow methods run on :func:`slow_subset` (``n_slow`` distinct groups). ``resume``: keep
    the items that already have successful records and run only the rest."""
    from tqdm import tqdm

    items: Sequence[Item] = slow_subset(suite.items, n_slow) if method.slow else suite.items
    tok = get_tokenizer(TOKENIZER)
    path = _record_path(out, suite.name, method.name)
    kept: list[Record] = []
    if resume and path.is_file():
        # Keep every item whose records all succeeded; run the others (failed after a fix, or new when n grew).
        previous_meta, previous = _read_record_file(path)
        if suite.kind == "qa" and not scored_with_current_metric(previous_meta):
            previous = []  # scored with another retention metric: run every item again
        wanted = {i.id for i in items}
        broken = {r.item for r in previous if r.error is not None}
        kept = [r for r in previous if r.item in wanted and r.item not in broken]
        done = {r.item for r in kept}
        items = [i for i in items if i.id not in done]
    method.prepare()
    records: list[Record] = []
    total = len(items) * len(suite.ratios)
    started = time.perf_counter()
    with tqdm(total=total, desc=f"{suite.name} · {method.name}", disable=not progress, file=sys.stderr) as bar:
        for item in items:
            tokens_in = tok.count(item.context)
            for ratio in suite.ratios:
                records.append(_measure(suite, method, item, ratio, tokens_in))
                bar.update(1)
                failed = sum(r.error is not None for r in records)
                if failed:
                    bar.set_postfix(failed=failed)
    header = {
        "meta": {
            "suite": suite.name,
            "regime": suite.regime,
            "kind": suite.kind,
            "suite_description": suite.description,
            "suite_notes": list(suite.notes),
            "suite_items": len(suite.items),
            "method": method.name,
            "slow": method.slow,
            "items": len(items),
            "ratios": list(suite.ratios),
            "settings": method.settings(),
            "wall_s": time.perf_counter() - started,
            **({"retention_metric": RETENTION_METRIC} if suite.kind == "qa" else {}),
            **(meta or {}),
        }
    }
    if resume:
        header["meta"]["resumed_items"] = len(items)
        header["meta"]["items"] = len({r.item for r in kept} | {i.id for i in items})
        records = kept + records
    _write_records(path, header, records)
    return records


def _write_records(path: Path, header: dict[str, Any], records: Iterable[Record]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    os.close(fd)
    try:
        with gzip.open(tmp, "wt", encoding="utf-8") as fh:
            fh.write(json.dumps(header) + "\n")
            for r in records:
                fh.write(json.dumps(asdict(r)) + "\n")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; results are for everyone
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_records(out: Path) -> tuple[dict[tuple[str, str], dict[str, Any]], list[Record]]:
    """Every record file under ``out/records``: ``({(suite, method): meta}, records)``."""
    metas: dict[tuple[str, str], dict[str, Any]] = {}
    records: list[Record] = []
    for path in sorted((out / "records").glob("*/*.jsonl.gz")):
        header, found = _read_record_file(path)
        metas[(header["suite"], header["method"])] = header
        records.extend(found)
    return metas, records


def _read_record_file(path: Path) -> tuple[dict[str, Any], list[Record]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        header: dict[str, Any] = json.loads(fh.readline())["meta"]
        return header, [Record(**json.loads(line)) for line in fh if line.strip()]


def _summary_stats(rows: list[Record], key: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for metric in ("content", "rouge1", "rougeL"):
        values = [getattr(r, key)[metric] for r in rows if getattr(r, key) is not None]
        mean, lo, hi = mean_interval(values)
        out[metric] = {"mean": mean, "ci": [lo, hi]}
    return out


def _stats(rows: list[Record], kind: str) -> dict[str, Any]:
    ok = [r for r in rows if r.error is None]
    errors = [r.error for r in rows if r.error is not None]
    stats: dict[str, Any] = {
        "items": len(rows),
        "failures": len(errors),
        "failure_examples": sorted(set(errors))[:3],
    }
    if not ok:
        return stats
    nonempty = [r for r in ok if r.tokens_out > 0]
    over = [r for r in ok if r.tokens_out > r.budget]
    timed = [r for r in ok if not r.timing_excluded]
    seconds = [r.seconds for r in timed]
    stats.update(
        {
            "empty_outputs": len(ok) - len(nonempty),
            "achieved_ratio_median": statistics.median(r.tokens_in / r.tokens_out for r in nonempty)
            if nonempty
            else None,
            "budget_use_mean": statistics.fmean(r.tokens_out / r.budget for r in ok),
            "over_budget": len(over),
            "over_budget_max_pct": max((100 * (r.tokens_out / r.budget - 1) for r in over), default=0.0),
            "latency_items": len(timed),
            "latency_median_s": statistics.median(seconds) if seconds else None,
            "latency_p90_s": sorted(seconds)[int(0.9 * (len(seconds) - 1))] if seconds else None,
            "tokens_per_s": sum(r.tokens_in for r in timed) / sum(seconds) if seconds and sum(seconds) else None,
            "tokens_in_median": statistics.median(r.tokens_in for r in ok),
        }
    )
    if kind == "qa":
        targets = sum(r.targets for r in ok)
        kept = sum(r.retained for r in ok)
        kept_trimmed = sum(r.retained_trimmed for r in ok)
        # Failures count as not retained: a method that fails on an item loses it.
        targets_all = targets + sum(r.targets for r in rows if r.error is not None)
        stats.update(
            {
                "targets": targets_all,
                "retention": kept / targets_all if targets_all else None,
                "retention_ci": list(wilson_interval(kept, targets_all)),
                "retention_trimmed": kept_trimmed / targets_all if targets_all else None,
            }
        )
        if all(r.gold_hits is not None for r in ok):
            hits = sum(r.gold_hits or 0 for r in ok)
            stats["gold_hit"] = hits / targets if targets else None
            stats["gold_hit_ci"] = list(wilson_interval(hits, targets))
    else:
        stats["summary"] = _summary_stats(ok, "summary")
        stats["summary_trimmed"] = _summary_stats(ok, "summary_trimmed")
    return stats


def aggregate(metas: dict[tuple[str, str], dict[str, Any]], records: list[Record]) -> dict[str, Any]:
    """Per suite, method and ratio: on all the items the method ran, and — where a suite also has slow methods —
    on the paired subset (the items every slow method ran), so every method is compared on the same items."""
    by_key: dict[tuple[str, str, float], list[Record]] = {}
    for r in records:
        by_key.setdefault((r.suite, r.method, r.ratio), []).append(r)
    suites: dict[str, Any] = {}
    for (suite, method), meta in sorted(metas.items()):
        entry = suites.setdefault(
            suite,
            {
                "regime": meta["regime"],
                "kind": meta["kind"],
                "description": meta["suite_description"],
                "notes": meta["suite_notes"],
                "items": meta["suite_items"],
                "ratios": meta["ratios"],
                "methods": {},
                "paired": {},
            },
        )
        entry["methods"][method] = {
            "slow": meta["slow"],
            "settings": meta["settings"],
            **({"retention_metric": meta.get("retention_metric", 1)} if meta["kind"] == "qa" else {}),
            "by_ratio": {
                str(ratio): _stats(by_key.get((suite, method, ratio), []), meta["kind"]) for ratio in meta["ratios"]
            },
        }
    for suite, entry in suites.items():
        slow = [m for m, v in entry["methods"].items() if v["slow"]]
        ran = [{r.item for r in records if r.suite == suite and r.method == m} for m in slow]
        slow_items = set.intersection(*ran) if ran else set()  # the items every slow method ran
        if not slow_items:
            continue
        entry["paired_items"] = len(slow_items)
        for method in entry["methods"]:
            entry["paired"][method] = {
                str(ratio): _stats(
                    [r for r in by_key.get((suite, method, ratio), []) if r.item in slow_items], entry["kind"]
                )
                for ratio in entry["ratios"]
            }
    return suites
