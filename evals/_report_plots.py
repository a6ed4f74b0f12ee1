"""The report's plots, drawn with matplotlib (imported on first use, on the Agg backend).

``retention.png``: retention (or reference-summary recall) vs compression ratio, one panel per suite, one line per
method with 95% intervals. ``latency.png``: compressor seconds per item vs input length, from the same records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from promptzip.evals.suites import SUITES

__all__ = ["plot_latency", "plot_retention"]


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
