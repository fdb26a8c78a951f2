"""promote's verdict on generated logs: a better candidate is promoted, a worse or an
unproven one is refused with the numbers that say why."""
from __future__ import annotations

import numpy as np
import pytest

from simulations.promote import judge

EXPERTS = ("a", "b", "c")


def logs(n: int, candidate, seed: int = 0, serving: str = "live") -> list[dict]:
    """Two clusters of 8-dim contexts: expert a is right on the first, b on the second, c on
    neither. The serving policy logs uniformly; `candidate(cluster)` gives the shadow's
    probabilities (what it would have chosen), as the router logs them."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        cluster = int(rng.integers(2))
        x = np.zeros(8)
        x[cluster] = 1.0
        x[2:] = rng.normal(0, 0.1, 6)
        chosen = EXPERTS[int(rng.integers(3))]
        right = EXPERTS[cluster]
        quality = float(np.clip((0.9 if chosen == right else 0.2) + rng.normal(0, 0.05), 0, 1))
        rows.append({"decision_id": str(i), "context": x.tolist(), "chosen_expert": chosen, "propensity": 1 / 3,
                     "probabilities": {e: 1 / 3 for e in EXPERTS}, "quality": quality, "cost": 0.0,
                     "cost_weight": 0.0, "policy_name": serving,
                     "shadows": {"cand": {"expert": right, "probabilities": candidate(cluster)}}})
    return rows


def right(cluster: int) -> dict:                      # the right expert, 95% of the time
    return {e: 0.95 if e == EXPERTS[cluster] else 0.025 for e in EXPERTS}


def never_right(cluster: int) -> dict:
    return {"c": 1.0, "a": 0.0, "b": 0.0}


def test_a_better_candidate_is_promoted_with_its_figures():
    v = judge(logs(600, right), "live", "cand", n_boot=200)
    assert v.promote, v.reason
    f = v.figures
    assert f["candidate_dr"] == pytest.approx(0.95 * 0.9 + 0.05 * 0.2, abs=0.04)     # the truth: 0.865
    assert f["serving_value"] == pytest.approx((0.9 + 0.2 + 0.2) / 3, abs=0.04)     # uniform: 0.433
    assert f["serving_observed"] == pytest.approx(f["serving_value"], abs=0.04)
    assert f["candidate_lower"] > f["serving_value"] and f["decisions"] == 600
    assert "the lower bound beats it" in v.reason


def test_a_worse_candidate_is_refused_saying_why():
    v = judge(logs(600, never_right), "live", "cand", n_boot=200)
    assert not v.promote
    f = v.figures
    assert f["candidate_dr"] == pytest.approx(0.2, abs=0.04) and f["candidate_upper"] < f["serving_value"]
    assert f"DR estimate {f['candidate_dr']:.4f}, 95% interval [{f['candidate_lower']:.4f}, " \
           f"{f['candidate_upper']:.4f}]" in v.reason
    assert f"does not beat {f['serving_value']:.4f}" in v.reason


def test_too_few_decisions_or_another_serving_policy_is_refused():
    v = judge(logs(150, right), "live", "cand")
    assert not v.promote and "only 150 rewarded decisions of 'live' with 'cand' in its shadow; at least 200" in v.reason
    v = judge(logs(600, right, serving="old"), "live", "cand")    # decided by another policy: not evidence
    assert not v.promote and "only 0 rewarded decisions" in v.reason


def test_a_candidate_no_better_than_the_serving_policy_is_refused():
    """The serving policy's own probabilities as the candidate: the same value, not a gain."""
    v = judge(logs(400, lambda cluster: {e: 1 / 3 for e in EXPERTS}), "live", "cand", n_boot=200)
    assert not v.promote and v.figures["candidate_dr"] == pytest.approx(v.figures["serving_value"])
