"""The report's markdown: ``results.md`` (a headline and a per-ratio table per suite, the downstream answers, how
each method was run) and the README's Results table, both drawn from the aggregated results.

Numbers stay numbers in ``results.json``; they become cells here, at the edge. A row whose records were scored with
an older retention metric is marked with a dagger and a note (:func:`_stale`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from promptzip.evals.metrics import RETENTION_METRIC, scored_with_current_metric
from promptzip.evals.suites import SUITES

__all__ = ["markdown", "readme_table"]


def _pct(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _cell(stats: Mapping[str, Any], kind: str) -> str:
    if not stats or stats.get("items", 0) == 0:
        return "n/a"
    if stats.get("failures") == stats.get("items"):
        return "failed"
    if kind == "qa":
        lo, hi = stats.get("retention_ci", [None, None])
        return f"{_pct(stats.get('retention'))} [{_pct(lo)}–{_pct(hi)}]"
    content = stats.get("summary", {}).get("content", {})
    lo, hi = content.get("ci", [None, None])
    return f"{_pct(content.get('mean'))} [{_pct(lo)}–{_pct(hi)}]"


def _num(x: float | None, fmt: str = ".1f") -> str:
    return "–" if x is None else format(x, fmt)


def _latency(stats: Mapping[str, Any]) -> str:
    s = stats.get("latency_median_s")
    if s is None:
        return "–"
    return f"{1000 * s:.0f} ms" if s < 10 else f"{s:.0f} s"


def _stale(entry: Mapping[str, Any], name: str) -> bool:
    """Whether ``name``'s records in this suite were scored with an older retention metric."""
    method = entry["methods"].get(name, {})
    return entry["kind"] == "qa" and "retention_metric" in method and not scored_with_current_metric(method)


def _label(entry: Mapping[str, Any], name: str) -> str:
    return f"{name} †" if _stale(entry, name) else name


def _stale_note(entry: Mapping[str, Any]) -> str | None:
    stale = sorted(m for m in entry["methods"] if _stale(entry, m))
    if not stale:
        return None
    return (
        f"† {', '.join(stale)}: records scored with retention metric v1 (ASCII punctuation only), which counts an "
        f"answer kept between curly quotes or dashes as lost (v{RETENTION_METRIC} does not); re-run them (`--resume` "
        "re-runs every such item) to compare exactly."
    )


def _headline(entry: Mapping[str, Any], methods: Mapping[str, Any], kind: str, ratios: list[float]) -> list[str]:
    heads = [f"{r:g}x" for r in ratios]
    lines = [
        "| method | n | "
        + " | ".join(heads)
        + f" | achieved ratio | over budget | median latency at {ratios[0]:g}x | tokens/s | failures |",
        "|---|---:|" + "---:|" * len(heads) + "---:|---:|---:|---:|---:|",
    ]
    for name, by_ratio in methods.items():
        stats = [by_ratio.get(str(r), {}) for r in ratios]
        n = max((s.get("targets", s.get("items", 0)) if kind == "qa" else s.get("items", 0)) for s in stats)
        achieved = "/".join(_num(s.get("achieved_ratio_median"), ".0f") for s in stats)
        over = sum(s.get("over_budget", 0) for s in stats)
        overmax = max((s.get("over_budget_max_pct", 0.0) for s in stats), default=0.0)
        over_cell = f"{over} (max +{overmax:.0f}%)" if over else "0"
        # The first ratio's calls are the ones that pay any per-item work (encoding, a baseline's coarse ranking):
        # later ratios of the same item reuse caches, so they would flatter every method that has one.
        timed = [s for s in stats if s.get("latency_median_s") is not None]
        mid = timed[0] if timed else {}
        fails = sum(s.get("failures", 0) for s in stats)
        cells = " | ".join(_cell(s, kind) for s in stats)
        lines.append(
            f"| {_label(entry, name)} | {n} | {cells} | {achieved} | {over_cell} | {_latency(mid)} | "
            f"{_num(mid.get('tokens_per_s'), '.0f')} | {fails} |"
        )
    return lines


def _detail(methods: Mapping[str, Any], kind: str, ratios: list[float]) -> list[str]:
    if kind == "qa":
        head = "| method | ratio | items | retention [95% CI] | trimmed to budget | gold hit | achieved | budget use |"
    else:
        head = "| method | ratio | items | content recall [95% CI] | ROUGE-1 R | ROUGE-L R | achieved | budget use |"
    lines = [
        head + " over budget | empty | latency p50 / p90 | failures |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, by_ratio in methods.items():
        for r in ratios:
            s = by_ratio.get(str(r), {})
            if not s or not s.get("items"):
                continue
            if kind == "qa":
                mid = f"{_pct(s.get('retention_trimmed'))} | {_pct(s.get('gold_hit')) if 'gold_hit' in s else 'n/a'}"
            else:
                summ = s.get("summary", {})
                mid = f"{_pct(summ.get('rouge1', {}).get('mean'))} | {_pct(summ.get('rougeL', {}).get('mean'))}"
            p50, p90 = s.get("latency_median_s"), s.get("latency_p90_s")
            lat = "–" if p50 is None else f"{p50:.3f} / {p90:.3f} s"
            over = s.get("over_budget", 0)
            over_cell = f"{over} (max +{s.get('over_budget_max_pct', 0):.0f}%)" if over else "0"
            lines.append(
                f"| {name} | {r:g}x | {s['items']} | {_cell(s, kind)} | {mid} | "
                f"{_num(s.get('achieved_ratio_median'))} | {_num(s.get('budget_use_mean'), '.2f')} | {over_cell} | "
                f"{s.get('empty_outputs', 0)} | {lat} | {s.get('failures', 0)} |"
            )
    return lines


def markdown(results: Mapping[str, Any]) -> str:
    """The results as markdown tables (what the README's Results section shows)."""
    meta = results["meta"]
    out = [
        "# promptzip evaluation results",
        "",
        f"Rebuilt {meta['generated']} (last command `{meta['command']}`) on {meta['machine']}; each suite names the "
        "run that produced its figures. Budgets are per item, "
        "`floor(o200k tokens of the context / ratio)`; every output is measured in o200k tokens. Retention: a gold "
        "answer string survives (both sides lower-cased, without articles, every non-word character a space: "
        f"retention metric v{RETENTION_METRIC}), with 95% Wilson intervals; n counts questions. Failures count as "
        "not retained. Latency is the compressor's own time per item on this CPU (models loaded beforehand).",
        "",
    ]
    for note in meta.get("notes", []):
        out.append(f"- {note}")
    if meta.get("notes"):
        out.append("")
    suites = results["suites"]
    for name in [s for s in SUITES if s in suites] + [s for s in suites if s not in SUITES]:
        entry = suites[name]
        kind, ratios = entry["kind"], [float(r) for r in entry["ratios"]]
        what = "answer retention, %" if kind == "qa" else "reference-summary content-word recall, %"
        out += [f"## {name}: {entry['description']} ({entry['regime']})", ""]
        out.append(f"{entry['items']} items in the suite; cells: {what} [95% CI] at each target ratio.")
        for note in entry.get("notes", []):
            out.append(f"Note: {note}.")
        run = results.get("runs", {}).get(name)
        if run:
            out.append(f"Run: {run['generated']}, `{run['command']}`, {run['machine']}.")
            out += [f"Run note: {note.rstrip('.')}." for note in run.get("notes", [])]
        out.append("")
        methods = {m: v["by_ratio"] for m, v in entry["methods"].items()}
        out += _headline(entry, methods, kind, ratios)
        out.append("")
        note = _stale_note(entry)
        out += [note, ""] if note else []
        if entry.get("paired"):
            out += [
                f"Paired: every method on the same {entry['paired_items']} items that every slow baseline ran "
                "(one question per article):",
                "",
            ]
            out += _headline(entry, entry["paired"], kind, ratios)
            out.append("")
        out += ["<details><summary>per ratio</summary>", ""]
        out += _detail(methods, kind, ratios)
        out += ["", "</details>", ""]
    downstream = results.get("downstream")
    if downstream:
        out += _downstream(downstream)
    out += ["## How each method was run", ""]
    seen: set[str] = set()
    for entry in suites.values():
        for method, v in entry["methods"].items():
            if method in seen:
                continue
            seen.add(method)
            settings = dict(v["settings"])
            desc = settings.pop("description", "")
            extra = ", ".join(f"{k}={json.dumps(val)}" for k, val in settings.items() if val not in (None, {}, ""))
            out.append(f"- **{method}**: {desc}" + (f" ({extra})" if extra else ""))
    out.append("")
    return "\n".join(out)


def _downstream(d: Mapping[str, Any]) -> list[str]:
    lines = [
        f"## Downstream answers: {d['generator']} (small-model numbers)",
        "",
        f"{d['description']} n = {d['n']} SQuAD questions at {d['ratio']:g}x, greedy, at most {d['max_new_tokens']} "
        "new tokens. A 135M model is a weak reader that answers in sentences (EM is near zero even with the gold "
        "paragraph); 'answer contained' = a gold answer string inside the prediction. Compare rows, not levels.",
        "",
        "| context | answer contained [95% CI] | EM | F1 | answer in context | failures |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, s in d["methods"].items():
        lo, hi = s["contains_ci"]
        lines.append(
            f"| {name} | {_pct(s['contains'])} [{_pct(lo)}–{_pct(hi)}] | {_pct(s['em'])} | {_pct(s['f1'])} | "
            f"{_pct(s['retention'])} | {s['failures']} |"
        )
    if not scored_with_current_metric(d):
        lines += [
            "",
            "'Answer contained' and 'answer in context' here were scored with retention metric v1 (ASCII "
            "punctuation only; `RETENTION_METRIC` in `promptzip/evals/metrics.py`); re-run "
            "`--downstream 40 --downstream-only` to rescore.",
        ]
    lines.append("")
    return lines


def readme_table(results: Mapping[str, Any], suite: str = "squad-qa") -> str:
    """The README's Results table: every method of ``suite``, best at the middle ratio first, with n."""
    entry = results["suites"].get(suite)
    if not entry:
        return ""
    ratios = [float(r) for r in entry["ratios"]]
    rows = []
    for name, method in entry["methods"].items():
        by_ratio = method["by_ratio"]
        stats = [by_ratio.get(str(r), {}) for r in ratios]
        n = max(s.get("targets", s.get("items", 0)) for s in stats)
        middle = stats[len(stats) // 2].get("retention") or 0.0
        cells = " | ".join(_cell(s, entry["kind"]) for s in stats)
        rows.append((n, -middle, name, f"| {_label(entry, name)} | {n} | {cells} |"))
    head = "| method | n | " + " | ".join(f"{r:g}x" for r in ratios) + " |"
    rule = "|---|---:|" + "---:|" * len(ratios)
    # Rows measured on fewer questions (the slow third-party baselines) get a table of their own: side by side
    # with n=500 rows, their wide intervals read as a ranking they cannot support.
    full = max((n for n, _, _, _ in rows), default=0)
    lines = [head, rule, *(line for n, _, _, line in sorted(rows, key=lambda r: r[1:3]) if n == full)]
    few = [(n, line) for n, _, _, line in sorted(rows, key=lambda r: r[1:3]) if n < full]
    if few:
        sizes = ", ".join(str(n) for n in sorted({n for n, _ in few}))
        lines += [
            "",
            f"Slow third-party baselines, run on fewer questions (n = {sizes}): compare them on the paired table "
            "in `evals/results/results.md`, not with the rows above.",
            "",
            head,
            rule,
            *(line for _, line in few),
        ]
    note = _stale_note(entry)
    return "\n".join([*lines, "", note] if note else lines)
