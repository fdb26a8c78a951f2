"""Budget pacing keeps the long-run mean cost per query at the budget, where the
unpaced policy spends well over it, and gives up as little quality as it can."""
from __future__ import annotations

import numpy as np
import pytest

from bandit.policies import make_policy
from bandit.pacing import BudgetPacer

D, T = 6, 4000
COST = {"premium": 1.0, "small": 0.1}


def run(pacer: BudgetPacer | None, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    policy = make_policy("linucb", D, {"alpha": 0.2, "epsilon": 0.02}, seed=seed)
    spent, quality = 0.0, 0.0
    for _ in range(T):
        x = rng.standard_normal(D)
        # premium is always better; how much better depends on the context
        q = {"premium": 0.8, "small": 0.8 - 0.4 * (x[0] > 0)}
        weight = pacer.weight(0.0) if pacer else 0.0
        e = policy.select(x, list(COST), cost_weight=weight).expert
        policy.update(e, x, q[e], COST[e])
        if pacer:
            pacer.observe(COST[e])
        spent += COST[e]
        quality += q[e]
    return spent / T, quality / T


@pytest.mark.parametrize("seed", [0, 1])
def test_pacing_holds_the_budget(seed):
    unpaced_cost, unpaced_quality = run(None, seed)
    assert unpaced_cost > 0.9                           # without a budget it buys premium
    pacer = BudgetPacer(budget=0.5)
    cost, quality = run(pacer, seed)
    assert cost <= 0.5 * 1.05, cost                     # the long-run mean stays at B
    # Within budget it spends premium where premium matters (x0 > 0): better than a blind 50/50 split.
    assert quality > 0.8 - 0.4 * 0.5 * 0.5 + 0.05, quality


@pytest.mark.parametrize("kwargs, message", [
    ({"budget": 0.0}, "budget must be"), ({"budget": float("nan")}, "budget must be"),
    ({"budget": 1.0, "step": 0.0}, "step and max_weight"),
])
def test_bad_pacer_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BudgetPacer(**kwargs)
