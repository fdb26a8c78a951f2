"""The replay tells the policies each expert's list price (the meta's mean_cost), as the
router tells them its catalog's: at a high cost weight the cheapest expert is called from
the first query, where without prices the first answers (delayed, as through Kafka) cost
a round of dearer experts."""
from __future__ import annotations

import json

import numpy as np
import pytest

from common.dataset import RoutingDataset
from simulations.policy_runs import bandit_picks
from simulations.streams import streams

PRICES = {"cheap": 0.1, "mid": 0.5, "premium": 1.0}


def write_priced(tmp_path, n=300):
    rng = np.random.default_rng(0)
    with (tmp_path / "p.jsonl").open("w") as fh:
        for i in range(n):
            noise = rng.uniform(0.5, 1.5)       # the answer's length moves every price alike
            fh.write(json.dumps({"id": str(i), "prompt": f"q{i}", "outcomes": {
                e: {"quality": float(rng.random() < 0.3 + 0.5 * p), "cost": p * noise} for e, p in PRICES.items()}}) + "\n")
    (tmp_path / "p.meta.json").write_text(json.dumps({
        "premium": "premium", "experts": {e: {"mean_cost": p} for e, p in PRICES.items()}}))
    return RoutingDataset.load(tmp_path / "p.jsonl")


@pytest.mark.parametrize("name", ["grouped_ts", "pooled_linucb", "linucb"])
def test_list_prices_keep_a_high_cost_weight_on_the_cheapest_expert(tmp_path, name):
    ds = write_priced(tmp_path)
    x = np.random.default_rng(1).standard_normal((len(ds.rows), 6))
    told, hidden = streams(ds, x, 1, [])[0], streams(ds, x, 1, [], prices=False)[0]
    assert told.prices == pytest.approx({e: p / told.scale for e, p in PRICES.items()}) and hidden.prices == {}
    params = {"epsilon": 0.0}
    cheap = ds.experts.index("cheap")
    assert (bandit_picks(name, told, 100.0, 0, 16, params) == cheap).all()
    assert (bandit_picks(name, hidden, 100.0, 0, 16, params) != cheap).sum() >= 2
