"""Reports: ``results.json`` (aggregates), ``results.md`` (tables) and plots, all rebuilt from the record files.

A rebuild merges per suite: ``results.json`` keeps, under ``runs``, each suite's provenance (when, by which
command, on which machine, with which notes), and a suite whose figures did not change keeps the provenance it had,
so a run of one suite stamps only that suite. A suite that has lost its record files keeps its last entry.

``retention.png``: retention (or reference-summary recall) vs compression ratio, one panel per suite, one line per
method with 95% intervals. ``latency.png``: compressor seconds per item vs input length, from the same records.
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from promptzip.evals.metrics import RETENTION_METRIC, scored_with_current_metric
from promptzip.evals.suites import SUITES

__all__ = ["NOTES", "build_report", "markdown", "merge_suites", "plot_latency", "plot_retention"]

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


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_retention(results: Mapping[str, Any], path: Path) -> None:
    """Retention (or summary recall) vs ratio, one panel per suite, 95% intervals as error bars."""
    plt = _plt()
    suites = [s for s in SUITES if s in results["suites"]]
    cols = min(3, len(suites)) or 1
    rows = math.ceil(len(suites) / cols) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.0 * rows), squeeze=False)
    for ax in axes.flat[len(suites) :]:
        ax.axis("off")
    every = sorted({m for name in suites for m in results["suites"][name]["methods"]})
    palette = plt.get_cmap("tab20" if len(every) > 10 else "tab10")
    colour = {m: palette(i % palette.N) for i, m in enumerate(every)}  # one colour per method in every panel
    for ax, name in zip(axes.flat, suites, strict=False):
        entry = results["suites"][name]
        ratios = [float(r) for r in entry["ratios"]]
        for method, v in entry["methods"].items():
            xs, ys, lo, hi = [], [], [], []
            for r in ratios:
                s = v["by_ratio"].get(str(r), {})
                if entry["kind"] == "qa":
                    value, ci = s.get("retention"), s.get("retention_ci")
                else:
                    c = s.get("summary", {}).get("content", {})
                    value, ci = c.get("mean"), c.get("ci")
                if value is None or ci is None or (isinstance(value, float) and math.isnan(value)):
                    continue
                xs.append(r)
                ys.append(100 * value)
                lo.append(max(0.0, 100 * (value - ci[0])))
                hi.append(max(0.0, 100 * (ci[1] - value)))
            if not xs:
                continue
            key = "targets" if entry["kind"] == "qa" else "items"  # questions for QA, documents for summaries
            n = max(s.get(key, 0) or 0 for s in v["by_ratio"].values())
            style = "--" if v["slow"] else "-"
            ax.errorbar(
                xs,
                ys,
                yerr=[lo, hi],
                fmt="o" + style,
                capsize=3,
                markersize=4,
                color=colour[method],
                label=f"{method} (n={n})",
            )
        ax.set_xscale("log")
        ax.set_xticks(ratios)
        ax.set_xticklabels([f"{r:g}x" for r in ratios])
        ax.minorticks_off()
        ax.set_title(f"{name} ({entry['regime']})", fontsize=10)
        ax.set_xlabel("compression ratio (o200k tokens in / budget)")
        ax.set_ylabel("answer retention, %" if entry["kind"] == "qa" else "summary content recall, %")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_latency(records: list[Any], path: Path) -> None:
    """Seconds per item vs input tokens for every method (records with their own timing only)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    by_method: dict[str, tuple[list[int], list[float]]] = {}
    for r in records:
        if r.error is None and not r.timing_excluded and r.seconds > 0:
            xs, ys = by_method.setdefault(r.method, ([], []))
            xs.append(r.tokens_in)
            ys.append(r.seconds)
    for method, (xs, ys) in sorted(by_method.items()):
        ax.scatter(xs, ys, s=6, alpha=0.45, label=method)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("input length, o200k tokens")
    ax.set_ylabel("compressor seconds per item")
    ax.set_title("latency vs input length (eval items; promptzip with its warm per-article cache)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
