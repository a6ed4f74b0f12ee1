"""Budget policies: choose one variant per chunk so that the total cost fits the budget.

:class:`BudgetPolicy` solves the multiple-choice knapsack exactly by dynamic programming over token capacities
when ``groups × (budget + 1)`` is small enough, and otherwise with the convex-hull greedy (Sinha–Zoltners): start
from each group's cheapest variant, apply the upgrades with the best utility per token while they fit, then fill
what is left. Both are feasible by construction: the cheapest choice is checked against the budget first and every
step keeps the total within it.
"""

from __future__ import annotations

import heapq
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from promptzip._errors import BudgetError, InputError
from promptzip._types import Variant

__all__ = ["BudgetPolicy", "Policy"]


class Policy(ABC):
    """Chooses one variant per group (chunk) with total cost ≤ budget.

    ``overhead`` tokens are added to every non-empty variant (the separator that joins it to the others).
    Subclasses implement :meth:`_select` on validated input.
    """

    name = "policy"

    def select(self, groups: Sequence[Sequence[Variant]], budget: int, *, overhead: int = 0) -> list[Variant]:
        if budget < 0:
            raise BudgetError(f"budget must be ≥ 0, got {budget}", budget=budget)
        for i, group in enumerate(groups):
            if not group:
                raise InputError(f"chunk {i} has no variant to choose from")
        required = sum(min(_cost(v, overhead) for v in group) for group in groups)
        if required > budget:
            raise BudgetError(
                f"the parts that must be kept need {required} tokens but the budget leaves {budget}",
                budget=budget,
                required=required,
            )
        return self._select(groups, budget, overhead)

    @abstractmethod
    def _select(self, groups: Sequence[Sequence[Variant]], budget: int, overhead: int) -> list[Variant]: ...


def _cost(v: Variant, overhead: int) -> int:
    return v.tokens + overhead if v.text else 0


def _pareto(group: Sequence[Variant], overhead: int) -> list[Variant]:
    """Variants that are not dominated (cheaper or equal cost with at least the utility), by cost."""
    ordered = sorted(group, key=lambda v: (_cost(v, overhead), -v.utility))
    front: list[Variant] = []
    for v in ordered:
        if not front or v.utility > front[-1].utility:
            if front and _cost(front[-1], overhead) == _cost(v, overhead):
                front[-1] = v
            else:
                front.append(v)
    return front


class BudgetPolicy(Policy):
    """Maximize total utility subject to total tokens ≤ budget (multiple-choice knapsack).

    ``dp_limit`` bounds ``groups × (budget + 1)`` for the exact solver; larger problems use the greedy.
    """

    name = "knapsack"

    def __init__(self, *, dp_limit: int = 6_000_000) -> None:
        self.dp_limit = dp_limit

    def _select(self, groups: Sequence[Sequence[Variant]], budget: int, overhead: int) -> list[Variant]:
        fronts = [_pareto(g, overhead) for g in groups]
        best = [f[-1] for f in fronts]
        if sum(_cost(v, overhead) for v in best) <= budget:
            return best
        cap = min(budget, sum(_cost(f[-1], overhead) for f in fronts))
        if len(fronts) * (cap + 1) <= self.dp_limit:
            return _dp(fronts, cap, overhead)
        return _greedy(fronts, budget, overhead)

    def __repr__(self) -> str:
        return f"BudgetPolicy(dp_limit={self.dp_limit})"


def _dp(fronts: list[list[Variant]], cap: int, overhead: int) -> list[Variant]:
    n = len(fronts)
    costs = [[_cost(v, overhead) for v in front] for front in fronts]
    # rows[g][c]: the best utility of the groups before g within c tokens. No table of choices is filled in: the
    # walk back recomputes one group's candidates at one capacity, which costs less than recording them all.
    rows = np.empty((n + 1, cap + 1), dtype=np.float64)
    rows[0] = 0.0
    scratch = np.empty(cap + 1, dtype=np.float64)
    for g, front in enumerate(fronts):
        dp, new = rows[g], rows[g + 1]
        for j, (v, c) in enumerate(zip(front, costs[g], strict=True)):
            if c > cap:
                if j == 0:
                    new.fill(-np.inf)
                break
            # Only capacities ≥ c can take v (below c the candidate would be -inf, which never wins). The fronts
            # are by cost, so the first variant sets every capacity it reaches. fmax skips a NaN candidate as a
            # strict comparison would; a NaN the first variant leaves loses every comparison, as -inf would.
            width = cap + 1 - c
            if j == 0:
                new[:c] = -np.inf
                np.add(dp[:width], v.utility, out=new[c:])
            else:
                cand, tail = scratch[:width], new[c:]
                np.add(dp[:width], v.utility, out=cand)
                np.fmax(tail, cand, out=tail)
    chosen: list[Variant] = []
    c = cap
    for g in range(n - 1, -1, -1):
        # The first variant with the best candidate at this capacity: the one a strict comparison in front order
        # keeps, with the candidate computed as the forward pass computed it.
        dp, pick, best = rows[g], 0, -np.inf
        for j, (v, cost) in enumerate(zip(fronts[g], costs[g], strict=True)):
            if cost > c:
                break
            value = dp[c - cost] + v.utility
            if value > best:
                pick, best = j, value
        chosen.append(fronts[g][pick])
        c -= costs[g][pick]
    chosen.reverse()
    return chosen


def _hull(front: list[Variant], overhead: int) -> list[int]:
    """Indices of the upper convex hull of (cost, utility), starting at the cheapest variant."""
    hull: list[int] = [0]
    for j in range(1, len(front)):
        while len(hull) >= 2:
            a, b = front[hull[-2]], front[hull[-1]]
            ca, cb, cj = _cost(a, overhead), _cost(b, overhead), _cost(front[j], overhead)
            # drop b if it lies under the segment a → j
            if (b.utility - a.utility) * (cj - ca) <= (front[j].utility - a.utility) * (cb - ca):
                hull.pop()
            else:
                break
        hull.append(j)
    return hull


def _greedy(fronts: list[list[Variant]], budget: int, overhead: int) -> list[Variant]:
    current = [0] * len(fronts)
    used = sum(_cost(f[0], overhead) for f in fronts)
    hulls = [_hull(f, overhead) for f in fronts]
    position = [0] * len(fronts)
    heap: list[tuple[float, int, int]] = []

    def push(g: int) -> None:
        k = position[g]
        if k + 1 < len(hulls[g]):
            a, b = fronts[g][hulls[g][k]], fronts[g][hulls[g][k + 1]]
            dc = _cost(b, overhead) - _cost(a, overhead)
            heapq.heappush(heap, (-(b.utility - a.utility) / max(dc, 1), g, k + 1))

    for g in range(len(fronts)):
        push(g)
    while heap:
        _, g, k = heapq.heappop(heap)
        nxt = hulls[g][k]
        dc = _cost(fronts[g][nxt], overhead) - _cost(fronts[g][current[g]], overhead)
        if used + dc <= budget:
            used += dc
            current[g] = nxt
            position[g] = k
            push(g)
    # Fill what is left in one pass: the most valuable groups first, each switched to its best variant that fits.
    order = sorted(range(len(fronts)), key=lambda g: -fronts[g][-1].utility)
    for g in order:
        front = fronts[g]
        here = front[current[g]]
        room = budget - used + _cost(here, overhead)
        for j in range(len(front) - 1, current[g], -1):
            if _cost(front[j], overhead) <= room:
                used += _cost(front[j], overhead) - _cost(here, overhead)
                current[g] = j
                break
    return [front[current[g]] for g, front in enumerate(fronts)]


def register_policies(regs: Any) -> None:
    regs.policies.register("knapsack", BudgetPolicy, help="multiple-choice knapsack over chunk variants")
