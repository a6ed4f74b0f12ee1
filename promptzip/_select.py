"""The select stage's helpers: the knapsack's choice with each source's once-only cost (the tags around a document)
counted once, and what a choice means (each chunk's provenance, the result's decision)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import replace

from promptzip._policy import Policy
from promptzip._types import ChunkResult, Variant

__all__ = ["charge", "decision", "provenance", "select_with_tags"]

# Rounds of re-charging a choice whose document tags did not fit (see select_with_tags); later rounds rarely move.
_CHARGE_ROUNDS = 3


def select_with_tags(
    policy: Policy, groups: list[list[Variant]], available: int, sep: int, overhead: Mapping[str, int]
) -> list[Variant]:
    """The policy's choice, with each source's once-only cost (the tags around a document, which leave with it)
    charged to the variants that would bring it along.

    The knapsack takes per-variant costs, so a source's tags are spread over its chunks: first in equal shares, then,
    while the choice does not fit once the tags are counted once per kept source, again with the whole cost on each
    chunk of a source not kept yet and a share on those of a kept one. The best choice that fits wins; if none
    does, the last one, which the caller tightens."""
    if not overhead:
        return policy.select(groups, available, overhead=sep)
    opened: Counter[str] | None = None
    picked: list[Variant] = []
    for _ in range(_CHARGE_ROUNDS):
        originals: dict[int, Variant] = {}
        charged = charge(groups, overhead, originals, opened)
        picked = [originals.get(id(v), v) for v in policy.select(charged, available, overhead=sep)]
        opened = Counter(v.chunk.source_id for v in picked if v.text)
        if sum(v.tokens + sep for v in picked if v.text) + sum(overhead.get(s, 0) for s in opened) <= available:
            break
    return picked


def charge(
    groups: list[list[Variant]],
    overhead: Mapping[str, int],
    originals: dict[int, Variant],
    opened: Mapping[str, int] | None,
) -> list[list[Variant]]:
    """Variants that also carry a share of their source's once-only cost (``originals`` maps them back): an equal
    share per chunk when ``opened`` is None, else the whole cost for a source not in ``opened`` and
    ``cost / opened[source]`` for one that is."""
    per_source: dict[str, int] = {}
    for g in groups:
        per_source[g[0].chunk.source_id] = per_source.get(g[0].chunk.source_id, 0) + 1
    out: list[list[Variant]] = []
    for g in groups:
        sid = g[0].chunk.source_id
        whole = overhead.get(sid, 0)
        parts = per_source[sid] if opened is None else opened.get(sid, 1)
        share = -(-whole // parts)
        if not share:
            out.append(g)
            continue
        charged = []
        for v in g:
            w = replace(v, tokens=v.tokens + share) if v.text else v
            originals[id(w)] = v
            charged.append(w)
        out.append(charged)
    return out


def provenance(v: Variant, group: list[Variant]) -> ChunkResult:
    c = v.chunk
    whole = next((w.tokens for w in group if w.kind == "keep"), v.tokens)
    return ChunkResult(
        source_id=c.source_id,
        start=c.start,
        end=c.end,
        kind=v.kind,
        tokens_in=whole,
        tokens_out=v.tokens,
        kept=v.kept if v.text else (),
        relevance=v.relevance,
        protected=c.protected,
        text=v.text,
    )


def decision(chosen: list[Variant], groups: list[list[Variant]], question: str | None) -> str:
    open_groups = [g for g in groups if not g[0].chunk.protected]
    if question and open_groups and all(len(g) == 1 and not g[0].text for g in open_groups):
        return "no_relevant_context"
    if all(v.kind == "keep" for v in chosen):
        return "kept_all"
    return "compressed"
