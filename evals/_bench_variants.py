"""Preset options benched beside their preset (:data:`VARIANTS`), and the report's table of each against it."""

from __future__ import annotations

from typing import Any

__all__ = ["VARIANTS", "variant_lines"]

# Rows for a preset option worth its own latency figures: method name → (preset, options). Benched by default
# beside the presets; ``--presets`` names them like presets.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {"fast-cascade": ("fast", {"cascade": True})}


def variant_lines(report: dict[str, Any], source: str) -> list[str]:
    """Each variant against its preset, size by size, from rows of the same run (time ratio preset / variant)."""
    rows = {
        (r["method"], r["size"]): r
        for r in report["rows"]
        if "error" not in r and r.get("source", source) == source and r.get("date") == report.get("date")
    }
    lines: list[str] = []
    for variant, (preset, options) in VARIANTS.items():
        pairs = [
            (size, rows[(f"promptzip-{preset}", size)], rows[(f"promptzip-{variant}", size)])
            for size in sorted({size for _, size in rows})
            if (f"promptzip-{preset}", size) in rows and (f"promptzip-{variant}", size) in rows
        ]
        if not pairs:
            continue
        lines += [
            f"{variant} ({preset} with {', '.join(f'{k}={v!r}' for k, v in options.items())}) against {preset}, "
            "same run (speed-up: the preset's seconds over the variant's; indexed: a third question after the text "
            "was warmed at index time, `promptzip warm`, so that every sentence's vector is cached):",
            "",
            "| tokens | cold s | cold s (variant) | cold speed-up | warm s | warm s (variant) | warm speed-up | "
            "indexed s | indexed s (variant) | ratio (variant, cold) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for _, base, var in pairs:
            cold = base["cold_s"] / var["cold_s"]
            warm = (base["warm_s"] or 0) / var["warm_s"] if var.get("warm_s") else None
            lines.append(
                f"| {var['tokens']} | {base['cold_s']:.3f} | {var['cold_s']:.3f} | {cold:.2f}x"
                f" | {_fmt(base['warm_s'], '.3f')} | {_fmt(var['warm_s'], '.3f')} | {_fmt(warm, '.2f')}x | "
                f"{_fmt(base.get('indexed_s'), '.3f')} | {_fmt(var.get('indexed_s'), '.3f')} | "
                f"{_fmt(var['ratio_cold'], '.1f')} |"
            )
        lines.append("")
    return lines


def _fmt(x: float | None, spec: str) -> str:
    return "–" if x is None else format(x, spec)
