"""BudgetPolicy: the multiple-choice knapsack, checked as properties against a brute force and the LP bound."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promptzip._errors import BudgetError, InputError
from promptzip._policy import BudgetPolicy
from promptzip._types import Chunk, Variant

Groups = list[list[Variant]]

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- building instances --------------------------------------------------------------------------------------------
@st.composite
def _group(draw: st.DrawFn, index: int, max_variants: int) -> list[Variant]:
    chunk = Chunk(f"chunk number {index}", source_id=str(index))
    utility = st.floats(0.0, 10.0, allow_nan=False, allow_infinity=False)
    tokens = st.integers(1, 60)
    if draw(st.integers(0, 7)) == 0:  # about one group in eight is protected
        return [Variant(chunk, "keep", chunk.text, draw(tokens), draw(utility))]
    variants = [Variant(chunk, "drop", "", 0, 0.0)]
    for j in range(draw(st.integers(1, max_variants - 1))):
        variants.append(Variant(chunk, f"v{j}", f"{chunk.text} v{j}", draw(tokens), draw(utility)))
    return draw(st.permutations(variants))


@st.composite
def groups_st(draw: st.DrawFn, max_groups: int = 8, max_variants: int = 5) -> Groups:
    n = draw(st.integers(1, max_groups))
    return [draw(_group(i, max_variants)) for i in range(n)]


def cost(v: Variant, overhead: int) -> int:
    return v.tokens + overhead if v.text else 0


def total_cost(chosen: Sequence[Variant], overhead: int) -> int:
    return sum(cost(v, overhead) for v in chosen)


def total_utility(chosen: Sequence[Variant]) -> float:
    return sum(v.utility for v in chosen)


def required(groups: Groups, overhead: int) -> int:
    return sum(min(cost(v, overhead) for v in g) for g in groups)


def is_protected(group: Sequence[Variant]) -> bool:
    return len(group) == 1 and group[0].kind == "keep"


def brute_force(groups: Groups, budget: int, overhead: int) -> float:
    feasible = (c for c in itertools.product(*groups) if total_cost(c, overhead) <= budget)
    return max(total_utility(c) for c in feasible)


def lp_bound(groups: Groups, budget: int, overhead: int) -> float:
    """The LP relaxation of the multiple-choice knapsack (each group picks a convex mix), solved by HiGHS."""
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix

    flat = [(g, v) for g, group in enumerate(groups) for v in group]
    a_eq = csr_matrix(([1.0] * len(flat), ([g for g, _ in flat], list(range(len(flat))))), (len(groups), len(flat)))
    res = linprog(
        c=[-v.utility for _, v in flat],
        A_ub=[[float(cost(v, overhead)) for _, v in flat]],
        b_ub=[float(budget)],
        A_eq=a_eq,
        b_eq=[1.0] * len(groups),
        bounds=[(0.0, 1.0)] * len(flat),
        method="highs",
    )
    assert res.status == 0, res.message
    return float(-res.fun)


def check_choice(groups: Groups, chosen: list[Variant], budget: int, overhead: int) -> None:
    """The contract every selection honours, exact or greedy."""
    assert len(chosen) == len(groups)
    for group, v in zip(groups, chosen, strict=True):
        assert any(v is w for w in group), "each choice comes from its own group"
        if is_protected(group):
            assert v is group[0]
            assert not v.is_empty
    assert total_cost(chosen, overhead) <= budget


# -- properties ----------------------------------------------------------------------------------------------------
@PROPERTY
@given(groups=groups_st(), budget=st.integers(0, 250), overhead=st.integers(0, 5))
def test_feasible_or_budget_error(groups: Groups, budget: int, overhead: int) -> None:
    need = required(groups, overhead)
    if need > budget:
        with pytest.raises(BudgetError) as info:
            BudgetPolicy().select(groups, budget, overhead=overhead)
        assert info.value.required == need
        assert info.value.budget == budget
        return
    check_choice(groups, BudgetPolicy().select(groups, budget, overhead=overhead), budget, overhead)


@PROPERTY
@given(groups=groups_st(), overhead=st.integers(0, 5), data=st.data())
def test_protected_minimum_exactly_fits(groups: Groups, overhead: int, data: st.DataObject) -> None:
    need = required(groups, overhead)
    for policy in (BudgetPolicy(), BudgetPolicy(dp_limit=0)):
        chosen = policy.select(groups, need, overhead=overhead)
        check_choice(groups, chosen, need, overhead)
        # Every token of the budget goes to the protected parts: everything else is dropped.
        assert all(v.is_empty for g, v in zip(groups, chosen, strict=True) if not is_protected(g))
    if need > 0:
        short = data.draw(st.integers(0, need - 1))
        with pytest.raises(BudgetError) as info:
            BudgetPolicy().select(groups, short, overhead=overhead)
        assert info.value.required == need
        assert info.value.budget == short


@PROPERTY
@given(groups=groups_st(max_groups=6), overhead=st.integers(0, 3), budgets=st.lists(st.integers(0, 200), max_size=6))
def test_utility_never_decreases_as_the_budget_grows(groups: Groups, overhead: int, budgets: list[int]) -> None:
    need = required(groups, overhead)
    full = total_cost([max(g, key=lambda v: (v.utility, -cost(v, overhead))) for g in groups], overhead)
    ladder = sorted({need, *(need + b for b in budgets), need + full})
    utilities = [total_utility(BudgetPolicy().select(groups, b, overhead=overhead)) for b in ladder]
    for lower, higher in itertools.pairwise(utilities):
        assert lower <= higher + 1e-9
    # With room for every group's best variant, the policy reaches the sum of the per-group maxima.
    assert utilities[-1] == pytest.approx(sum(max(v.utility for v in g) for g in groups), abs=1e-9)


@PROPERTY
@given(groups=groups_st(), budget=st.integers(0, 250), overhead=st.integers(0, 5), dp_limit=st.sampled_from([0, None]))
def test_deterministic(groups: Groups, budget: int, overhead: int, dp_limit: int | None) -> None:
    policy = BudgetPolicy() if dp_limit is None else BudgetPolicy(dp_limit=dp_limit)
    if required(groups, overhead) > budget:
        return
    first = policy.select(groups, budget, overhead=overhead)
    again = policy.select([list(g) for g in groups], budget, overhead=overhead)
    fresh = (BudgetPolicy() if dp_limit is None else BudgetPolicy(dp_limit=dp_limit)).select(
        groups, budget, overhead=overhead
    )
    assert [id(v) for v in first] == [id(v) for v in again] == [id(v) for v in fresh]


@settings(max_examples=400, deadline=None)
@given(groups=groups_st(max_groups=5, max_variants=3), budget=st.integers(0, 150), overhead=st.integers(0, 4))
def test_exact_solver_matches_brute_force(groups: Groups, budget: int, overhead: int) -> None:
    if required(groups, overhead) > budget:
        return
    chosen = BudgetPolicy().select(groups, budget, overhead=overhead)
    check_choice(groups, chosen, budget, overhead)
    assert total_utility(chosen) == pytest.approx(brute_force(groups, budget, overhead), rel=1e-9, abs=1e-9)


@settings(max_examples=300, deadline=None)
@given(groups=groups_st(max_groups=8, max_variants=5), budget=st.integers(0, 250), overhead=st.integers(0, 4))
def test_greedy_is_feasible_and_within_one_item_of_the_lp_bound(groups: Groups, budget: int, overhead: int) -> None:
    if required(groups, overhead) > budget:
        with pytest.raises(BudgetError):
            BudgetPolicy(dp_limit=0).select(groups, budget, overhead=overhead)
        return
    greedy = BudgetPolicy(dp_limit=0).select(groups, budget, overhead=overhead)
    check_choice(groups, greedy, budget, overhead)
    exact = total_utility(BudgetPolicy().select(groups, budget, overhead=overhead))
    bound = lp_bound(groups, budget, overhead)
    assert exact <= bound + 1e-6  # the LP relaxes the exact problem
    assert total_utility(greedy) <= exact + 1e-9
    assert total_utility(greedy) >= bound - max(v.utility for g in groups for v in g) - 1e-6


# -- examples ------------------------------------------------------------------------------------------------------
def _chunk(i: int) -> Chunk:
    return Chunk(f"c{i}", source_id=str(i))


def _options(i: int, *pairs: tuple[int, float]) -> list[Variant]:
    c = _chunk(i)
    return [Variant(c, "drop", "", 0, 0.0)] + [Variant(c, f"v{t}", f"text {t}", t, u) for t, u in pairs]


def test_exact_prefers_the_big_item_the_greedy_bound_is_additive() -> None:
    # Ratio order takes the small item first and then cannot fit the big one: the greedy is within
    # (LP − largest utility) of the optimum, not within a factor of it. The exact solver finds the optimum.
    groups = [_options(0, (1, 2.0)), _options(1, (10, 10.0))]
    exact = BudgetPolicy().select(groups, 10)
    assert [v.kind for v in exact] == ["drop", "v10"]
    greedy = BudgetPolicy(dp_limit=0).select(groups, 10)
    check_choice(groups, greedy, 10, 0)
    assert total_utility(greedy) >= lp_bound(groups, 10, 0) - 10.0


def test_overhead_counts_only_for_kept_variants() -> None:
    groups = [_options(0, (5, 1.0)), _options(1, (5, 1.0)), _options(2, (5, 1.0))]
    for budget, kept in [(6, 0), (7, 1), (13, 1), (14, 2), (20, 2), (21, 3)]:  # each kept variant costs 5 + 2
        for policy in (BudgetPolicy(), BudgetPolicy(dp_limit=0)):
            chosen = policy.select(groups, budget, overhead=2)
            assert sum(not v.is_empty for v in chosen) == kept, (budget, policy)


def test_dominated_variants_are_never_chosen() -> None:
    groups = [_options(0, (10, 5.0), (20, 4.0), (10, 3.0)), _options(1, (30, 1.0), (8, 1.0))]
    for budget in (20, 100):
        for policy in (BudgetPolicy(), BudgetPolicy(dp_limit=0)):
            first, second = policy.select(groups, budget)
            assert (first.tokens, first.utility) == (10, 5.0)
            assert (second.tokens, second.utility) == (8, 1.0)


def test_large_instance_takes_the_greedy_path_and_fits() -> None:
    groups = [
        _options(i, (3 + i % 17, (i * 7919 % 101) / 10), (9 + i % 23, (i * 104729 % 131) / 10)) for i in range(3000)
    ]
    budget = 20_000
    policy = BudgetPolicy(dp_limit=1_000)  # 3000 groups × 20001 capacities is far above it
    chosen = policy.select(groups, budget)
    check_choice(groups, chosen, budget, 0)
    assert budget - total_cost(chosen, 0) < max(v.tokens for g in groups for v in g)  # the fill pass uses the room
    assert total_utility(chosen) >= lp_bound(groups, budget, 0) - max(v.utility for g in groups for v in g) - 1e-6


def test_empty_input_and_invalid_arguments() -> None:
    assert BudgetPolicy().select([], 0) == []
    with pytest.raises(BudgetError):
        BudgetPolicy().select([_options(0, (1, 1.0))], -1)
    with pytest.raises(InputError, match="chunk 1"):
        BudgetPolicy().select([_options(0, (1, 1.0)), []], 10)
