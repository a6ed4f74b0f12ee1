"""The exact knapsack solver (``_dp``) chooses exactly what the table-of-choices solver it replaced chose: the same
variant objects, ties included, on instances built to have many ties, and on the same fronts the policy builds."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from promptzip._policy import BudgetPolicy, _cost, _dp, _pareto
from promptzip._types import Chunk, Variant


def reference_dp(fronts: list[list[Variant]], cap: int, overhead: int) -> list[Variant]:
    """The solver as it was: every group records, per capacity, which variant won by a strict comparison."""
    n = len(fronts)
    dp = np.zeros(cap + 1, dtype=np.float64)
    choice = np.zeros((n, cap + 1), dtype=np.int16)
    for g, front in enumerate(fronts):
        new = np.full(cap + 1, -np.inf)
        pick = choice[g]
        for j, v in enumerate(front):
            c = _cost(v, overhead)
            if c > cap:
                break
            cand = dp[: cap + 1 - c] + v.utility
            better = cand > new[c:]
            np.copyto(new[c:], cand, where=better)
            np.copyto(pick[c:], j, where=better)
        dp = new
    chosen: list[Variant] = []
    c = cap
    for g in range(n - 1, -1, -1):
        v = fronts[g][int(choice[g, c])]
        chosen.append(v)
        c -= _cost(v, overhead)
    chosen.reverse()
    return chosen


def _odd(rng: random.Random) -> float:
    """A utility no compressor should produce, which the solvers must still treat alike."""
    return rng.choice([math.inf, -math.inf, math.nan, 1e308])


def _instance(rng: random.Random, *, ties: bool, odd: bool) -> list[list[Variant]]:
    groups = []
    for i in range(rng.randint(1, 14)):
        chunk = Chunk(f"chunk {i}", source_id=str(i))
        if rng.random() < 0.15:  # protected: one variant that must be kept
            groups.append([Variant(chunk, "keep", chunk.text, rng.randint(1, 40), float(rng.randint(0, 5)))])
            continue
        group = [Variant(chunk, "drop", "", 0, _odd(rng) if odd and rng.random() < 0.1 else 0.0)]
        for j in range(rng.randint(0, 9)):
            tokens = rng.randint(1, 12) if ties else rng.randint(1, 60)
            utility = float(rng.randint(0, 6)) if ties else rng.uniform(0.0, 10.0)
            if odd and rng.random() < 0.1:
                utility = _odd(rng)
            group.append(Variant(chunk, f"v{j}", f"{chunk.text} v{j}", tokens, utility))
        rng.shuffle(group)
        groups.append(group)
    return groups


@pytest.mark.parametrize("odd", [False, True])
@pytest.mark.parametrize("ties", [True, False])
def test_dp_chooses_what_the_table_of_choices_chose(ties: bool, odd: bool) -> None:
    rng = random.Random(f"{ties}-{odd}")
    compared = 0
    for _ in range(600):
        groups = _instance(rng, ties=ties, odd=odd)
        overhead = rng.randint(0, 3)
        fronts = [_pareto(g, overhead) for g in groups]
        full = sum(_cost(f[-1], overhead) for f in fronts)
        need = sum(_cost(f[0], overhead) for f in fronts)
        # capacities from the fronts' minimum up to past their maximum, as BudgetPolicy asks and beyond
        for cap in {need, max(need, full // 2), full, full + 7, rng.randint(need, need + 80)}:
            with np.errstate(invalid="ignore", over="ignore"):  # inf - inf and 1e308 + 1e308 in the odd instances
                expected = reference_dp(fronts, cap, overhead)
                got = _dp(fronts, cap, overhead)
            assert [id(v) for v in got] == [id(v) for v in expected]
            compared += 1
    assert compared > 1000


def test_policy_choices_match_the_reference_on_request_sized_instances() -> None:
    rng = random.Random(7)
    for _ in range(20):
        groups = []
        for i in range(64):
            chunk = Chunk(f"chunk {i}", source_id=str(i))
            size = rng.randint(20, 260)
            variants = [Variant(chunk, "drop", "", 0, 0.0), Variant(chunk, "keep", chunk.text, size, rng.random() * 5)]
            for j in range(rng.randint(0, 10)):
                variants.append(Variant(chunk, f"v{j}", f"{chunk.text} {j}", rng.randint(5, size), rng.random() * 4))
            groups.append(variants)
        budget = rng.randint(200, 1500)
        chosen = BudgetPolicy().select(groups, budget, overhead=1)
        fronts = [_pareto(g, 1) for g in groups]
        cap = min(budget, sum(_cost(f[-1], 1) for f in fronts))
        assert [id(v) for v in chosen] == [id(v) for v in reference_dp(fronts, cap, 1)]
