"""The ``agent-trace`` report: per-trace ratios to ``none``, pooled totals, the issue's goals marked met or not, and
the Markdown and JSON files (:mod:`promptzip.evals.agent_trace` runs the suite)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from promptzip._pricing import CachePricing
from promptzip.evals._traces import KINDS

__all__ = [
    "GOALS",
    "MIN_TOKENS",
    "TOOL_HEAVY",
    "goals",
    "markdown",
    "pooled",
    "pricing_row",
    "run_label",
    "totals",
    "with_ratios",
    "write_report",
]

TOOL_HEAVY = ("tool-json", "tool-log", "code")
MIN_TOKENS = 1024  # the proxy's default min_tokens: a smaller chat is passed through, not compressed

GOALS = (
    ("cost", "effective cost below `none` on every trace"),
    ("tool_cost", "effective cost at least 40% below `none` on the tool-heavy traces (" + ", ".join(TOOL_HEAVY) + ")"),
    ("cache", "cache-hit fraction within 5 points of `none` on every trace"),
    ("retention", "answer retention within 2 points of `reselect` (pooled over all traces' turns)"),
)


def pricing_row(p: CachePricing) -> dict[str, Any]:
    return {"input": p.input, "cached": p.cached, "write": p.write, "min_prefix": p.min_prefix, "step": p.step}


def run_label(run: Mapping[str, Any]) -> str:
    return run["method"] if run["budget"] is None else f"{run['method']} {run['budget']}"


def with_ratios(runs: list[dict[str, Any]], providers: Sequence[str]) -> list[dict[str, Any]]:
    base = next((r for r in runs if r["method"] == "none"), None)
    for run in runs:
        for p, t in run["totals"].items():
            none = base["totals"][p]["cost"] if base else None
            t["cost_ratio"] = t["cost"] / none if none else None
            t["cache_hit_none_pct"] = base["totals"][p]["cache_hit_pct"] if base else None
    return runs


def pooled(traces: Sequence[Mapping[str, Any]], providers: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per provider and method label: every trace's rows together."""
    pooled: dict[str, dict[str, Any]] = {}
    for p in providers:
        rows: dict[str, list[Mapping[str, Any]]] = {}
        for trace in traces:
            for run in trace["runs"]:
                if p in run["totals"]:
                    rows.setdefault(run_label(run), []).extend(run["rows"])
        pooled[p] = {label: totals(r, p) for label, r in rows.items()}
        none = pooled[p].get("none")
        for t in pooled[p].values():
            t["cost_ratio"] = t["cost"] / none["cost"] if none and none["cost"] else None
    return pooled


def goals(report: Mapping[str, Any], providers: Sequence[str]) -> list[dict[str, Any]]:
    """Each goal of :data:`GOALS` for each compressing method, budget and provider: met (None: not applicable)."""
    out: list[dict[str, Any]] = []
    for p in providers:
        pooled = report["pooled"][p]
        for label in (k for k in pooled if k != "none"):
            method, _, budget = label.partition(" ")
            cells = [
                (t, r["totals"][p])
                for t in report["traces"]
                for r in t["runs"]
                if run_label(r) == label and p in r["totals"]
            ]
            checks = _tracegoals(cells) if "none" in pooled else dict.fromkeys(("cost", "tool_cost", "cache"))
            base = pooled.get(f"reselect {budget}")
            if method != "reselect" and base and base["retention_pct"] is not None:
                gap = pooled[label]["retention_pct"] - base["retention_pct"]
                detail = f"{pooled[label]['retention_pct']:.1f}% vs {base['retention_pct']:.1f}% ({gap:+.1f} points)"
                checks["retention"] = (gap >= -2, detail)
            else:
                checks["retention"] = (None, "the reference" if method == "reselect" else "no reselect run")
            for goal, check in checks.items():
                met, detail = check or (None, "no `none` run")
                out.append({"provider": p, "method": label, "goal": goal, "met": met, "detail": detail})
    return out


def _tracegoals(cells: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]) -> dict[str, Any]:
    """The per-trace goals (cost, tool_cost, cache) on (trace, totals) pairs: met, and the traces that miss."""

    def misses(rule: Callable[[Mapping[str, Any]], bool], kinds: Sequence[str] = KINDS) -> list[str]:
        return [f"{t['id']} {_describe(x)}" for t, x in cells if t["kind"] in kinds and not rule(x)]

    found = {
        "cost": misses(lambda x: x["cost_ratio"] < 1),
        "tool_cost": misses(lambda x: x["cost_ratio"] <= 0.6, TOOL_HEAVY),
        "cache": misses(lambda x: x["cache_hit_pct"] >= x["cache_hit_none_pct"] - 5),
    }
    return {goal: (not miss, "; ".join(miss) or "every trace") for goal, miss in found.items()}


def _describe(x: Mapping[str, Any]) -> str:
    kept = x.get("prefix_kept_pct")
    why = "" if kept is None else f"; prefix kept {kept:.1f}%, {x.get('after_small', 0)} after a small request"
    return (
        f"(cost/none {x['cost_ratio']:.2f}, cache hit {x['cache_hit_pct']:.1f}% vs {x['cache_hit_none_pct']:.1f}%{why})"
    )


# --------------------------------------------------------------------------------------------------- report

_MET = {True: "met", False: "**not met**", None: "n/a"}


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def markdown(report: Mapping[str, Any]) -> str:
    """The report as a Markdown page: the goals, then per provider the pooled and per-trace tables."""
    meta = report["meta"]
    before = ", ".join(f"{x:.2f}" for x in meta["loadavg_before"])
    after = ", ".join(f"{x:.2f}" for x in meta["loadavg"])
    lines = [
        "# agent-trace: multi-turn chats and agent loops under the providers' prompt cache",
        "",
        f"Command: `{meta['command']}` · corpus {meta['corpus_description']} · preset `{meta['preset']}`, target "
        f"`{meta['target']}` · promptzip {meta['promptzip']}, httpx {meta['httpx']} · {meta['date']} · "
        f"{meta['seconds']} s · load average {before} before, {after} after, {meta['cpus']} CPUs · Python "
        f"{meta['python']}.",
        "",
        "Methods: "
        + "; ".join(f"`{k}`: {v}" for k, v in meta["methods"].items())
        + ". Budgets: "
        + ", ".join(f"`{b}`" for b in meta["budgets"])
        + " (the whole request, gpt-4o tokens).",
        "",
        "Each request of a trace (one per model call) is serialized to gpt-4o tokens (role, name, text, tool calls "
        "as JSON, tool-call id of each message) and billed: OpenAI caches the longest common prefix with any "
        "earlier request (from 1024 tokens, in steps of 128); Anthropic, with a cache breakpoint at the end of every "
        "request, reads the longest earlier request that is a whole prefix (from 1024 tokens) and writes the rest "
        "at 1.25x. Retention: a gold answer (SQuAD-normalized) in the messages the turn added, as sent. A request "
        f"of fewer than {MIN_TOKENS} tokens (OpenAI chat convention) is passed through by the compressing methods, "
        "as the proxy's default `min_tokens` does; one a method cannot compress (a budget below what it keeps "
        "verbatim) goes out uncompressed (fail-open). History evidence: at each measured request, the earlier "
        "turns whose gold answer is still in the history as sent, outside the assistant's replies (what a "
        "follow-up about an earlier turn would need; not a goal). Cache hit: cached over sent tokens, all "
        "requests. Prefix kept: the tokens each request sends again byte for byte from the start of the request "
        "before it, over the tokens of those requests (what a prefix cache could serve at most; `none`: 100%). "
        "After a small "
        f"request: requests that follow one of fewer than {MIN_TOKENS} tokens, which neither provider here "
        "caches. Goals: cost and cache hit per trace; retention pooled over every measured turn.",
        "",
        "Prices per million input tokens: "
        + "; ".join(
            f"{p} `{v['target']}` input ${v['input']}, cached ${v['cached']}"
            + (f", cache write ${v['write']}" if v["write"] is not None else "")
            for p, v in meta["providers"].items()
        )
        + ".",
        "",
    ]
    lines += [f"Note: {n}" for n in meta["notes"]] + ([""] if meta["notes"] else [])
    lines += [
        "## Goals (issue 21)",
        "",
        "| provider | method | goal | result | detail |",
        "| --- | --- | --- | --- | --- |",
    ]
    text = dict(GOALS)
    for g in report["goals"]:
        lines.append(f"| {g['provider']} | `{g['method']}` | {text[g['goal']]} | {_MET[g['met']]} | {g['detail']} |")
    header = "| {} | method | retention | history evidence | cache hit | prefix kept | after a small request | "
    header += "effective cost $ | cost / none | tokens sent | seconds | passed through (small) | fail-open |"
    rule = "| --- " * 13 + "|"
    for p in report["pooled"]:
        lines += ["", f"## {p} ({meta['providers'][p]['target']} prices)", "", "All traces pooled:", ""]
        lines += [header.format("traces"), rule]
        for label, t in report["pooled"][p].items():
            lines.append(_row("all", label, t))
        lines += ["", header.format("trace"), rule]
        for trace in report["traces"]:
            for run in trace["runs"]:
                if p in run["totals"]:
                    lines.append(_row(f"{trace['id']} ({trace['kind']})", run_label(run), run["totals"][p]))
    lines += ["", "Traces:", ""] + [f"- `{t['id']}`: {t['description']}" for t in report["traces"]]
    return "\n".join(lines) + "\n"


def _row(first: str, label: str, t: Mapping[str, Any]) -> str:
    retention = f"{_fmt(t['retention_pct'], '.1f', '%')} ({t['retained']}/{t['turns']})"
    cells = [
        first,
        f"`{label}`",
        retention,
        _fmt(t.get("history_pct"), ".1f", "%"),
        _fmt(t["cache_hit_pct"], ".1f", "%"),
        _fmt(t.get("prefix_kept_pct"), ".1f", "%"),
        str(t.get("after_small", "n/a")),
        f"{t['cost']:.4f}",
        _fmt(t["cost_ratio"], ".2f"),
        f"{t['tokens_sent']:,}",
        f"{t['seconds']:.1f}",
        str(t["passthrough"]),
        str(t["fail_open"]) + (f" ({t['bugs']} bugs)" if t["bugs"] else ""),
    ]
    return "| " + " | ".join(cells) + " |"


def write_report(report: Mapping[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "agent_trace.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    (out / "agent_trace.md").write_text(markdown(report), encoding="utf-8")


def totals(rows: Sequence[Mapping[str, Any]], provider: str) -> dict[str, Any]:
    """One run's totals for ``provider``: retention over its measured turns, tokens, cache hits, cost, seconds."""
    measured = [r for r in rows if r["measured"]]
    prompt = sum(r["tokens_sent"] for r in rows)
    cached = sum(r["billed"][provider]["cached"] for r in rows)
    return {
        "turns": len(measured),
        "retained": sum(bool(r["retained"]) for r in measured),
        "retention_pct": 100 * sum(bool(r["retained"]) for r in measured) / len(measured) if measured else None,
        "requests": len(rows),
        "tokens_original": sum(r["tokens_original"] for r in rows),
        "tokens_sent": prompt,
        "cached_tokens": cached,
        "cache_hit_pct": 100 * cached / prompt if prompt else 0.0,
        "prefix_kept_pct": _prefix_kept(rows),
        "history_pct": _history_kept(measured),
        "after_small": sum(0 < r.get("previous_sent", 0) < MIN_TOKENS for r in rows),
        "cost": sum(r["billed"][provider]["cost"] for r in rows),
        "seconds": round(sum(r["seconds"] for r in rows), 3),
        "fail_open": sum(r["error"] is not None for r in rows),
        "passthrough": sum(bool(r["passthrough"]) for r in rows),
        "bugs": sum(bool(r["error"] and r["error"].startswith("BUG")) for r in rows),
    }


def _prefix_kept(rows: Sequence[Mapping[str, Any]]) -> float | None:
    """The share of each request's predecessor that it sent again byte for byte (its leading tokens), over a run:
    what a provider's prefix cache could serve at most. ``None`` for rows without it (an older report)."""
    earlier = sum(r.get("previous_sent", 0) for r in rows)
    return 100 * sum(r.get("resent", 0) for r in rows) / earlier if earlier else None


def _history_kept(rows: Sequence[Mapping[str, Any]]) -> float | None:
    """Over a run's measured requests: the share of (request, earlier turn) pairs whose earlier gold answer is still
    in the history as sent, outside the assistant's replies. ``None`` for rows without it (an older report)."""
    pairs = [r["history"] for r in rows if r.get("history")]
    total = sum(p[1] for p in pairs)
    return 100 * sum(p[0] for p in pairs) / total if total else None
