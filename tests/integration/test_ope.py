"""Our OPE estimators against Open Bandit Pipeline on real logged bandit feedback (the Open
Bandit Dataset sample shipped in obp's wheel), and against the known true value of a
candidate policy in a simulated environment (accuracy and interval coverage)."""
from __future__ import annotations

import dataclasses
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
    mine = ope.ESTIMATORS[ours](tau=kwargs["tau"]) if "tau" in kwargs else ope.ESTIMATORS[ours]()
    assert mine.estimate(d, pi) == pytest.approx(ref, abs=1e-6)


class Simulated:
    """A contextual bandit whose true values are known: K experts, reward Bernoulli with
    mean sigmoid(x . theta_a). The logging policy is a softmax over one score, the
    candidate a sharper softmax over another, so the two differ on most contexts."""

    K, D = 4, 5

    def __init__(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.theta = rng.normal(0, 1.0, (self.D, self.K))
        self.logging_w = 0.3 * (self.theta + rng.normal(0, 1.5, (self.D, self.K)))   # a soft, noisy logger
        self.candidate_w = 1.5 * self.theta                                          # a sharper, better one

    @staticmethod
    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def mean_reward(self, x):
        return 1.0 / (1.0 + np.exp(-(x @ self.theta)))

    def true_value(self, n: int = 400_000, seed: int = 99) -> float:
        x = np.random.default_rng(seed).normal(size=(n, self.D))
        return float((self.softmax(x @ self.candidate_w) * self.mean_reward(x)).sum(axis=1).mean())

    def log(self, n: int, seed: int) -> tuple[ope.Logged, np.ndarray]:
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(n, self.D))
        mu = self.softmax(x @ self.logging_w)
        action = (mu.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)
        r = self.mean_reward(x)
        reward = (rng.random(n) < r[np.arange(n), action]).astype(float)
        q_hat = np.clip(r + rng.normal(0, 0.05, r.shape), 0, 1)              # a decent reward model
        return ope.Logged(reward, action, mu[np.arange(n), action], q_hat), self.softmax(x @ self.candidate_w)


@pytest.fixture(scope="module")
def world():
    w = Simulated()
    return w, w.true_value()


def test_estimates_of_a_different_candidate_are_near_its_true_value(world):
    w, truth = world
    d, pi = w.log(20_000, seed=1)
    logged_mean = d.reward.mean()
    assert truth - logged_mean > 0.05            # the candidate really differs from the logger
    report = ope.evaluate(d, pi, n_boot=100)
    assert set(report["estimates"]) == {"ips", "snips", "dr", "switch_dr"}
    for name, est in report["estimates"].items():
        assert est["value"] == pytest.approx(truth, abs=0.02), (name, est, truth)
        assert abs(est["value"] - logged_mean) > 0.1                # not the logger's value
    assert 0 < report["ess"] < len(d.action)


def test_intervals_cover_the_true_value_about_as_often_as_they_claim(world):
    w, truth = world
    reps, covered = 40, {}
    for rep in range(reps):
        d, pi = w.log(1_000, seed=100 + rep)
        for name, est in ope.evaluate(d, pi, n_boot=100, seed=rep)["estimates"].items():
            covered[name] = covered.get(name, 0) + (est["ci"][0] <= truth <= est["ci"][1])
    # 95% intervals: over 40 replications, fewer than 32 covers would mean broken intervals
    # (a bootstrap percentile interval is a little narrow, never this much).
    assert all(c >= 32 for c in covered.values()), covered


def test_estimators_are_objects_with_their_parameters():
    d, pi = Simulated().log(2_000, seed=3)
    loose, tight = ope.SwitchDR(tau=1e9), ope.SwitchDR(tau=0.5)
    assert loose.estimate(d, pi) == pytest.approx(ope.DR().estimate(d, pi))   # tau beyond every weight: DR
    assert tight.estimate(d, pi) != pytest.approx(loose.estimate(d, pi))
    report = ope.evaluate(d, pi, estimators=(tight,), n_boot=20)
    assert list(report["estimates"]) == ["switch_dr"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        tight.tau = 3.0
    with pytest.raises(ValueError, match="tau must be > 0"):
        ope.SwitchDR(tau=0)
    with pytest.raises(ValueError, match="registered twice"):
        ope.register(ope.IPS)


@pytest.mark.parametrize("pscore, message", [([0.5, 0.0], "row 1 has 0.0"), ([0.5, np.nan], "row 1 has nan")])
def test_zero_or_missing_propensities_are_named(pscore, message):
    with pytest.raises(ValueError, match=message):
        ope.Logged(np.array([1.0, 0.0]), np.array([0, 1]), np.array(pscore))
