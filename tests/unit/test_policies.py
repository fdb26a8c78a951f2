"""Every registered policy passes the same checks; LinUCB's algebra holds."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.policies import POLICIES, make_policy
from bandit.policies.linear import LinUCB

DIM = 12
EXPERTS = ["a", "b", "c"]
PARAMS = {"fixed": {"expert": "b"}, "linucb": {"project_to": 6}}   # the minimum each one needs


def _stream(seed: int, n: int):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        x = rng.standard_normal(DIM)
        yield x, {e: float(x[i] > 0) for i, e in enumerate(EXPERTS)}, rng.uniform(0, 1, 3)


def _run(policy, seed=0, n=200):
    picks = []
    for x, quality, cost in _stream(seed, n):
        c = policy.select(x, EXPERTS, cost_weight=0.1)
        picks.append(c.expert)
        policy.update(c.expert, x, quality[c.expert], float(cost[EXPERTS.index(c.expert)]))
    return picks


@pytest.fixture(params=sorted(POLICIES))
def name(request) -> str:
    return request.param


def test_probabilities_are_valid(name):
    p = make_policy(name, DIM, PARAMS.get(name), seed=3)
    _run(p, n=50)
    for x, _, _ in _stream(9, 30):
        eligible = EXPERTS[:2] if x[0] > 0 else EXPERTS
        c = p.select(x, eligible)
        assert set(c.probabilities) == set(eligible)
        assert sum(c.probabilities.values()) == pytest.approx(1.0)
        assert all(0.0 <= v <= 1.0 for v in c.probabilities.values())
        assert c.expert in eligible and c.propensity == c.probabilities[c.expert] > 0


def test_seeded_runs_repeat(name):
    assert _run(make_policy(name, DIM, PARAMS.get(name), seed=11)) == \
           _run(make_policy(name, DIM, PARAMS.get(name), seed=11))


def test_snapshot_restore_gives_identical_choices(name):
    p = make_policy(name, DIM, PARAMS.get(name), seed=5)
    _run(p, n=120)
    q = make_policy(name, DIM, PARAMS.get(name), seed=0)
    q.restore(p.snapshot())
    q.rng = np.random.default_rng(77)
    p.rng = np.random.default_rng(77)
    xs = [x for x, _, _ in _stream(21, 60)]
    assert [p.select(x, EXPERTS).probabilities for x in xs] == [q.select(x, EXPERTS).probabilities for x in xs]
    assert [p.select(x, EXPERTS).expert for x in xs] == [q.select(x, EXPERTS).expert for x in xs]
    assert q.counts == p.counts


def test_a_batch_gets_what_each_request_would_get_alone(name):
    """select_many (the router scores together the requests whose embeddings came back
    together) gives each request select's probabilities, scores and, from the same random
    stream, expert; with a cost weight and prices of its own."""
    p = make_policy(name, DIM, PARAMS.get(name), seed=5)
    _run(p, n=120)
    q = make_policy(name, DIM, PARAMS.get(name), seed=0)
    q.restore(p.snapshot())
    p.rng, q.rng = np.random.default_rng(77), np.random.default_rng(77)
    xs = [x for x, _, _ in _stream(21, 16)]
    weights = [0.0, 0.1, 0.5, 1.0] * 4
    prices = [{"a": 0.1, "b": 0.05 * (i % 3), "c": 1.0} for i in range(16)]
    alone = [p.select(x, EXPERTS, w, pr) for x, w, pr in zip(xs, weights, prices)]
    together = q.select_many(xs, EXPERTS, weights, prices)
    assert [c.expert for c in together] == [c.expert for c in alone]
    for a, b in zip(alone, together):
        assert b.probabilities == pytest.approx(a.probabilities, abs=1e-9)
        assert [v for s in b.scores.values() for v in s] == pytest.approx([v for s in a.scores.values() for v in s], abs=1e-5)


def test_unknown_hyperparameter_is_named(name):
    with pytest.raises(ValueError, match="unknown hyperparameters.*bogus"):
        make_policy(name, DIM, {**PARAMS.get(name, {}), "bogus": 1})


@pytest.mark.parametrize("params, message", [
    ({"alpha": -1.0}, "alpha must be >= 0"),
    ({"ridge": 0.0}, "ridge must be > 0"),
    ({"epsilon": 1.5}, "epsilon must be in"),
    ({"project_to": -2}, "project_to must be >= 0"),
])
def test_linucb_rejects_bad_hyperparameters(params, message):
    with pytest.raises(ValueError, match=message):
        make_policy("linucb", DIM, params)


def test_bad_context_and_empty_eligible_are_rejected():
    p = make_policy("linucb", DIM)
    with pytest.raises(ValueError, match="context has 3 features, policy expects 12"):
        p.select(np.zeros(3), EXPERTS)
    with pytest.raises(ValueError, match="non-finite"):
        p.select(np.full(DIM, np.nan), EXPERTS)
    with pytest.raises(ValueError, match="no eligible experts"):
        p.select(np.zeros(DIM), [])
    with pytest.raises(ValueError, match="unknown policy 'nope'"):
        make_policy("nope", DIM)


def test_bad_prices_are_rejected(name):
    p = make_policy(name, DIM, PARAMS.get(name), seed=0)
    for bad in ({"a": -1.0}, {"b": float("nan")}):
        with pytest.raises(ValueError, match="prices must be finite and >= 0"):
            p.select(np.zeros(DIM), EXPERTS, 1.0, bad)


@pytest.mark.parametrize("name", ["linucb", "lints", "pooled_linucb", "grouped_ts", "neural_linear"])
def test_catalog_prices_steer_the_first_query_to_the_cheapest_expert(name):
    """Before any reward, a high cost weight already calls the cheapest expert: the catalog
    says what each costs, so the cheap end of the frontier costs no exploration."""
    prices = {"a": 0.3, "b": 0.05, "c": 1.0}
    p = make_policy(name, DIM, {**PARAMS.get(name, {}), "epsilon": 0.0}, seed=0)
    rng = np.random.default_rng(1)
    for _ in range(30):
        choice = p.select(rng.standard_normal(DIM), EXPERTS, 100.0, prices)
        assert choice.expert == "b" and choice.scores["c"].estimated_cost == pytest.approx(1.0)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 400), scale=st.floats(0.01, 10.0))
def test_sherman_morrison_inverse_tracks_numpy(seed, n, scale):
    rng = np.random.default_rng(seed)
    p = LinUCB(DIM, {"ridge": 1.0}, seed=seed)
    A = np.eye(DIM + 1)
    for _ in range(n):
        x = rng.standard_normal(DIM) * scale
        p.update("a", x, float(rng.uniform()), 0.0)
        z = np.append(x, 1.0)
        A += np.outer(z, z)
    np.testing.assert_allclose(p.arms["a"].A_inv, np.linalg.inv(A), rtol=1e-6, atol=1e-9)


def test_linucb_learns_the_best_expert_per_context():
    p = make_policy("linucb", DIM, {"alpha": 0.5, "epsilon": 0.05}, seed=1)
    _run(p, seed=2, n=1500)
    right = 0
    for x, quality, _ in _stream(99, 300):
        choice = p.select(x, EXPERTS)
        best = max(choice.scores, key=lambda e: choice.scores[e].estimated_quality)
        right += quality[best] == max(quality.values())
    assert right / 300 > 0.85


def test_cost_weight_moves_the_choice_to_the_cheap_expert():
    p = make_policy("linucb", DIM, {"alpha": 0.0, "epsilon": 0.0}, seed=1)
    rng = np.random.default_rng(0)
    for _ in range(300):
        x = rng.standard_normal(DIM)
        p.update("premium", x, 0.9, 1.0)
        p.update("small", x, 0.7, 0.1)
    x = rng.standard_normal(DIM)
    assert p.select(x, ["premium", "small"], cost_weight=0.0).expert == "premium"
    assert p.select(x, ["premium", "small"], cost_weight=1.0).expert == "small"


def test_snapshot_from_other_settings_is_refused():
    learned = make_policy("linucb", DIM, {"project_to": 6})
    _run(learned, n=20)
    router = make_policy("linucb", DIM, {"project_to": 8})
    with pytest.raises(ValueError, match="must run the same policy settings"):
        router.restore(learned.snapshot())


@pytest.mark.parametrize("name", ["linucb", "lints"])
def test_new_expert_is_explored_but_bounded(name):
    p = make_policy(name, DIM, {"cold_updates": 50, "cold_share": 0.1, "epsilon": 0.05}, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(300):
        x = rng.standard_normal(DIM)
        p.update("a", x, 0.2)
        p.update("b", x, 0.3)
    picks = {"a": 0, "b": 0, "new": 0}
    for t in range(900):
        x = rng.standard_normal(DIM)
        c = p.select(x, ["a", "b", "new"])
        if p.counts.get("new", 0) < 50:
            assert c.probabilities["new"] <= 0.1 + 1e-9
        assert sum(c.probabilities.values()) == pytest.approx(1.0)
        picks[c.expert] += 1
        p.update(c.expert, x, {"a": 0.2, "b": 0.3, "new": 0.9}[c.expert])
    assert p.counts["new"] >= 50 and picks["new"] > 300   # explored at a bounded rate, then wins on merit
    assert p.select(rng.standard_normal(DIM), ["a", "b", "new"]).scores["new"].estimated_quality > 0.6


def test_discounting_follows_drift():
    fixed = make_policy("linucb", DIM, {"alpha": 0.1, "epsilon": 0.0}, seed=0)
    fading = make_policy("linucb", DIM, {"alpha": 0.1, "epsilon": 0.0, "discount": 0.98}, seed=0)
    rng = np.random.default_rng(1)
    for t in range(1200):                     # "a" is better, then "b" is, after t = 600
        x = rng.standard_normal(DIM)
        for p in (fixed, fading):
            for e in ("a", "b"):
                p.update(e, x, (0.8 if e == "a" else 0.2) if t < 600 else (0.2 if e == "a" else 0.8))
    x = rng.standard_normal(DIM)
    est = {n: {e: p.select(x, ["a", "b"]).scores[e].estimated_quality for e in ("a", "b")}
           for n, p in (("fixed", fixed), ("fading", fading))}
    assert est["fading"]["b"] - est["fading"]["a"] > 0.5          # has moved to the new truth
    assert abs(est["fixed"]["b"] - est["fixed"]["a"]) < 0.1       # the undiscounted mean sits between


def _priced(policy, n=400, seed=0):
    """Three experts whose cost is a price times the query's length, and whose quality
    rises with the price."""
    rng = np.random.default_rng(seed)
    prices = {"small": 0.01, "mid": 0.1, "premium": 1.0}
    quality = {"small": 0.5, "mid": 0.7, "premium": 0.9}
    for _ in range(n):
        x = rng.standard_normal(DIM)
        for e, price in prices.items():
            policy.update(e, x, float(rng.random() < quality[e]), price * np.exp(0.3 * x[0]))
    return prices


def test_pooled_cost_model_knows_every_experts_price_per_query():
    p = make_policy("pooled_linucb", DIM, {"epsilon": 0.0, "rank": DIM}, seed=0)   # every direction kept
    prices = _priced(p)
    rng = np.random.default_rng(5)
    for _ in range(20):
        x = rng.standard_normal(DIM)
        choice = p.select(x, list(prices), cost_weight=100.0)
        assert choice.expert == "small"
        for e, price in prices.items():
            assert choice.scores[e].estimated_cost == pytest.approx(price * np.exp(0.3 * x[0]), rel=0.1)
        assert p.select(x, list(prices), cost_weight=0.0).expert == "premium"


def test_pooled_never_explores_a_dearer_expert_at_random():
    p = make_policy("pooled_linucb", DIM, {"epsilon": 0.3, "alpha": 0.0}, seed=0)
    _priced(p)
    choice = p.select(np.random.default_rng(1).standard_normal(DIM), ["small", "mid", "premium"], cost_weight=5.0)
    assert choice.probabilities["premium"] == 0.0 and choice.probabilities["mid"] == 0.0
    assert choice.probabilities["small"] == 1.0


def test_pooled_new_expert_starts_from_the_pooled_model_and_is_tried():
    p = make_policy("pooled_linucb", DIM, {"epsilon": 0.0}, seed=0)
    _priced(p)
    x = np.random.default_rng(2).standard_normal(DIM)
    choice = p.select(x, ["small", "mid", "premium", "new"], cost_weight=1.0)
    assert choice.scores["new"].estimated_cost == 0.0 and choice.expert == "new"
    assert 0.5 < choice.scores["new"].estimated_quality < 0.9          # the average of what the others taught
    priced = p.select(x, ["small", "mid", "premium", "new"], cost_weight=1.0, prices={"new": 50.0})
    assert priced.scores["new"].estimated_cost == 50.0 and priced.expert != "new"   # the catalog's price


@pytest.mark.parametrize("params, message", [
    ({"rank": 0}, "rank must be >= 1"),
    ({"prior": 0.0}, "prior and ridge must be > 0"),
    ({"price_prior": -1.0}, "price_prior >= 0"),
    ({"alpha": -0.1}, "alpha must be >= 0"),
])
def test_pooled_rejects_bad_hyperparameters(params, message):
    with pytest.raises(ValueError, match=message):
        make_policy("pooled_linucb", DIM, params)


def test_pooled_restored_learner_keeps_learning_like_the_original():
    """The snapshot keeps what refits need (G, in float32): a learner restored from it
    refits the components as the original does and routes alike afterwards."""
    a = make_policy("pooled_linucb", DIM, {"epsilon": 0.0}, seed=1)
    _run(a, n=120)
    b = make_policy("pooled_linucb", DIM, {"epsilon": 0.0}, seed=1)
    b.restore(a.snapshot())
    for x, quality, cost in _stream(3, 400):            # past the refits at 128, 256 and 512 updates
        for p in (a, b):
            p.update("a", x, quality["a"], float(cost[0]))
    assert a.n == b.n == 520 and b.basis.shape == a.basis.shape
    np.testing.assert_allclose(b.basis, a.basis, rtol=1e-3, atol=1e-5)
    xs = [x for x, _, _ in _stream(4, 30)]
    assert [a.select(x, EXPERTS, 0.1).probabilities for x in xs] == [b.select(x, EXPERTS, 0.1).probabilities for x in xs]


def test_pooled_zero_costs_lower_the_expected_cost_without_breaking_the_price():
    """A failed call (or a free expert) costs 0: the expected cost is the price times the
    share of calls that cost something, and a free expert is free."""
    p = make_policy("pooled_linucb", DIM, {"epsilon": 0.0, "rank": DIM}, seed=0)
    rng = np.random.default_rng(0)
    for t in range(500):
        x = rng.standard_normal(DIM)
        p.update("flaky", x, 0.5, 0.0 if t % 5 == 0 else 1.0)     # a fifth of its calls fail, unbilled
        p.update("free", x, 0.5, 0.0)
        p.update("paid", x, 0.5, 2.0)
    choice = p.select(rng.standard_normal(DIM), ["flaky", "free", "paid"])
    assert choice.scores["flaky"].estimated_cost == pytest.approx(0.8, rel=0.05)
    assert choice.scores["free"].estimated_cost == 0.0
    assert choice.scores["paid"].estimated_cost == pytest.approx(2.0, rel=0.05)
