"""Frontier metrics: the hull, AIQ, parity and quality at a premium share; the sweep's reach."""
from __future__ import annotations

import numpy as np
import pytest

from simulations import metrics


def test_upper_hull_drops_dominated_and_concave_points():
    pts = [(1, 0.5), (2, 0.55), (3, 0.9), (4, 0.8), (2.5, 0.6)]
    assert metrics.upper_hull(pts) == [(1, 0.5), (3, 0.9)]   # (2, .55), (2.5, .6) lie under the segment


def test_aiq_of_a_flat_frontier_is_its_quality():
    assert metrics.aiq([(0.0, 0.7), (1.0, 0.7)], 0.0, 1.0) == pytest.approx(0.7)


def test_aiq_averages_the_hull_over_the_cost_range():
    # hull from (0, 0) to (1, 1): mean height 0.5; then flat at 1 up to cost 2: overall 0.75
    assert metrics.aiq([(0, 0), (1, 1)], 0, 2) == pytest.approx(0.75, abs=1e-3)


def test_parity_and_quality_at_share():
    sweep = [{"quality": 0.60, "premium_share": 0.1}, {"quality": 0.64, "premium_share": 0.3},
             {"quality": 0.66, "premium_share": 0.5}]
    assert metrics.premium_share_at_parity(sweep, 0.63) == 0.3
    assert metrics.premium_share_at_parity(sweep, 0.7) is None
    assert metrics.quality_at_premium_share(sweep, 0.33) == 0.64
    assert metrics.quality_at_premium_share(sweep, 0.05) is None


def _hinted_set(tmp_path):
    """Kind a: x is right on every other query (mean 0.5), y on 60% of each; kind b: x always."""
    import json
    rows = [("a", {"x": float(i % 2), "y": 0.6}) for i in range(8)] + [("b", {"x": 1.0, "y": 0.0}) for _ in range(4)]
    path = tmp_path / "hinted.jsonl"
    path.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"p{i}", "task": kind, "split": None,
                                        "outcomes": {e: {"quality": q, "cost": 1.0 if e == "x" else 0.5}
                                                     for e, q in out.items()}}) + "\n"
                            for i, (kind, out) in enumerate(rows)))
    (tmp_path / "hinted.meta.json").write_text(json.dumps({"name": "hinted", "cost_unit": "usd", "premium": "x",
                                                           "experts": {"x": {}, "y": {}}}))
    return path


def test_the_hint_oracle_calls_each_hint_values_best_expert_not_each_querys(tmp_path):
    """Per query, x or y is right; per kind, y pays on a (0.6 > 0.5) and x on b: the hint oracle
    is what routing by the hint alone can reach, below the per-query oracle."""
    import numpy as np

    from common.dataset import RoutingDataset
    from simulations.replay import Baselines
    from simulations.streams import streams

    ds = RoutingDataset.load(_hinted_set(tmp_path))
    x = np.zeros((len(ds.rows), 4))
    st = streams(ds, x, 1, [])[0]
    base = Baselines(ds, x, st, hints=("task",))
    assert "hint_oracle" in base.names and "hint_oracle" not in Baselines(ds, x, st).names
    kind = np.array([r.task for r in ds.rows])[st.order]
    picks = base.picks("hint_oracle", st, 0.0, 0)
    assert set(picks[kind == "a"]) == {ds.experts.index("y")} and set(picks[kind == "b"]) == {ds.experts.index("x")}
    n = np.arange(len(picks))
    assert st.quality[n, picks].mean() == pytest.approx((8 * 0.6 + 4) / 12)
    assert st.quality[n, base.picks("oracle", st, 0.0, 0)].mean() == pytest.approx((4 + 4 * 0.6 + 4) / 12)
    # A cost weight that makes x's extra cost outweigh its lead on b moves b to y too.
    assert set(base.picks("hint_oracle", st, 3.0, 0)) == {ds.experts.index("y")}


def test_the_single_expert_checks_carry_the_hint_oracle_when_there_is_one():
    entry = {"kind": "baseline", "frontier": [{"cost": 1.0, "quality": 0.8}], "cost": 1.0, "quality": 0.6}
    bandit = {"kind": "bandit", "frontier": [{"cost": 1.0, "quality": 0.7, "late_cost": 1.0, "late_quality": 0.7}]}
    hinted = {"kind": "baseline", "frontier": [{"cost": 0.5, "quality": 0.75}, {"cost": 1.0, "quality": 0.9}]}
    checks = metrics.frontier_checks({"always:x": entry, "p": bandit, "hint_oracle": hinted})
    assert checks["single_experts"]["x"]["hint_oracle"] == pytest.approx(0.9)
    assert checks["single_experts"]["x"]["ok"] and checks["single_experts"]["x"]["by"] == "p"
    assert metrics.frontier_checks({"always:x": entry, "p": bandit})["single_experts"]["x"]["hint_oracle"] is None


def test_the_sweep_reaches_up_to_where_the_two_cheapest_experts_part():
    """Cost weights are added by decades until cost outweighs a unit of quality between
    each query's cheapest expert and the next cheapest, on all but 5% of the queries: with
    prices far apart and short queries, the fixed sweep's top never reached the cheapest."""
    from simulations.replay import SWEEP, reaching_cheapest

    rng = np.random.default_rng(0)
    length = rng.uniform(0.05, 2.0, size=(1000, 1))                  # how long each query runs
    near = length * np.array([[0.0045, 0.0056, 1.0]])                # two cheap experts 25% apart, a premium
    extended = reaching_cheapest(SWEEP, near)
    assert extended[:len(SWEEP)] == SWEEP and extended[len(SWEEP):] == (1e4,)
    assert extended[-1] * np.quantile(length[:, 0] * 0.0011, 0.05) >= 1.0
    wide = length * np.array([[0.11, 0.22, 1.0]])                    # a cheapest at half the next's price
    assert reaching_cheapest(SWEEP, wide) == SWEEP
    assert reaching_cheapest(SWEEP, np.ones((10, 3))) == SWEEP          # every expert costs the same
    free = np.hstack([np.zeros((10, 1)), np.full((10, 1), 1e-12)])    # a free expert beside a near-free one
    assert reaching_cheapest(SWEEP, free)[-1] == 1e9
    assert reaching_cheapest((0.0,), near) == (0.0,) and reaching_cheapest((), near) == ()
