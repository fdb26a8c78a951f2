"""Our OPE estimators against Open Bandit Pipeline on real logged bandit feedback (the Open
Bandit Dataset sample shipped in obp's wheel), and on the logging policy itself."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulations import ope

import obp  # installed by ./run.sh setup: pip install --no-deps obp==0.4.1 (its pinned deps do not build)
from obp.ope import DoublyRobust, SwitchDoublyRobust
from obp.ope import InverseProbabilityWeighting as IPW
from obp.ope import SelfNormalizedInverseProbabilityWeighting as SNIPW


@pytest.fixture(scope="module")
def logged():
    csv = Path(obp.__file__).parent / "dataset" / "obd" / "bts" / "all" / "all.csv"
    df = pd.read_csv(csv)
    action = df["item_id"].to_numpy()
    k = int(action.max()) + 1
    rng = np.random.default_rng(0)
    pi = rng.dirichlet(np.ones(k) * 0.5, size=len(df))               # a candidate policy
    means = df.groupby("item_id")["click"].mean().reindex(range(k), fill_value=0).to_numpy()
    q_hat = np.tile(means, (len(df), 1)) + rng.normal(0, 0.01, (len(df), k))   # a rough reward model
    return ope.Logged(df["click"].to_numpy(float), action, df["propensity_score"].to_numpy(float), q_hat), pi


@pytest.mark.parametrize("ours, theirs, kwargs", [
    ("ips", IPW, {}), ("snips", SNIPW, {}), ("dr", DoublyRobust, {"model": True}),
    ("switch_dr", SwitchDoublyRobust, {"model": True, "tau": 10.0}),
])
def test_estimators_agree_with_obp(logged, ours, theirs, kwargs):
    d, pi = logged
    args = dict(reward=d.reward, action=d.action, pscore=d.pscore, action_dist=pi[:, :, None],
                position=np.zeros(len(d.action), dtype=int))
    if kwargs.get("model"):
        args["estimated_rewards_by_reg_model"] = d.q_hat[:, :, None]
    ref = (theirs(tau=kwargs["tau"]) if "tau" in kwargs else theirs()).estimate_policy_value(**args)
    assert ope.ESTIMATORS[ours]().estimate(d, pi) == pytest.approx(ref, abs=1e-6)


def test_logging_policy_value_is_its_observed_mean(logged):
    d, _ = logged
    # The logging policy's own distribution: its propensity on the logged action; the rest of
    # the mass spread evenly over the other actions.
    k = d.q_hat.shape[1]
    pi = np.tile(((1 - d.pscore) / (k - 1))[:, None], (1, k))
    pi[np.arange(len(d.action)), d.action] = d.pscore
    report = ope.evaluate(d, pi, n_boot=100)
    observed = d.reward.mean()
    for name, est in report["estimates"].items():
        lo, hi = est["ci"]
        assert lo <= observed <= hi, (name, est, observed)
    assert report["ess"] == pytest.approx(len(d.action))


@pytest.mark.parametrize("pscore, message", [([0.5, 0.0], "row 1 has 0.0"), ([0.5, np.nan], "row 1 has nan")])
def test_zero_or_missing_propensities_are_named(pscore, message):
    with pytest.raises(ValueError, match=message):
        ope.Logged(np.array([1.0, 0.0]), np.array([0, 1]), np.array(pscore))
