"""From scored outputs to ``fluency.md``: rows per method and ratio, each with its verdict, and the tables.

A row is paired per item with :data:`ANCHOR` (``random-sentences``) at the same ratio: its NLL ratio to the original
is set against the anchor's on the same items (the excess), and its answer retention against the anchor's (the
gain); the verdict applies the issue's rule (:data:`MARKED`). The run that produces the :class:`Scored` outputs is
:func:`promptzip.evals.fluency.run_fluency`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from promptzip.evals.metrics import mean_interval

__all__ = ["ANCHOR", "MARKED", "METHODS", "FluencyRow", "Scored", "markdown", "summarize"]

METHODS = (
    "promptzip-fast",
    "promptzip-balanced",
    "bm25-sentences",
    "langchain-embeddings-filter",
    "random-sentences",
    "promptzip-token-classifier",
)
ANCHOR = "random-sentences"
MARKED = 0.05  # "markedly less fluent": NLL ratio at least this much above the anchor's, interval above zero


@dataclass(frozen=True, slots=True)
class Scored:
    """One method's output for one item at one ratio: NLLs (NaN when empty) and whether the answer survived."""

    method: str
    ratio: float
    item: str
    tokens: int
    nll: float
    original: float
    matched: float
    retained: bool


@dataclass(frozen=True, slots=True)
class FluencyRow:
    """One method at one ratio: means over items with 95% intervals ``[low, high]``."""

    method: str
    ratio: float
    items: int
    empty: int
    retention: float
    nll: float
    nll_original: float
    ratio_to_original: tuple[float, float, float]
    difference: tuple[float, float, float]
    ratio_to_matched: tuple[float, float, float]
    excess_over_anchor: tuple[float, float, float] | None = None
    retention_gain: tuple[float, float, float] | None = None
    verdict: str = ""


def _verdict(excess: tuple[float, float, float], gain: tuple[float, float, float]) -> str:
    if not excess[0] >= MARKED or not excess[1] > 0:
        return "not markedly less fluent"
    if gain[1] > 0:
        return f"less fluent, retention gain {100 * gain[0]:+.1f} pts"
    return "less fluent without a retention gain"


def summarize(scored: Sequence[Scored]) -> list[FluencyRow]:
    """Rows per (method, ratio), with the paired comparison against :data:`ANCHOR` on the same items."""
    by_key: dict[tuple[str, float], list[Scored]] = {}
    for s in scored:
        by_key.setdefault((s.method, s.ratio), []).append(s)
    rows = []
    for (method, ratio), group in by_key.items():
        ok = [s for s in group if s.tokens > 0]
        rel = {s.item: s.nll / s.original for s in ok}
        anchor = {s.item: s for s in by_key.get((ANCHOR, ratio), []) if s.tokens > 0}
        excess = gain = None
        verdict = ""
        if method != ANCHOR and anchor:
            paired = [i for i in rel if i in anchor]
            excess = mean_interval([rel[i] - anchor[i].nll / anchor[i].original for i in paired])
            mine = {s.item: s.retained for s in group}
            theirs = {s.item: s.retained for s in by_key.get((ANCHOR, ratio), [])}
            mean, low, high = mean_interval([float(mine[i]) - float(theirs[i]) for i in mine if i in theirs])
            gain = (mean, max(-1.0, low), min(1.0, high))
            verdict = _verdict(excess, gain)
        rows.append(
            FluencyRow(
                method=method,
                ratio=ratio,
                items=len(group),
                empty=len(group) - len(ok),
                retention=sum(s.retained for s in group) / len(group),
                nll=mean_interval([s.nll for s in ok])[0],
                nll_original=mean_interval([s.original for s in ok])[0],
                ratio_to_original=mean_interval(list(rel.values())),
                difference=mean_interval([s.nll - s.original for s in ok]),
                ratio_to_matched=mean_interval([s.nll / s.matched for s in ok]),
                excess_over_anchor=excess,
                retention_gain=gain,
                verdict=verdict,
            )
        )
    order = {m: i for i, m in enumerate(METHODS)}
    return sorted(rows, key=lambda r: (r.ratio, order.get(r.method, len(order)), r.method))


def _ci(values: Sequence[float] | None, scale: float = 1.0, fmt: str = ".3f") -> str:
    if values is None:
        return "–"
    mean, low, high = (scale * v for v in values)
    return f"{mean:{fmt}} [{low:{fmt}}, {high:{fmt}}]"


def markdown(results: dict[str, Any]) -> str:
    """``fluency.md``: how it was measured, then one table per suite."""
    meta = results["meta"]
    before, after = meta["load_average_before_after"]
    out = [
        "# Fluency of compressed text",
        "",
        f"Generated {meta['generated']} by `{meta['command']}` on {meta['machine']}; load average (1 min) before / "
        f"after: {before} / {after}; {meta['wall_s']:.0f} s in all, {meta['torch_threads']} torch thread(s).",
        "",
        f"Mean per-token NLL (nats) under the packaged SmolLM2-135M ({meta['dtype']}), each text in consecutive "
        f"windows of {meta['window']} tokens opened by `<|endoftext|>`. The outputs are the retention run's: the "
        f"same methods, suite sample (seed {meta['seed']}) and budgets `floor(o200k tokens / ratio)`; retention is "
        "measured "
        "on these outputs. Per item, the output's NLL is divided by (and subtracted from) the NLL of the original "
        "context it came from; *length-matched* divides by the original's NLL over tokens with no more context than "
        "the output had. Means over items, 95% normal intervals (items of one article are not independent: "
        f"optimistic). Against `{meta['anchor']}` at the same ratio, paired per item: the excess of the NLL ratio "
        "and the retention gain. Verdict (the issue's rule): *less fluent* when the excess is at least "
        f"{meta['marked']:.2f} with its interval above 0; then a retention gain counts when its interval is above 0.",
        "",
    ]
    for name, reason in meta.get("skipped", {}).items():
        out += [f"- `{name}` skipped: {reason}", ""]
    for name, suite in results["suites"].items():
        out += [
            f"## {name}: {suite['description']}",
            "",
            f"n = {suite['items']} questions from {suite['articles']} articles; the originals' mean NLL is "
            f"{suite['original_nll_mean']:.3f} nats/token. Compression {suite['compress_s']:.0f} s, scoring "
            f"{suite['score_s']:.0f} s.",
            "",
            "| method | ratio | n | retention % | NLL | NLL / original [95% CI] | NLL − original | NLL / length-"
            f"matched | Δ NLL ratio vs {meta['anchor']} [95% CI] | Δ retention vs {meta['anchor']}, pts [95% CI] "
            "| verdict |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in suite["rows"]:
            empty = f" ({r['empty']} empty)" if r["empty"] else ""
            out.append(
                f"| {r['method']} | {r['ratio']:g}x | {r['items']}{empty} | {100 * r['retention']:.1f} | "
                f"{r['nll']:.3f} | {_ci(r['ratio_to_original'])} | {r['difference'][0]:+.3f} | "
                f"{r['ratio_to_matched'][0]:.3f} | {_ci(r['excess_over_anchor'])} | "
                f"{_ci(r['retention_gain'], 100, '+.1f')} | {r['verdict'] or '–'} |"
            )
        out.append("")
    return "\n".join(out)
