"""Frontier metrics: the hull, AIQ, parity and quality at a premium share."""
from __future__ import annotations

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
